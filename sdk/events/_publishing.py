"""Publishing one module's events: checked against its manifest and its `event_models`,
encoded by the one CloudEvents codec, traced, and stored by JetStream through NATS outages
(or fired on core NATS for signals)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import nats.errors
import nats.js.errors
from google.protobuf.message import Message as ProtoMessage
from nats.aio.client import Client as NatsClient
from pydantic import BaseModel, ValidationError

from mesh.protocol import cloudevents
from mesh.protocol.cloudevents import CloudEvent
from mesh.protocol.errors import MeshError
from mesh.protocol.manifest import Manifest
from mesh.protocol.names import check_token, event_subject
from mesh.protocol.nats_limits import check_size, check_subject
from sdk._metrics import ModuleMetricsRecorder
from sdk.events._payloads import codec_for, content_type_of
from sdk.events._tracing import EventTracing

PUBLISH_RETRY_SECONDS = 60.0
"""How long a durable publish keeps retrying through a NATS outage before it fails."""

_TRANSIENT = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
    nats.errors.OutboundBufferLimitError,
    nats.js.errors.ServiceUnavailableError,
    TimeoutError,
)
"""Errors of a NATS outage, which a retry outlives."""


_TARGETS_REMEMBERED = 4096
"""How many (event type, tenant) subjects a publisher keeps checked; past that it starts over."""


def new_event_id() -> str:
    """A random event id: 32 hex digits laid out as a version-4 UUID (122 random bits).

    What `uuid.uuid4().hex` gives, at a quarter of its cost (no UUID object): this runs on
    every publish."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40
    raw[8] = raw[8] & 0x3F | 0x80
    return raw.hex()


class Publisher:
    """Sends the events of one module instance."""

    def __init__(
        self,
        *,
        nats_client: NatsClient | None,
        manifest: Manifest,
        manifest_path: str,
        module: Any,
        recorder: ModuleMetricsRecorder,
        tracing: EventTracing,
    ) -> None:
        self._nats = nats_client
        self._js = nats_client.jetstream() if nats_client else None
        self._manifest = manifest
        self._manifest_path = manifest_path
        self._module = module
        self._recorder = recorder
        self._tracing = tracing
        self._source = f"mesh://{manifest.name}"
        self._targets: dict[tuple[str, str | None], str] = {}

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
        payload = self.check(event_type, payload, tenant)
        if self._nats is None:
            raise MeshError(
                "MODULE_UNAVAILABLE",
                f"module {self._manifest.name} cannot publish: it was given no NATS servers at Initialize",
                metadata={"module": self._manifest.name},
            )
        event_id = event_id or new_event_id()
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
        target = self._targets.get((event_type, tenant))
        if target is None:  # checked once per type and tenant: this runs on every publish
            target = event_subject(event_type, tenant)
            check_subject(target, f"the subject of event '{event_type}'")
            if len(self._targets) >= _TARGETS_REMEMBERED:
                self._targets.clear()
            self._targets[(event_type, tenant)] = target

        async def send(traced: dict[str, str]) -> None:
            await self._send(event_type, target, body, traced, durable)

        await self._tracing.publish(event_type, target, event_id, headers, send)
        self._recorder.record_event(event_type, "published")
        return event_id

    async def _send(self, event_type: str, target: str, body: bytes, headers: dict[str, str], durable: bool) -> None:
        """Refuse what the server would refuse, then publish (durably: until acknowledged)."""
        assert self._nats is not None
        check_size(body, headers, self._nats.max_payload, f"event '{event_type}'", stored=durable)
        if durable:
            await self.store(target, body, headers)
        else:
            await self._nats.publish(target, body, headers=headers)

    def check(self, event_type: str, payload: Any, tenant: str | None) -> Any:
        """What publishing refuses before anything is sent: an undeclared type, a tenant that
        cannot be a subject token, a payload not of the declared model. Returns the payload,
        validated into the declared model when given as a dict."""
        if event_type not in self._manifest.events.publishes:
            raise MeshError(
                "UNDECLARED_EVENT",
                f"module {self._manifest.name} published '{event_type}', which {self._manifest_path} does not "
                "declare; add it to [events] publishes",
                metadata={"module": self._manifest.name, "event_type": event_type},
            )
        if tenant:
            check_token(tenant, "tenant")
        return self._typed_payload(event_type, payload)

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
            f"payload of '{event_type}' must be {model.__name__} (event_models of {_class_name(self._module)}), "
            f"got {type(payload).__name__}",
            metadata={"module": self._manifest.name, "event_type": event_type},
        )

    async def store(self, target: str, body: bytes, headers: dict[str, str]) -> None:
        """Publish to JetStream until acknowledged; the Nats-Msg-Id keeps retries single.

        Raises:
            MeshError: MODULE_UNAVAILABLE when NATS stayed away for PUBLISH_RETRY_SECONDS.
        """
        assert self._js is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + PUBLISH_RETRY_SECONDS
        delay = 0.1
        while True:
            try:
                await self._js.publish(target, body, timeout=5.0, headers=headers)
                return
            except _TRANSIENT as error:
                if loop.time() > deadline:
                    raise MeshError(
                        "MODULE_UNAVAILABLE",
                        f"module {self._manifest.name} could not publish to {target} within "
                        f"{PUBLISH_RETRY_SECONDS:.0f} s: {error!r}",
                        metadata={"module": self._manifest.name},
                    ) from error
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)


def _class_name(module: Any) -> str:
    """The name of the module's class (given the class itself, or an instance of it)."""
    return module.__name__ if isinstance(module, type) else type(module).__name__
