import datetime

from google.protobuf import duration_pb2 as _duration_pb2
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

class DependencyEndpoint(_message.Message):
    __slots__ = ("name", "address", "version", "optional", "available")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OPTIONAL_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    name: str
    address: str
    version: str
    optional: bool
    available: bool
    def __init__(self, name: _Optional[str] = ..., address: _Optional[str] = ..., version: _Optional[str] = ..., optional: _Optional[bool] = ..., available: _Optional[bool] = ...) -> None: ...

class NatsSettings(_message.Message):
    __slots__ = ("servers", "token", "user", "password", "credentials_file")
    SERVERS_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    CREDENTIALS_FILE_FIELD_NUMBER: _ClassVar[int]
    servers: _containers.RepeatedScalarFieldContainer[str]
    token: str
    user: str
    password: str
    credentials_file: str
    def __init__(self, servers: _Optional[_Iterable[str]] = ..., token: _Optional[str] = ..., user: _Optional[str] = ..., password: _Optional[str] = ..., credentials_file: _Optional[str] = ...) -> None: ...

class TelemetrySettings(_message.Message):
    __slots__ = ("otel_env",)
    class OtelEnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    OTEL_ENV_FIELD_NUMBER: _ClassVar[int]
    otel_env: _containers.ScalarMap[str, str]
    def __init__(self, otel_env: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ModuleSettings(_message.Message):
    __slots__ = ("config", "dependencies", "nats", "telemetry", "coordinator_address", "state_dir", "events_since")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    DEPENDENCIES_FIELD_NUMBER: _ClassVar[int]
    NATS_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    STATE_DIR_FIELD_NUMBER: _ClassVar[int]
    EVENTS_SINCE_FIELD_NUMBER: _ClassVar[int]
    config: _struct_pb2.Struct
    dependencies: _containers.RepeatedCompositeFieldContainer[DependencyEndpoint]
    nats: NatsSettings
    telemetry: TelemetrySettings
    coordinator_address: str
    state_dir: str
    events_since: _timestamp_pb2.Timestamp
    def __init__(self, config: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., dependencies: _Optional[_Iterable[_Union[DependencyEndpoint, _Mapping]]] = ..., nats: _Optional[_Union[NatsSettings, _Mapping]] = ..., telemetry: _Optional[_Union[TelemetrySettings, _Mapping]] = ..., coordinator_address: _Optional[str] = ..., state_dir: _Optional[str] = ..., events_since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class DescribeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DescribeResponse(_message.Message):
    __slots__ = ("manifest", "status", "consumers")
    MANIFEST_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CONSUMERS_FIELD_NUMBER: _ClassVar[int]
    manifest: _module_pb2.Manifest
    status: _module_pb2.ModuleStatus
    consumers: _containers.RepeatedCompositeFieldContainer[EventConsumer]
    def __init__(self, manifest: _Optional[_Union[_module_pb2.Manifest, _Mapping]] = ..., status: _Optional[_Union[_module_pb2.ModuleStatus, _Mapping]] = ..., consumers: _Optional[_Iterable[_Union[EventConsumer, _Mapping]]] = ...) -> None: ...

class EventConsumer(_message.Message):
    __slots__ = ("name", "patterns", "ack_wait", "max_ack_pending")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PATTERNS_FIELD_NUMBER: _ClassVar[int]
    ACK_WAIT_FIELD_NUMBER: _ClassVar[int]
    MAX_ACK_PENDING_FIELD_NUMBER: _ClassVar[int]
    name: str
    patterns: _containers.RepeatedScalarFieldContainer[str]
    ack_wait: _duration_pb2.Duration
    max_ack_pending: int
    def __init__(self, name: _Optional[str] = ..., patterns: _Optional[_Iterable[str]] = ..., ack_wait: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_ack_pending: _Optional[int] = ...) -> None: ...

class InitializeRequest(_message.Message):
    __slots__ = ("settings",)
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: ModuleSettings
    def __init__(self, settings: _Optional[_Union[ModuleSettings, _Mapping]] = ...) -> None: ...

class InitializeResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: _module_pb2.ModuleStatus
    def __init__(self, status: _Optional[_Union[_module_pb2.ModuleStatus, _Mapping]] = ...) -> None: ...

class StartRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StartResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: _module_pb2.ModuleStatus
    def __init__(self, status: _Optional[_Union[_module_pb2.ModuleStatus, _Mapping]] = ...) -> None: ...

class StopRequest(_message.Message):
    __slots__ = ("grace", "reason")
    GRACE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    grace: _duration_pb2.Duration
    reason: str
    def __init__(self, grace: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class StopResponse(_message.Message):
    __slots__ = ("status", "forced")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FORCED_FIELD_NUMBER: _ClassVar[int]
    status: _module_pb2.ModuleStatus
    forced: bool
    def __init__(self, status: _Optional[_Union[_module_pb2.ModuleStatus, _Mapping]] = ..., forced: _Optional[bool] = ...) -> None: ...

class ReloadRequest(_message.Message):
    __slots__ = ("settings",)
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    settings: ModuleSettings
    def __init__(self, settings: _Optional[_Union[ModuleSettings, _Mapping]] = ...) -> None: ...

class ReloadResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: _module_pb2.ModuleStatus
    def __init__(self, status: _Optional[_Union[_module_pb2.ModuleStatus, _Mapping]] = ...) -> None: ...

class GetHealthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetHealthResponse(_message.Message):
    __slots__ = ("health",)
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    health: _health_pb2.ModuleHealth
    def __init__(self, health: _Optional[_Union[_health_pb2.ModuleHealth, _Mapping]] = ...) -> None: ...

class GetMetricsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetMetricsResponse(_message.Message):
    __slots__ = ("metrics",)
    METRICS_FIELD_NUMBER: _ClassVar[int]
    metrics: _metrics_pb2.ModuleMetrics
    def __init__(self, metrics: _Optional[_Union[_metrics_pb2.ModuleMetrics, _Mapping]] = ...) -> None: ...
