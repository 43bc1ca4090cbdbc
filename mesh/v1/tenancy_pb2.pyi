import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConfigLayer(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONFIG_LAYER_UNSPECIFIED: _ClassVar[ConfigLayer]
    CONFIG_LAYER_MODULE_DEFAULT: _ClassVar[ConfigLayer]
    CONFIG_LAYER_MESH: _ClassVar[ConfigLayer]
    CONFIG_LAYER_TENANT: _ClassVar[ConfigLayer]
    CONFIG_LAYER_COMPANY: _ClassVar[ConfigLayer]
CONFIG_LAYER_UNSPECIFIED: ConfigLayer
CONFIG_LAYER_MODULE_DEFAULT: ConfigLayer
CONFIG_LAYER_MESH: ConfigLayer
CONFIG_LAYER_TENANT: ConfigLayer
CONFIG_LAYER_COMPANY: ConfigLayer

class TenantModule(_message.Message):
    __slots__ = ("module", "enabled", "changed_by", "changed_at")
    MODULE_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    CHANGED_BY_FIELD_NUMBER: _ClassVar[int]
    CHANGED_AT_FIELD_NUMBER: _ClassVar[int]
    module: str
    enabled: bool
    changed_by: str
    changed_at: _timestamp_pb2.Timestamp
    def __init__(self, module: _Optional[str] = ..., enabled: _Optional[bool] = ..., changed_by: _Optional[str] = ..., changed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class EnableModuleRequest(_message.Message):
    __slots__ = ("tenant", "module", "with_dependencies", "actor")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    MODULE_FIELD_NUMBER: _ClassVar[int]
    WITH_DEPENDENCIES_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    module: str
    with_dependencies: bool
    actor: str
    def __init__(self, tenant: _Optional[str] = ..., module: _Optional[str] = ..., with_dependencies: _Optional[bool] = ..., actor: _Optional[str] = ...) -> None: ...

class EnableModuleResponse(_message.Message):
    __slots__ = ("changed",)
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    changed: _containers.RepeatedCompositeFieldContainer[TenantModule]
    def __init__(self, changed: _Optional[_Iterable[_Union[TenantModule, _Mapping]]] = ...) -> None: ...

class DisableModuleRequest(_message.Message):
    __slots__ = ("tenant", "module", "cascade", "actor")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    MODULE_FIELD_NUMBER: _ClassVar[int]
    CASCADE_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    module: str
    cascade: bool
    actor: str
    def __init__(self, tenant: _Optional[str] = ..., module: _Optional[str] = ..., cascade: _Optional[bool] = ..., actor: _Optional[str] = ...) -> None: ...

class DisableModuleResponse(_message.Message):
    __slots__ = ("changed",)
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    changed: _containers.RepeatedCompositeFieldContainer[TenantModule]
    def __init__(self, changed: _Optional[_Iterable[_Union[TenantModule, _Mapping]]] = ...) -> None: ...

class ListTenantModulesRequest(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    def __init__(self, tenant: _Optional[str] = ...) -> None: ...

class ListTenantModulesResponse(_message.Message):
    __slots__ = ("modules",)
    MODULES_FIELD_NUMBER: _ClassVar[int]
    modules: _containers.RepeatedCompositeFieldContainer[TenantModule]
    def __init__(self, modules: _Optional[_Iterable[_Union[TenantModule, _Mapping]]] = ...) -> None: ...

class SetFeatureFlagRequest(_message.Message):
    __slots__ = ("tenant", "flag", "enabled", "actor")
    TENANT_FIELD_NUMBER: _ClassVar[int]
    FLAG_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    flag: str
    enabled: bool
    actor: str
    def __init__(self, tenant: _Optional[str] = ..., flag: _Optional[str] = ..., enabled: _Optional[bool] = ..., actor: _Optional[str] = ...) -> None: ...

class SetFeatureFlagResponse(_message.Message):
    __slots__ = ("flag",)
    FLAG_FIELD_NUMBER: _ClassVar[int]
    flag: FeatureFlag
    def __init__(self, flag: _Optional[_Union[FeatureFlag, _Mapping]] = ...) -> None: ...

class FeatureFlag(_message.Message):
    __slots__ = ("name", "enabled", "changed_by", "changed_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    CHANGED_BY_FIELD_NUMBER: _ClassVar[int]
    CHANGED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    enabled: bool
    changed_by: str
    changed_at: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., enabled: _Optional[bool] = ..., changed_by: _Optional[str] = ..., changed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetFeatureFlagsRequest(_message.Message):
    __slots__ = ("tenant",)
    TENANT_FIELD_NUMBER: _ClassVar[int]
    tenant: str
    def __init__(self, tenant: _Optional[str] = ...) -> None: ...

class GetFeatureFlagsResponse(_message.Message):
    __slots__ = ("flags",)
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    flags: _containers.RepeatedCompositeFieldContainer[FeatureFlag]
    def __init__(self, flags: _Optional[_Iterable[_Union[FeatureFlag, _Mapping]]] = ...) -> None: ...

class SetConfigRequest(_message.Message):
    __slots__ = ("module", "tenant", "company", "config", "actor")
    MODULE_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    COMPANY_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    module: str
    tenant: str
    company: str
    config: _struct_pb2.Struct
    actor: str
    def __init__(self, module: _Optional[str] = ..., tenant: _Optional[str] = ..., company: _Optional[str] = ..., config: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., actor: _Optional[str] = ...) -> None: ...

class SetConfigResponse(_message.Message):
    __slots__ = ("effective",)
    EFFECTIVE_FIELD_NUMBER: _ClassVar[int]
    effective: _struct_pb2.Struct
    def __init__(self, effective: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class GetConfigRequest(_message.Message):
    __slots__ = ("module", "tenant", "company")
    MODULE_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    COMPANY_FIELD_NUMBER: _ClassVar[int]
    module: str
    tenant: str
    company: str
    def __init__(self, module: _Optional[str] = ..., tenant: _Optional[str] = ..., company: _Optional[str] = ...) -> None: ...

class GetConfigResponse(_message.Message):
    __slots__ = ("config", "changed_by", "changed_at")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    CHANGED_BY_FIELD_NUMBER: _ClassVar[int]
    CHANGED_AT_FIELD_NUMBER: _ClassVar[int]
    config: _struct_pb2.Struct
    changed_by: str
    changed_at: _timestamp_pb2.Timestamp
    def __init__(self, config: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., changed_by: _Optional[str] = ..., changed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetEffectiveConfigRequest(_message.Message):
    __slots__ = ("module", "tenant", "company")
    MODULE_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    COMPANY_FIELD_NUMBER: _ClassVar[int]
    module: str
    tenant: str
    company: str
    def __init__(self, module: _Optional[str] = ..., tenant: _Optional[str] = ..., company: _Optional[str] = ...) -> None: ...

class ConfigValueSource(_message.Message):
    __slots__ = ("path", "layer")
    PATH_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    path: str
    layer: ConfigLayer
    def __init__(self, path: _Optional[str] = ..., layer: _Optional[_Union[ConfigLayer, str]] = ...) -> None: ...

class GetEffectiveConfigResponse(_message.Message):
    __slots__ = ("config", "sources")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    config: _struct_pb2.Struct
    sources: _containers.RepeatedCompositeFieldContainer[ConfigValueSource]
    def __init__(self, config: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., sources: _Optional[_Iterable[_Union[ConfigValueSource, _Mapping]]] = ...) -> None: ...
