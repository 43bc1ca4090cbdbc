import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MethodMetrics(_message.Message):
    __slots__ = ("method", "request_count", "error_count", "avg_latency_ms", "p50_latency_ms", "p99_latency_ms")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    REQUEST_COUNT_FIELD_NUMBER: _ClassVar[int]
    ERROR_COUNT_FIELD_NUMBER: _ClassVar[int]
    AVG_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    P50_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    P99_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    method: str
    request_count: int
    error_count: int
    avg_latency_ms: float
    p50_latency_ms: float
    p99_latency_ms: float
    def __init__(self, method: _Optional[str] = ..., request_count: _Optional[int] = ..., error_count: _Optional[int] = ..., avg_latency_ms: _Optional[float] = ..., p50_latency_ms: _Optional[float] = ..., p99_latency_ms: _Optional[float] = ...) -> None: ...

class EventCounts(_message.Message):
    __slots__ = ("published", "received", "failed", "redelivered", "dead_lettered", "skipped", "dropped")
    PUBLISHED_FIELD_NUMBER: _ClassVar[int]
    RECEIVED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    REDELIVERED_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERED_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    published: int
    received: int
    failed: int
    redelivered: int
    dead_lettered: int
    skipped: int
    dropped: int
    def __init__(self, published: _Optional[int] = ..., received: _Optional[int] = ..., failed: _Optional[int] = ..., redelivered: _Optional[int] = ..., dead_lettered: _Optional[int] = ..., skipped: _Optional[int] = ..., dropped: _Optional[int] = ...) -> None: ...

class EventTypeMetrics(_message.Message):
    __slots__ = ("type", "counts")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    type: str
    counts: EventCounts
    def __init__(self, type: _Optional[str] = ..., counts: _Optional[_Union[EventCounts, _Mapping]] = ...) -> None: ...

class ModuleMetrics(_message.Message):
    __slots__ = ("name", "request_count", "error_count", "avg_latency_ms", "active_workers", "events", "event_types", "methods", "custom", "collected_at")
    class CustomEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUEST_COUNT_FIELD_NUMBER: _ClassVar[int]
    ERROR_COUNT_FIELD_NUMBER: _ClassVar[int]
    AVG_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_WORKERS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPES_FIELD_NUMBER: _ClassVar[int]
    METHODS_FIELD_NUMBER: _ClassVar[int]
    CUSTOM_FIELD_NUMBER: _ClassVar[int]
    COLLECTED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    request_count: int
    error_count: int
    avg_latency_ms: float
    active_workers: int
    events: EventCounts
    event_types: _containers.RepeatedCompositeFieldContainer[EventTypeMetrics]
    methods: _containers.RepeatedCompositeFieldContainer[MethodMetrics]
    custom: _containers.ScalarMap[str, float]
    collected_at: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., request_count: _Optional[int] = ..., error_count: _Optional[int] = ..., avg_latency_ms: _Optional[float] = ..., active_workers: _Optional[int] = ..., events: _Optional[_Union[EventCounts, _Mapping]] = ..., event_types: _Optional[_Iterable[_Union[EventTypeMetrics, _Mapping]]] = ..., methods: _Optional[_Iterable[_Union[MethodMetrics, _Mapping]]] = ..., custom: _Optional[_Mapping[str, float]] = ..., collected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
