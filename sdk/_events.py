"""Events between modules over NATS: typed handlers, publishing, durable delivery with
redelivery and dead letters, and ephemeral delivery for high-rate signals.

On the wire an event is a CloudEvent in the NATS binding's binary mode: attributes in
`ce-` headers, the payload as the message body, `content-type`, and the W3C trace
context. Subjects are `mesh.evt.<tenant>.<entity>.<action>` (`_` for no tenant).

Durable handlers (the default) read from one JetStream stream over `mesh.evt.>` through
one durable consumer per (module, handler), shared by the module's replicas. A message
is acked after the handler succeeds, redelivered with backoff when it fails, and moved to
the dead-letter stream after its last delivery, with the reason, the handler and the
original event intact. A payload that does not validate goes there at once.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import json
import logging
import typing
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

import nats.errors
import nats.js.errors
from google.protobuf.message import DecodeError
from google.protobuf.message import Message as ProtoMessage
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import api
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from pydantic import BaseModel, TypeAdapter, ValidationError

from mesh.protocol import cloudevents
from mesh.protocol.cloudevents import CloudEvent, NotAnEvent
from mesh.protocol.errors import MeshError
from mesh.protocol.manifest import Manifest
from mesh.protocol.names import (
    EVENT_STREAM,
    check_token,
    consumer_name,
    dead_letter_subject,
    event_subject,
    pattern_subject,
    replay_subject,
)
from mesh.protocol.streams import ensure_streams
from sdk._metrics import ModuleMetricsRecorder

T = TypeVar("T")

PUBLISH_RETRY_SECONDS = 60.0
"""How long a durable publish keeps retrying through a NATS outage before it fails."""

_log = logging.getLogger("sdk.events")
_tracer = trace.get_tracer("mesh.sdk.events")

_current_event: contextvars.ContextVar[Event[Any] | None] = contextvars.ContextVar("mesh_event", default=None)


# --- what authors use -----------------------------------------------------------------


@dataclass(frozen=True)
class HandlerOptions:
    """How one handler receives its events (set by `@on`)."""

    pattern: str
    ephemeral: bool = False
    max_deliveries: int = 5
    retry_delay: float = 1.0
    max_retry_delay: float = 60.0
    concurrency: int = 1
    ack_wait: float = 30.0


def on(
    pattern: str,
    *,
    ephemeral: bool = False,
    max_deliveries: int = 5,
    retry_delay: float = 1.0,
    max_retry_delay: float = 60.0,
    concurrency: int = 1,
    ack_wait: float = 30.0,
) -> Callable[[T], T]:
    """Mark a module method as the handler of events of type `pattern` (`order.created`,
    `order.*`, `order.>`, `>`). The method's parameter type decides the payload: a pydantic
    model (JSON), a protobuf message, `bytes`, or `sdk.Event[Model]` for the envelope too.

    The decorator only registers: the method is returned unchanged, so a unit test can
    call it directly.

    Args:
        pattern: The event type or pattern; it must be listed under [events] subscribes.
        ephemeral: Core NATS, at most once, no redelivery (for high-rate signals).
        max_deliveries: Deliveries before a failing event is dead-lettered (durable only).
        retry_delay: The first redelivery delay in seconds; it doubles with every attempt.
        max_retry_delay: The longest redelivery delay.
        concurrency: How many events of this handler run at once (per process).
        ack_wait: Seconds a delivery may take before the server redelivers it.
    """
    if max_deliveries < 1 or concurrency < 1:
        raise ValueError("max_deliveries and concurrency must be at least 1")
    options = HandlerOptions(pattern, ephemeral, max_deliveries, retry_delay, max_retry_delay, concurrency, ack_wait)

    def register(method: T) -> T:
        method.__mesh_handler__ = options  # type: ignore[attr-defined]
        return method

    return register


class Retry(Exception):
    """Raise in a handler to have the event delivered again later (it counts as a delivery)."""

    def __init__(self, delay: float | None = None, reason: str = "") -> None:
        super().__init__(reason or "the handler asked to retry")
        self.delay = delay


class Drop(Exception):
    """Raise in a handler to acknowledge the event without handling it (counted as dropped)."""


@dataclass(frozen=True)
class Event(Generic[T]):
    """An event as a handler sees it: the CloudEvents attributes and the typed payload."""

    id: str
    type: str
    source: str
    time: str
    data: T
    subject: str = ""
    tenant: str = ""
    company: str = ""
    content_type: str = ""
    attempt: int = 1
    extensions: Mapping[str, str] = field(default_factory=dict)


def current_event() -> Event[Any] | None:
    """The event being handled by the current task, or None outside a handler."""
    return _current_event.get()


# --- payloads -------------------------------------------------------------------------


@dataclass(frozen=True)
class PayloadCodec:
    """Turns one payload type into bytes and back."""

    payload_type: Any
    content_type: str

    def encode(self, payload: Any) -> bytes:
        if isinstance(payload, BaseModel):
            return payload.model_dump_json().encode()
        if isinstance(payload, ProtoMessage):
            return payload.SerializeToString()
        if isinstance(payload, bytes | bytearray):
            return bytes(payload)
        return json.dumps(TypeAdapter(Any).dump_python(payload, mode="json")).encode()

    def decode(self, body: bytes) -> Any:
        kind = self.payload_type
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            return kind.model_validate_json(body or b"null")
        if isinstance(kind, type) and issubclass(kind, ProtoMessage):
            return kind.FromString(body)
        if kind is bytes:
            return body
        return TypeAdapter(kind).validate_json(body or b"null")


def codec_for(payload_type: Any) -> PayloadCodec:
    if isinstance(payload_type, type) and issubclass(payload_type, ProtoMessage):
        return PayloadCodec(payload_type, "application/protobuf")
    if payload_type is bytes:
        return PayloadCodec(bytes, "application/octet-stream")
    return PayloadCodec(payload_type, "application/json")


def content_type_of(payload: Any) -> str:
    if isinstance(payload, ProtoMessage):
        return "application/protobuf"
    if isinstance(payload, bytes | bytearray):
        return "application/octet-stream"
    return "application/json"


# --- the bus of one module ------------------------------------------------------------


@dataclass(frozen=True)
class HandlerBinding:
    """One handler method of a module class, with its payload codec."""

    method_name: str
    options: HandlerOptions
    codec: PayloadCodec
    wants_envelope: bool


def handler_bindings(module_class: type) -> list[HandlerBinding]:
    """The `@on` handlers of a module class, with payload types from their annotations."""
    bindings = []
    for name, method in inspect.getmembers(module_class, inspect.isfunction):
        options = getattr(method, "__mesh_handler__", None)
        if options is None:
            continue
        parameters = [p for p in inspect.signature(method).parameters.values() if p.name != "self"]
        if len(parameters) != 1:
            raise TypeError(
                f"{module_class.__name__}.{name}: an event handler takes one parameter "
                f"(the payload, or sdk.Event[Payload]); found {len(parameters)}"
            )
        hint = typing.get_type_hints(method).get(parameters[0].name, Any)
        wants_envelope = typing.get_origin(hint) is Event or hint is Event
        payload_type = (typing.get_args(hint) or (Any,))[0] if wants_envelope else hint
        bindings.append(HandlerBinding(name, options, codec_for(payload_type), wants_envelope))
    return bindings


def check_declared_handlers(bindings: list[HandlerBinding], manifest: Manifest, manifest_path: str) -> None:
    """Every handler's pattern must be declared under [events] subscribes."""
    for binding in bindings:
        if binding.options.pattern not in manifest.events.subscribes:
            raise MeshError(
                "UNDECLARED_EVENT",
                f"handler {binding.method_name} of module {manifest.name} handles "
                f"'{binding.options.pattern}', which {manifest_path} does not declare; add it to "
                "[events] subscribes",
                metadata={"module": manifest.name, "event_type": binding.options.pattern},
            )


class EventBus:
    """Publishing and handling for one module instance, tied to its lifecycle."""

    def __init__(
        self,
        *,
        nats_client: NatsClient | None,
        module: Any,
        manifest: Manifest,
        manifest_path: str,
        bindings: list[HandlerBinding],
        recorder: ModuleMetricsRecorder,
        events_since: datetime | None = None,
        accepts: Callable[[Event[Any]], Awaitable[bool]] | None = None,
    ) -> None:
        self._nats = nats_client
        self._js = nats_client.jetstream() if nats_client else None
        self._module = module
        self._manifest = manifest
        self._manifest_path = manifest_path
        self._bindings = bindings
        self._recorder = recorder
        self._events_since = events_since
        self.accepts = accepts
        """Whether an event is for this module (its tenant enabled); others are acked and skipped."""
        self._source = f"mesh://{manifest.name}"
        self._workers: list[asyncio.Task[None]] = []
        self._subscriptions: list[Any] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self._ephemeral_busy = 0
        self._ephemeral_idle = asyncio.Event()
        self._ephemeral_idle.set()
        self._running = False

    # --- set-up -----------------------------------------------------------------

    async def prepare(self) -> None:
        """Create the streams and the durable consumers (at Initialize, so that no event
        published while the module starts is missed)."""
        if self._js is None:
            if self._bindings:
                raise MeshError(
                    "MODULE_UNAVAILABLE",
                    f"module {self._manifest.name} handles events but was given no NATS servers at Initialize",
                    metadata={"module": self._manifest.name},
                )
            return
        await ensure_streams(self._js)
        for binding in self._bindings:
            if not binding.options.ephemeral:
                await self._ensure_consumer(binding)

    async def _ensure_consumer(self, binding: HandlerBinding) -> None:
        assert self._js is not None
        name = consumer_name(self._manifest.name, binding.method_name)
        filters = [pattern_subject(binding.options.pattern), replay_subject(name)]
        try:
            info = await self._js.consumer_info(EVENT_STREAM, name)
        except nats.js.errors.NotFoundError:
            info = None
        if info is not None and sorted(info.config.filter_subjects or []) == sorted(filters):
            return
        config = api.ConsumerConfig(
            durable_name=name,
            name=name,
            ack_policy=api.AckPolicy.EXPLICIT,
            max_deliver=-1,  # dead-lettering is ours, so nothing is ever dropped silently
            ack_wait=binding.options.ack_wait,
            filter_subjects=filters,
            max_ack_pending=max(binding.options.concurrency * 4, 16),
        )
        if info is not None:
            config.deliver_policy = info.config.deliver_policy
            config.opt_start_time = info.config.opt_start_time
        elif self._events_since is not None:
            config.deliver_policy = api.DeliverPolicy.BY_START_TIME
            config.opt_start_time = self._events_since.isoformat()
        else:
            config.deliver_policy = api.DeliverPolicy.NEW
        await self._js.add_consumer(EVENT_STREAM, config=config)

    # --- delivery while RUNNING -------------------------------------------------

    async def start(self) -> None:
        """Begin delivering events to the handlers (after the module's start hook)."""
        if self._nats is None:
            return
        self._running = True
        for binding in self._bindings:
            if binding.options.ephemeral:
                self._subscriptions.append(
                    await self._nats.subscribe(
                        pattern_subject(binding.options.pattern),
                        queue=f"{self._manifest.name}--{binding.method_name}",
                        cb=functools.partial(self._on_ephemeral, binding),
                    )
                )
            else:
                self._workers.append(asyncio.create_task(self._pull(binding), name=f"events:{binding.method_name}"))

    async def drain(self, grace_seconds: float) -> bool:
        """Stop taking events, let in-flight handlers finish within the grace period, then
        cancel them. Returns True when some had to be cancelled."""
        self._running = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(grace_seconds, 0.0)
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()
        forced = False
        try:
            await asyncio.wait_for(self._ephemeral_idle.wait(), timeout=max(deadline - loop.time(), 0.0))
        except TimeoutError:
            forced = True
        for subscription in self._subscriptions:  # cancels an ephemeral handler still running
            try:
                await subscription.unsubscribe()
            except nats.errors.Error as error:
                _log.warning("unsubscribing failed: %s", error)
        self._subscriptions.clear()
        if self._in_flight:
            _, pending = await asyncio.wait(set(self._in_flight), timeout=max(deadline - loop.time(), 0.0))
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            forced = forced or bool(pending)
        return forced

    def _track(self, work: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        return task

    async def _pull(self, binding: HandlerBinding) -> None:
        assert self._js is not None
        name = consumer_name(self._manifest.name, binding.method_name)
        subscription = None
        while self._running:
            try:
                if subscription is None:
                    subscription = await self._js.pull_subscribe_bind(durable=name, stream=EVENT_STREAM)
                messages = await subscription.fetch(binding.options.concurrency, timeout=1.0)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except asyncio.CancelledError:
                raise
            except Exception as error:  # NATS away or the consumer gone: keep trying
                _log.warning(
                    "module %s: fetching events for %s failed: %s; retrying",
                    self._manifest.name,
                    binding.method_name,
                    error,
                )
                subscription = None
                await asyncio.sleep(1.0)
                continue
            handling = {self._track(self._handle_durable(binding, message)) for message in messages}
            if handling:
                # asyncio.wait, not gather: cancelling this loop at Stop must leave the
                # in-flight handlers running, so that drain() can let them finish.
                await asyncio.wait(handling)

    # --- one delivery -----------------------------------------------------------

    def _envelope(self, binding: HandlerBinding, message: Msg, attempt: int) -> Event[Any]:
        wire = cloudevents.from_nats(message.headers, message.data)
        extensions = {name: value for name, value in (("tenant", wire.tenant), ("company", wire.company)) if value}
        return Event(
            id=wire.id,
            type=wire.type,
            source=wire.source,
            time=wire.time,
            data=binding.codec.decode(wire.data),
            subject=wire.subject,
            tenant=wire.tenant,
            company=wire.company,
            content_type=wire.datacontenttype,
            attempt=attempt,
            extensions={**extensions, **wire.extensions},
        )

    async def _run_handler(self, binding: HandlerBinding, event: Event[Any]) -> None:
        method = getattr(self._module, binding.method_name)
        token = _current_event.set(event)
        try:
            await method(event if binding.wants_envelope else event.data)
        finally:
            _current_event.reset(token)

    def _consumer_span(self, binding: HandlerBinding, message: Msg, attempt: int) -> Any:
        """A CONSUMER span, child of the producer's span through the headers' trace context."""
        headers = message.headers or {}
        event_type = headers.get("ce-type", "invalid")
        return _tracer.start_as_current_span(
            f"{event_type} process",
            context=propagate.extract(headers),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "nats",
                "messaging.operation.type": "process",
                "messaging.destination.name": message.subject,
                "messaging.message.id": headers.get("ce-id", ""),
                "messaging.consumer.group.name": consumer_name(self._manifest.name, binding.method_name),
                "cloudevents.event_type": event_type,
                "cloudevents.event_source": headers.get("ce-source", ""),
                "mesh.module": self._manifest.name,
                "mesh.event.attempt": attempt,
            },
        )

    async def _handle_durable(self, binding: HandlerBinding, message: Msg) -> None:
        attempt = message.metadata.num_delivered if message.metadata else 1
        with self._consumer_span(binding, message, attempt):
            await self._deliver_durable(binding, message, attempt)

    async def _deliver_durable(self, binding: HandlerBinding, message: Msg, attempt: int) -> None:
        event_type = (message.headers or {}).get("ce-type", "?")
        if attempt > 1:
            self._recorder.record_event(event_type, "redelivered")
        try:
            event = self._envelope(binding, message, attempt)
        except (NotAnEvent, ValidationError, DecodeError, ValueError) as error:
            reason = str(error) if isinstance(error, NotAnEvent) else f"payload does not validate: {error}"
            await self._dead_letter(binding, message, reason, attempt)
            return
        if self.accepts is not None and not await self.accepts(event):
            self._recorder.record_event(event.type, "skipped")
            await message.ack()
            return
        self._recorder.record_event(event.type, "received")
        try:
            await self._run_handler(binding, event)
        except Drop as drop:
            _log.info("module %s dropped event %s: %s", self._manifest.name, event.id, drop)
            self._recorder.record_event(event.type, "dropped")
            await message.ack()
            return
        except Retry as retry:
            await self._retry_or_dead_letter(binding, message, event, attempt, f"retry asked: {retry}", retry.delay)
            return
        except asyncio.CancelledError:
            await _quietly(message.nak())
            raise
        except Exception as error:
            self._recorder.record_event(event.type, "failed")
            span = trace.get_current_span()
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, f"{type(error).__name__}: {error}"))
            _log.warning(
                "module %s: handler %s failed on event %s (delivery %d): %s",
                self._manifest.name,
                binding.method_name,
                event.id,
                attempt,
                error,
            )
            await self._retry_or_dead_letter(binding, message, event, attempt, f"{type(error).__name__}: {error}", None)
            return
        await message.ack()

    async def _retry_or_dead_letter(
        self, binding: HandlerBinding, message: Msg, event: Event[Any], attempt: int, reason: str, delay: float | None
    ) -> None:
        options = binding.options
        if attempt >= options.max_deliveries:
            await self._dead_letter(binding, message, f"{reason} (after {attempt} deliveries)", attempt)
            return
        if delay is None:
            delay = min(options.retry_delay * 2 ** (attempt - 1), options.max_retry_delay)
        await message.nak(delay=delay)

    async def _dead_letter(self, binding: HandlerBinding, message: Msg, reason: str, attempt: int) -> None:
        """Move the message, intact, to the dead-letter stream with why; then end its deliveries."""
        assert self._js is not None
        name = consumer_name(self._manifest.name, binding.method_name)
        original = dict(message.headers or {})
        sequence = message.metadata.sequence.stream if message.metadata else 0
        headers = {
            **{k: v for k, v in original.items() if k != "Nats-Msg-Id"},
            "mesh-dlq-reason": reason[:4000],
            "mesh-dlq-module": self._manifest.name,
            "mesh-dlq-handler": binding.method_name,
            "mesh-dlq-consumer": name,
            "mesh-dlq-deliveries": str(attempt),
            "mesh-dlq-subject": message.subject,
            "mesh-dlq-time": cloudevents.now(),
            "Nats-Msg-Id": f"dlq-{name}-{sequence}",
        }
        await self._publish_with_retry(dead_letter_subject(name), message.data, headers)
        self._recorder.record_event(original.get("ce-type", "invalid"), "dead_lettered")
        _log.warning(
            "module %s: event %s dead-lettered from %s: %s",
            self._manifest.name,
            original.get("ce-id", "?"),
            binding.method_name,
            reason,
        )
        await message.term()

    async def _on_ephemeral(self, binding: HandlerBinding, message: Msg) -> None:
        # nats-py runs a subscription's callbacks one at a time in a task of its own, and
        # unsubscribing cancels that task: so drain() waits for this count to reach zero
        # before it unsubscribes, instead of starting a task per message.
        if not self._running:
            return  # at most once: an event arriving while the module stops is not handled
        self._ephemeral_busy += 1
        self._ephemeral_idle.clear()
        try:
            with self._consumer_span(binding, message, 1):
                await self._handle_ephemeral(binding, message)
        finally:
            self._ephemeral_busy -= 1
            if not self._ephemeral_busy:
                self._ephemeral_idle.set()

    async def _handle_ephemeral(self, binding: HandlerBinding, message: Msg) -> None:
        if not self._running:
            return
        try:
            event = self._envelope(binding, message, 1)
        except (NotAnEvent, ValidationError, DecodeError, ValueError) as error:
            self._recorder.record_event((message.headers or {}).get("ce-type", "invalid"), "failed")
            _log.warning("module %s: dropped an invalid ephemeral event: %s", self._manifest.name, error)
            return
        if self.accepts is not None and not await self.accepts(event):
            self._recorder.record_event(event.type, "skipped")
            return
        self._recorder.record_event(event.type, "received")
        try:
            await self._run_handler(binding, event)
        except Drop:
            self._recorder.record_event(event.type, "dropped")
        except Exception as error:
            self._recorder.record_event(event.type, "failed")
            _log.warning(
                "module %s: ephemeral handler %s failed on %s: %s",
                self._manifest.name,
                binding.method_name,
                event.id,
                error,
            )

    # --- publishing -------------------------------------------------------------

    async def publish(
        self,
        event_type: str,
        payload: Any,
        *,
        tenant: str | None = None,
        company: str | None = None,
        subject: str | None = None,
        event_id: str | None = None,
        durable: bool = True,
    ) -> str:
        """Publish one event; returns its id. See `Context.publish`."""
        if event_type not in self._manifest.events.publishes:
            raise MeshError(
                "UNDECLARED_EVENT",
                f"module {self._manifest.name} published '{event_type}', which {self._manifest_path} does not "
                "declare; add it to [events] publishes",
                metadata={"module": self._manifest.name, "event_type": event_type},
            )
        if self._nats is None:
            raise MeshError(
                "MODULE_UNAVAILABLE",
                f"module {self._manifest.name} cannot publish: it was given no NATS servers at Initialize",
                metadata={"module": self._manifest.name},
            )
        if tenant:
            check_token(tenant, "tenant")
        payload = self._typed_payload(event_type, payload)
        event_id = event_id or uuid.uuid4().hex
        body = codec_for(type(payload)).encode(payload)
        headers = cloudevents.to_nats(
            CloudEvent(
                id=event_id,
                type=event_type,
                source=self._source,
                time=cloudevents.now(),
                subject=subject or "",
                tenant=tenant or "",
                company=company or "",
                datacontenttype=content_type_of(payload),
                dataschema=f"proto:{payload.DESCRIPTOR.full_name}" if isinstance(payload, ProtoMessage) else "",
            )
        )
        target = event_subject(event_type, tenant)
        with _tracer.start_as_current_span(
            f"{event_type} publish",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "nats",
                "messaging.operation.type": "publish",
                "messaging.destination.name": target,
                "messaging.message.id": event_id,
                "cloudevents.event_type": event_type,
                "mesh.module": self._manifest.name,
            },
        ):
            propagate.inject(headers)
            await self._send(event_type, target, body, headers, durable)
        self._recorder.record_event(event_type, "published")
        return event_id

    async def _send(self, event_type: str, target: str, body: bytes, headers: dict[str, str], durable: bool) -> None:
        """Refuse what the server would refuse, then publish (durably: until acknowledged)."""
        assert self._nats is not None
        size = len(body) + sum(len(k) + len(v) + 4 for k, v in headers.items())
        if size > self._nats.max_payload:
            raise MeshError(
                "INVALID_EVENT",
                f"event '{event_type}' is {size} bytes with its headers; the NATS server takes at most "
                f"{self._nats.max_payload} (max_payload); send a reference to the data instead",
                metadata={"module": self._manifest.name, "event_type": event_type},
            )
        if durable:
            await self._publish_with_retry(target, body, headers)
        else:
            await self._nats.publish(target, body, headers=headers)

    def _typed_payload(self, event_type: str, payload: Any) -> Any:
        """Check a payload against the module's declared model for the type (dicts are validated into it)."""
        model = getattr(self._module, "event_models", {}).get(event_type)
        if model is None or isinstance(payload, model):
            return payload
        if isinstance(model, type) and issubclass(model, BaseModel) and isinstance(payload, dict):
            try:
                return model.model_validate(payload)
            except ValidationError as error:
                raise MeshError(
                    "INVALID_EVENT",
                    f"payload of '{event_type}' does not validate as {model.__name__}: {error}",
                    metadata={"module": self._manifest.name, "event_type": event_type},
                ) from None
        raise MeshError(
            "INVALID_EVENT",
            f"payload of '{event_type}' must be {model.__name__} (event_models of {type(self._module).__name__}), "
            f"got {type(payload).__name__}",
            metadata={"module": self._manifest.name, "event_type": event_type},
        )

    async def _publish_with_retry(self, target: str, body: bytes, headers: dict[str, str]) -> None:
        """Publish to JetStream until acknowledged; the Nats-Msg-Id keeps retries single."""
        assert self._js is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PUBLISH_RETRY_SECONDS
        delay = 0.1
        while True:
            try:
                await self._js.publish(target, body, timeout=5.0, headers=headers)
                return
            except (
                nats.errors.TimeoutError,
                nats.errors.NoRespondersError,
                nats.errors.ConnectionClosedError,
                nats.errors.OutboundBufferLimitError,
                nats.js.errors.ServiceUnavailableError,
                TimeoutError,
            ) as error:
                if loop.time() > deadline:
                    raise MeshError(
                        "MODULE_UNAVAILABLE",
                        f"module {self._manifest.name} could not publish to {target} within "
                        f"{PUBLISH_RETRY_SECONDS:.0f} s: {error!r}",
                        metadata={"module": self._manifest.name},
                    ) from error
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)


async def _quietly(work: Awaitable[Any]) -> None:
    try:
        await work
    except Exception as error:
        _log.debug("ignored while cancelling: %s", error)
