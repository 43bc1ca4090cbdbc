import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModuleState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODULE_STATE_UNSPECIFIED: _ClassVar[ModuleState]
    MODULE_STATE_REGISTERED: _ClassVar[ModuleState]
    MODULE_STATE_INITIALIZING: _ClassVar[ModuleState]
    MODULE_STATE_INITIALIZED: _ClassVar[ModuleState]
    MODULE_STATE_STARTING: _ClassVar[ModuleState]
    MODULE_STATE_RUNNING: _ClassVar[ModuleState]
    MODULE_STATE_STOPPING: _ClassVar[ModuleState]
    MODULE_STATE_STOPPED: _ClassVar[ModuleState]
    MODULE_STATE_FAILED: _ClassVar[ModuleState]
    MODULE_STATE_SKIPPED: _ClassVar[ModuleState]

class RestartMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RESTART_MODE_UNSPECIFIED: _ClassVar[RestartMode]
    RESTART_MODE_NEVER: _ClassVar[RestartMode]
    RESTART_MODE_ON_FAILURE: _ClassVar[RestartMode]
    RESTART_MODE_ALWAYS: _ClassVar[RestartMode]

class ModuleOrigin(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODULE_ORIGIN_UNSPECIFIED: _ClassVar[ModuleOrigin]
    MODULE_ORIGIN_LOCAL: _ClassVar[ModuleOrigin]
    MODULE_ORIGIN_STATIC: _ClassVar[ModuleOrigin]
    MODULE_ORIGIN_REGISTERED: _ClassVar[ModuleOrigin]
MODULE_STATE_UNSPECIFIED: ModuleState
MODULE_STATE_REGISTERED: ModuleState
MODULE_STATE_INITIALIZING: ModuleState
MODULE_STATE_INITIALIZED: ModuleState
MODULE_STATE_STARTING: ModuleState
MODULE_STATE_RUNNING: ModuleState
MODULE_STATE_STOPPING: ModuleState
MODULE_STATE_STOPPED: ModuleState
MODULE_STATE_FAILED: ModuleState
MODULE_STATE_SKIPPED: ModuleState
RESTART_MODE_UNSPECIFIED: RestartMode
RESTART_MODE_NEVER: RestartMode
RESTART_MODE_ON_FAILURE: RestartMode
RESTART_MODE_ALWAYS: RestartMode
MODULE_ORIGIN_UNSPECIFIED: ModuleOrigin
MODULE_ORIGIN_LOCAL: ModuleOrigin
MODULE_ORIGIN_STATIC: ModuleOrigin
MODULE_ORIGIN_REGISTERED: ModuleOrigin

class Dependency(_message.Message):
    __slots__ = ("name", "version_constraint", "optional")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_CONSTRAINT_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_FIELD_NUMBER: _ClassVar[int]
    name: str
    version_constraint: str
    optional: bool
    def __init__(self, name: _Optional[str] = ..., version_constraint: _Optional[str] = ..., optional: _Optional[bool] = ...) -> None: ...

class RestartPolicy(_message.Message):
    __slots__ = ("mode", "max_restarts", "window", "initial_backoff", "max_backoff")
    MODE_FIELD_NUMBER: _ClassVar[int]
    MAX_RESTARTS_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    INITIAL_BACKOFF_FIELD_NUMBER: _ClassVar[int]
    MAX_BACKOFF_FIELD_NUMBER: _ClassVar[int]
    mode: RestartMode
    max_restarts: int
    window: _duration_pb2.Duration
    initial_backoff: _duration_pb2.Duration
    max_backoff: _duration_pb2.Duration
    def __init__(self, mode: _Optional[_Union[RestartMode, str]] = ..., max_restarts: _Optional[int] = ..., window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., initial_backoff: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_backoff: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class RunSpec(_message.Message):
    __slots__ = ("entry", "command", "env")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    entry: str
    command: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    def __init__(self, entry: _Optional[str] = ..., command: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Manifest(_message.Message):
    __slots__ = ("name", "version", "description", "display_name", "author", "category", "dependencies", "publishes", "subscribes", "feature_flag", "config_schema_json", "services", "restart_policy", "run", "requires_tenant", "labels", "public_methods")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    DEPENDENCIES_FIELD_NUMBER: _ClassVar[int]
    PUBLISHES_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBES_FIELD_NUMBER: _ClassVar[int]
    FEATURE_FLAG_FIELD_NUMBER: _ClassVar[int]
    CONFIG_SCHEMA_JSON_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    RESTART_POLICY_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    REQUIRES_TENANT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_METHODS_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    description: str
    display_name: str
    author: str
    category: str
    dependencies: _containers.RepeatedCompositeFieldContainer[Dependency]
    publishes: _containers.RepeatedScalarFieldContainer[str]
    subscribes: _containers.RepeatedScalarFieldContainer[str]
    feature_flag: str
    config_schema_json: str
    services: _containers.RepeatedScalarFieldContainer[str]
    restart_policy: RestartPolicy
    run: RunSpec
    requires_tenant: bool
    labels: _containers.ScalarMap[str, str]
    public_methods: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., description: _Optional[str] = ..., display_name: _Optional[str] = ..., author: _Optional[str] = ..., category: _Optional[str] = ..., dependencies: _Optional[_Iterable[_Union[Dependency, _Mapping]]] = ..., publishes: _Optional[_Iterable[str]] = ..., subscribes: _Optional[_Iterable[str]] = ..., feature_flag: _Optional[str] = ..., config_schema_json: _Optional[str] = ..., services: _Optional[_Iterable[str]] = ..., restart_policy: _Optional[_Union[RestartPolicy, _Mapping]] = ..., run: _Optional[_Union[RunSpec, _Mapping]] = ..., requires_tenant: _Optional[bool] = ..., labels: _Optional[_Mapping[str, str]] = ..., public_methods: _Optional[_Iterable[str]] = ...) -> None: ...

class ModuleError(_message.Message):
    __slots__ = ("reason", "message", "phase", "time")
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    reason: str
    message: str
    phase: str
    time: _timestamp_pb2.Timestamp
    def __init__(self, reason: _Optional[str] = ..., message: _Optional[str] = ..., phase: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ModuleStatus(_message.Message):
    __slots__ = ("name", "version", "state", "address", "dependencies", "description", "state_reason", "error", "state_changed_at", "started_at", "instance_id", "pid", "restart_count", "critical", "origin", "dependents", "public_methods")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    DEPENDENCIES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    STATE_REASON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STATE_CHANGED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    RESTART_COUNT_FIELD_NUMBER: _ClassVar[int]
    CRITICAL_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    DEPENDENTS_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_METHODS_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    state: ModuleState
    address: str
    dependencies: _containers.RepeatedCompositeFieldContainer[Dependency]
    description: str
    state_reason: str
    error: ModuleError
    state_changed_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    instance_id: str
    pid: int
    restart_count: int
    critical: bool
    origin: ModuleOrigin
    dependents: _containers.RepeatedScalarFieldContainer[str]
    public_methods: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., state: _Optional[_Union[ModuleState, str]] = ..., address: _Optional[str] = ..., dependencies: _Optional[_Iterable[_Union[Dependency, _Mapping]]] = ..., description: _Optional[str] = ..., state_reason: _Optional[str] = ..., error: _Optional[_Union[ModuleError, _Mapping]] = ..., state_changed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., instance_id: _Optional[str] = ..., pid: _Optional[int] = ..., restart_count: _Optional[int] = ..., critical: _Optional[bool] = ..., origin: _Optional[_Union[ModuleOrigin, str]] = ..., dependents: _Optional[_Iterable[str]] = ..., public_methods: _Optional[_Iterable[str]] = ...) -> None: ...
