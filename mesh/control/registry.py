"""What the coordinator knows about every module, and who is told when that changes.

One record per module; every state change goes through `Registry.update`, which stamps
it and tells the listeners (WatchModules streams, NATS lifecycle events, the CLI).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import timestamp_pb2

from mesh.control.process import ModuleProcess
from mesh.control.restart import RestartBudget
from mesh.protocol.errors import MeshError, excerpt
from mesh.protocol.manifest import Manifest
from mesh.protocol.states import State
from mesh.v1 import coordinator_pb2, health_pb2, module_pb2

_log = logging.getLogger("mesh")

Listener = Callable[["ModuleRecord", State], None]
"""Called with the record after a change and the state before it."""


def now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp


@dataclass
class ModuleRecord:
    """One module as the coordinator sees it."""

    manifest: Manifest
    origin: module_pb2.ModuleOrigin
    directory: Path | None = None
    state: State = State.REGISTERED
    state_reason: str = ""
    address: str = ""
    error: module_pb2.ModuleError | None = None
    instance_id: str = ""
    pid: int = 0
    restart_count: int = 0
    critical: bool = False
    dependents: list[str] = field(default_factory=list)
    state_changed_at: timestamp_pb2.Timestamp = field(default_factory=now)
    started_at: timestamp_pb2.Timestamp | None = None
    process: ModuleProcess | None = None
    manifest_proto: module_pb2.Manifest | None = None
    last_health: health_pb2.ModuleHealth | None = None
    budget: RestartBudget | None = None
    expected_exit: bool = False

    @property
    def name(self) -> str:
        return self.manifest.name

    def status(self) -> module_pb2.ModuleStatus:
        return module_pb2.ModuleStatus(
            name=self.name,
            version=self.manifest.version,
            state=self.state.value,
            address=self.address,
            dependencies=self.manifest.to_proto().dependencies,
            description=self.manifest.description,
            state_reason=self.state_reason,
            error=self.error,
            state_changed_at=self.state_changed_at,
            started_at=self.started_at,
            instance_id=self.instance_id,
            pid=self.pid,
            restart_count=self.restart_count,
            critical=self.critical,
            origin=self.origin,
            dependents=self.dependents,
            public_methods=self.manifest.gateway.public,
        )


def describe_origin(record: ModuleRecord) -> str:
    """Where a module comes from, for messages: "spawned from modules/orders", ..."""
    if record.origin == module_pb2.MODULE_ORIGIN_STATIC:
        return "a remote module of the mesh configuration"
    if record.origin == module_pb2.MODULE_ORIGIN_REGISTERED:
        return f"registered from {record.address}"
    return f"spawned from {record.directory}"


class Registry:
    """The module records, in initialization order, with change listeners."""

    def __init__(self) -> None:
        self.records: dict[str, ModuleRecord] = {}
        self._listeners: list[Listener] = []
        self._watchers: set[asyncio.Queue[coordinator_pb2.WatchModulesResponse]] = set()

    def add(self, record: ModuleRecord) -> None:
        self.records[record.name] = record

    def remove(self, name: str) -> None:
        """Forget module `name`, also as a dependent of the others."""
        del self.records[name]
        for other in self.records.values():
            if name in other.dependents:
                other.dependents.remove(name)

    def get(self, name: str) -> ModuleRecord | None:
        return self.records.get(name)

    def require(self, name: str) -> ModuleRecord:
        """The record of `name`; MODULE_NOT_FOUND (naming the known modules) when there is none."""
        record = self.records.get(name)
        if record is None:
            known = ", ".join(sorted(self.records)) or "none"
            raise MeshError(
                "MODULE_NOT_FOUND",
                f"no module {excerpt(name)} in this mesh (known: {known})",
                metadata={"module": name},
            )
        return record

    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def update(
        self,
        record: ModuleRecord,
        state: State,
        reason: str = "",
        *,
        error: module_pb2.ModuleError | None = None,
    ) -> None:
        """Move `record` to `state` and tell everyone who listens.

        Only the module's registered record is told about: a record that stands for a process
        not (yet) serving as the module, such as a restart's successor starting beside the
        running one, changes quietly.
        """
        previous = record.state
        record.state = state
        record.state_reason = reason
        record.state_changed_at = now()
        if error is not None:
            record.error = error
        if state is State.RUNNING and previous is not State.RUNNING:
            record.started_at = now()
        registered = self.records.get(record.name)
        if registered is not None and registered is not record:
            return
        change = coordinator_pb2.WatchModulesResponse(
            status=record.status(), previous_state=previous.value, time=record.state_changed_at
        )
        for queue in self._watchers:
            queue.put_nowait(change)
        for listener in self._listeners:
            try:
                listener(record, previous)
            except Exception:  # a listener's bug must never stop the state machine
                _log.exception("a module state listener failed")

    def watch(self) -> asyncio.Queue[coordinator_pb2.WatchModulesResponse]:
        """A queue that receives every change from now on; `unwatch` it when done."""
        queue: asyncio.Queue[coordinator_pb2.WatchModulesResponse] = asyncio.Queue()
        self._watchers.add(queue)
        return queue

    def unwatch(self, queue: asyncio.Queue[coordinator_pb2.WatchModulesResponse]) -> None:
        self._watchers.discard(queue)
