"""Lifecycle events on NATS: `mesh.sys.module.<name>.<event>` when a module is
initialized, started, failed, restarted, stopped or skipped.

Each is a CloudEvent in the NATS binding's binary mode (attributes in `ce-` headers, the
module's status as JSON in the body), so any NATS client can follow a mesh.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from typing import Any

import nats
from google.protobuf import json_format
from nats.aio.client import Client as NatsClient

from mesh.control.registry import ModuleRecord
from mesh.protocol import cloudevents
from mesh.protocol.cloudevents import CloudEvent
from mesh.protocol.names import MODULE_EVENTS_PREFIX, SYSTEM_SUBJECT_PREFIX
from mesh.protocol.states import State

SOURCE = "mesh://coordinator"

_EVENT_OF_STATE = {
    State.INITIALIZED: "initialized",
    State.RUNNING: "started",
    State.FAILED: "failed",
    State.STOPPED: "stopped",
    State.SKIPPED: "skipped",
}

_log = logging.getLogger("mesh")


def cloud_event_headers(event_type: str, subject: str = "") -> dict[str, str]:
    """Headers of a CloudEvent the coordinator publishes (NATS binary mode)."""
    event = CloudEvent(id=uuid.uuid4().hex, type=event_type, source=SOURCE, time=cloudevents.now(), subject=subject)
    return cloudevents.to_nats(event)


class LifecycleEvents:
    """Publishes module lifecycle events in the order they happen."""

    def __init__(self) -> None:
        self._nats: NatsClient | None = None
        self._queue: asyncio.Queue[tuple[str, bytes, dict[str, str]] | None] = asyncio.Queue()
        self._publisher: asyncio.Task[None] | None = None

    async def connect(self, url: str, login: dict[str, Any]) -> None:
        """Connect as the coordinator (`login`: its nats-py authentication options)."""
        self._nats = await nats.connect(url.split(","), name="mesh-coordinator", max_reconnect_attempts=-1, **login)
        self._publisher = asyncio.create_task(self._publish_in_order(), name="lifecycle-events")

    def connection(self) -> Any:
        """The coordinator's NATS connection."""
        assert self._nats is not None, "connect() first"
        return self._nats

    def jetstream(self) -> Any:
        """JetStream over the coordinator's connection (for creating the event streams)."""
        assert self._nats is not None, "connect() first"
        return self._nats.jetstream()

    def on_change(self, record: ModuleRecord, previous: State) -> None:
        """Registry listener: one event per meaningful state change."""
        event = _EVENT_OF_STATE.get(record.state)
        if event is not None and record.state is not previous:
            self._enqueue(record, event)

    async def publish_json(self, subject: str, data: dict[str, Any]) -> None:
        """Queue a CloudEvent of type `subject` minus `mesh.sys.` (e.g. tenant.acme.module.enabled)."""
        headers = cloud_event_headers(subject.removeprefix(f"{SYSTEM_SUBJECT_PREFIX}."))
        self._queue.put_nowait((subject, json.dumps(data).encode(), headers))

    def on_restart(self, record: ModuleRecord) -> None:
        self._enqueue(record, "restarted")

    def _enqueue(self, record: ModuleRecord, event: str) -> None:
        body = json_format.MessageToJson(record.status(), indent=None).encode()
        headers = cloud_event_headers(f"module.{event}", subject=record.name)
        self._queue.put_nowait((f"{MODULE_EVENTS_PREFIX}.{record.name}.{event}", body, headers))

    async def _publish_in_order(self) -> None:
        while (item := await self._queue.get()) is not None:
            subject, body, headers = item
            try:
                assert self._nats is not None
                await self._nats.publish(subject, body, headers=headers)
            except Exception as error:  # events inform; they never stop the mesh
                _log.warning("could not publish %s: %s", subject, error)

    async def close(self) -> None:
        """Publish what is queued, then disconnect."""
        if self._publisher is not None:
            self._queue.put_nowait(None)
            await self._publisher
        if self._nats is not None and not self._nats.is_closed:
            with contextlib.suppress(Exception):
                await self._nats.drain()
