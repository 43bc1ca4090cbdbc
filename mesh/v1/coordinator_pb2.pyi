import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from mesh.v1 import health_pb2 as _health_pb2
from mesh.v1 import metrics_pb2 as _metrics_pb2
from mesh.v1 import module_pb2 as _module_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListModulesRequest(_message.Message):
    __slots__ = ("states",)
    STATES_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[_module_pb2.ModuleState]
    def __init__(self, states: _Optional[_Iterable[_Union[_module_pb2.ModuleState, str]]] = ...) -> None: ...

class ListModulesResponse(_message.Message):
    __slots__ = ("modules",)
    MODULES_FIELD_NUMBER: _ClassVar[int]
    modules: _containers.RepeatedCompositeFieldContainer[_module_pb2.ModuleStatus]
    def __init__(self, modules: _Optional[_Iterable[_Union[_module_pb2.ModuleStatus, _Mapping]]] = ...) -> None: ...

class GetModuleRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class GetModuleResponse(_message.Message):
    __slots__ = ("status", "manifest", "health", "metrics")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    status: _module_pb2.ModuleStatus
    manifest: _module_pb2.Manifest
    health: _health_pb2.ModuleHealth
    metrics: _metrics_pb2.ModuleMetrics
    def __init__(self, status: _Optional[_Union[_module_pb2.ModuleStatus, _Mapping]] = ..., manifest: _Optional[_Union[_module_pb2.Manifest, _Mapping]] = ..., health: _Optional[_Union[_health_pb2.ModuleHealth, _Mapping]] = ..., metrics: _Optional[_Union[_metrics_pb2.ModuleMetrics, _Mapping]] = ...) -> None: ...

class GetSystemHealthRequest(_message.Message):
    __slots__ = ("fresh",)
    FRESH_FIELD_NUMBER: _ClassVar[int]
    fresh: bool
    def __init__(self, fresh: _Optional[bool] = ...) -> None: ...

class GetSystemHealthResponse(_message.Message):
    __slots__ = ("status", "modules", "checked_at", "max_age_ms", "components")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MODULES_FIELD_NUMBER: _ClassVar[int]
    CHECKED_AT_FIELD_NUMBER: _ClassVar[int]
    MAX_AGE_MS_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    status: _health_pb2.HealthStatus
    modules: _containers.RepeatedCompositeFieldContainer[_health_pb2.ModuleHealth]
    checked_at: _timestamp_pb2.Timestamp
    max_age_ms: int
    components: _containers.RepeatedCompositeFieldContainer[_health_pb2.ComponentHealth]
    def __init__(self, status: _Optional[_Union[_health_pb2.HealthStatus, str]] = ..., modules: _Optional[_Iterable[_Union[_health_pb2.ModuleHealth, _Mapping]]] = ..., checked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., max_age_ms: _Optional[int] = ..., components: _Optional[_Iterable[_Union[_health_pb2.ComponentHealth, _Mapping]]] = ...) -> None: ...

class GetSystemMetricsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetSystemMetricsResponse(_message.Message):
    __slots__ = ("total_requests", "total_errors", "avg_latency_ms", "modules", "collected_at", "events")
    TOTAL_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_ERRORS_FIELD_NUMBER: _ClassVar[int]
    AVG_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    MODULES_FIELD_NUMBER: _ClassVar[int]
    COLLECTED_AT_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    total_requests: int
    total_errors: int
    avg_latency_ms: float
    modules: _containers.RepeatedCompositeFieldContainer[_metrics_pb2.ModuleMetrics]
    collected_at: _timestamp_pb2.Timestamp
    events: _metrics_pb2.EventCounts
    def __init__(self, total_requests: _Optional[int] = ..., total_errors: _Optional[int] = ..., avg_latency_ms: _Optional[float] = ..., modules: _Optional[_Iterable[_Union[_metrics_pb2.ModuleMetrics, _Mapping]]] = ..., collected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., events: _Optional[_Union[_metrics_pb2.EventCounts, _Mapping]] = ...) -> None: ...

class GetGraphRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GraphNode(_message.Message):
    __slots__ = ("name", "version", "state", "dependencies", "transitive_dependencies", "dependents", "transitive_dependents", "critical", "depth")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DEPENDENCIES_FIELD_NUMBER: _ClassVar[int]
    TRANSITIVE_DEPENDENCIES_FIELD_NUMBER: _ClassVar[int]
    DEPENDENTS_FIELD_NUMBER: _ClassVar[int]
    TRANSITIVE_DEPENDENTS_FIELD_NUMBER: _ClassVar[int]
    CRITICAL_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    state: _module_pb2.ModuleState
    dependencies: _containers.RepeatedCompositeFieldContainer[_module_pb2.Dependency]
    transitive_dependencies: _containers.RepeatedScalarFieldContainer[str]
    dependents: _containers.RepeatedScalarFieldContainer[str]
    transitive_dependents: _containers.RepeatedScalarFieldContainer[str]
    critical: bool
    depth: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., state: _Optional[_Union[_module_pb2.ModuleState, str]] = ..., dependencies: _Optional[_Iterable[_Union[_module_pb2.Dependency, _Mapping]]] = ..., transitive_dependencies: _Optional[_Iterable[str]] = ..., dependents: _Optional[_Iterable[str]] = ..., transitive_dependents: _Optional[_Iterable[str]] = ..., critical: _Optional[bool] = ..., depth: _Optional[int] = ...) -> None: ...

class GetGraphResponse(_message.Message):
    __slots__ = ("nodes", "initialization_order")
    NODES_FIELD_NUMBER: _ClassVar[int]
    INITIALIZATION_ORDER_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[GraphNode]
    initialization_order: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, nodes: _Optional[_Iterable[_Union[GraphNode, _Mapping]]] = ..., initialization_order: _Optional[_Iterable[str]] = ...) -> None: ...

class ReloadModuleRequest(_message.Message):
    __slots__ = ("name", "config")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    name: str
    config: _struct_pb2.Struct
    def __init__(self, name: _Optional[str] = ..., config: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class ReloadModuleResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: _module_pb2.ModuleStatus
    def __init__(self, status: _Optional[_Union[_module_pb2.ModuleStatus, _Mapping]] = ...) -> None: ...

class RestartModuleRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class RestartModuleResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: _module_pb2.ModuleStatus
    def __init__(self, status: _Optional[_Union[_module_pb2.ModuleStatus, _Mapping]] = ...) -> None: ...

class RegisterModuleRequest(_message.Message):
    __slots__ = ("address", "manifest", "instance_id")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    address: str
    manifest: _module_pb2.Manifest
    instance_id: str
    def __init__(self, address: _Optional[str] = ..., manifest: _Optional[_Union[_module_pb2.Manifest, _Mapping]] = ..., instance_id: _Optional[str] = ...) -> None: ...

class RegisterModuleResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: _module_pb2.ModuleStatus
    def __init__(self, status: _Optional[_Union[_module_pb2.ModuleStatus, _Mapping]] = ...) -> None: ...

class DeregisterModuleRequest(_message.Message):
    __slots__ = ("name", "instance_id", "force")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    instance_id: str
    force: bool
    def __init__(self, name: _Optional[str] = ..., instance_id: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class DeregisterModuleResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: _module_pb2.ModuleStatus
    def __init__(self, status: _Optional[_Union[_module_pb2.ModuleStatus, _Mapping]] = ...) -> None: ...

class WatchModulesRequest(_message.Message):
    __slots__ = ("names", "include_snapshot")
    NAMES_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    include_snapshot: bool
    def __init__(self, names: _Optional[_Iterable[str]] = ..., include_snapshot: _Optional[bool] = ...) -> None: ...

class WatchModulesResponse(_message.Message):
    __slots__ = ("status", "previous_state", "snapshot", "time")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_STATE_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    status: _module_pb2.ModuleStatus
    previous_state: _module_pb2.ModuleState
    snapshot: bool
    time: _timestamp_pb2.Timestamp
    def __init__(self, status: _Optional[_Union[_module_pb2.ModuleStatus, _Mapping]] = ..., previous_state: _Optional[_Union[_module_pb2.ModuleState, str]] = ..., snapshot: _Optional[bool] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ShutdownRequest(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class ShutdownResponse(_message.Message):
    __slots__ = ("pid",)
    PID_FIELD_NUMBER: _ClassVar[int]
    pid: int
    def __init__(self, pid: _Optional[int] = ...) -> None: ...
