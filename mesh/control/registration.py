"""Modules that join from outside: RegisterModule and DeregisterModule.

Two kinds register. A module of the folder that runs elsewhere (external mode) is expected:
the ordered start-up waits for it. Any other module joins a running mesh, after the same
graph validation as at start-up (`graph.problems_on_joining`), and is brought up at once.
"""

from __future__ import annotations

import asyncio
import contextlib

from mesh.control import graph
from mesh.control.lifecycle import ModuleLifecycle
from mesh.control.process import module_command
from mesh.control.registry import ModuleRecord, Registry, describe_origin
from mesh.control.tasks import BackgroundTasks
from mesh.protocol.errors import MeshError
from mesh.protocol.manifest import Manifest
from mesh.protocol.states import State
from mesh.v1 import module_pb2


class Registration:
    """Accepts and removes modules that register themselves with the coordinator."""

    def __init__(
        self,
        registry: Registry,
        lifecycle: ModuleLifecycle,
        tasks: BackgroundTasks,
        *,
        ready_timeout_seconds: float,
    ) -> None:
        self._registry = registry
        self._lifecycle = lifecycle
        self._tasks = tasks
        self._ready_timeout_seconds = ready_timeout_seconds
        self._expected: dict[str, asyncio.Event] = {}  # set when the module has registered

    # --- modules of the folder that run elsewhere ---------------------------------------

    def expect(self, name: str) -> None:
        """Module `name` of the folder will register (external mode) instead of being spawned."""
        self._expected[name] = asyncio.Event()

    async def arrival(self, record: ModuleRecord, coordinator_address: str) -> None:
        """Wait until an expected module has registered; at once for any other.

        Raises:
            MeshError: MODULE_UNAVAILABLE when it did not register in time (the record is FAILED).
        """
        registered = self._expected.get(record.name)
        if registered is None:
            return
        timeout = self._ready_timeout_seconds
        try:
            await asyncio.wait_for(registered.wait(), timeout=timeout)
        except TimeoutError:
            command = " ".join(module_command(record.manifest, record.directory)) if record.directory else "its command"
            message = (
                f"module {record.name} did not register within {timeout:.0f} s; start it with "
                f"MESH_COORDINATOR={coordinator_address} ({command})"
            )
            self._lifecycle.fail(record, "register", "MODULE_UNAVAILABLE", message)
            raise MeshError("MODULE_UNAVAILABLE", message, metadata={"module": record.name}) from None

    # --- RegisterModule ---------------------------------------------------------------

    async def register(
        self, address: str, manifest: Manifest, manifest_proto: module_pb2.Manifest, instance_id: str
    ) -> ModuleRecord:
        """Add a module started outside the coordinator, then bring it up in the background.

        Raises:
            MeshError: MODULE_ALREADY_REGISTERED, INVALID_MANIFEST, or the reason of the first
                graph problem the module would cause (each problem's message names its fix).
        """
        existing = self._registry.get(manifest.name)
        if existing is not None and manifest.name in self._expected:
            return self._accept_expected(existing, address, manifest, manifest_proto, instance_id)
        if existing is not None and existing.origin != module_pb2.MODULE_ORIGIN_REGISTERED:
            raise MeshError(
                "MODULE_ALREADY_REGISTERED",
                f"module '{manifest.name}' is already in this mesh ({describe_origin(existing)}); "
                "registered modules need a name of their own",
                metadata={"module": manifest.name},
            )
        running = {name: r.manifest for name, r in self._registry.records.items() if r.state is not State.SKIPPED}
        problems = graph.problems_on_joining(running, manifest)
        if problems:
            raise MeshError(
                problems[0].reason,
                "; ".join(problem.message for problem in problems),
                metadata={"module": manifest.name},
            )
        record = ModuleRecord(
            manifest=manifest,
            origin=module_pb2.MODULE_ORIGIN_REGISTERED,
            address=address,
            instance_id=instance_id,
            manifest_proto=manifest_proto,
        )
        self._registry.add(record)
        for dependency in manifest.dependencies:
            target = self._registry.get(dependency.name)
            if target is not None and manifest.name not in target.dependents:
                target.dependents.append(manifest.name)
                target.critical = target.critical or not dependency.optional
        self._registry.update(record, State.REGISTERED, f"registered from {address}")
        self._tasks.start(self._bring_up(record), name=f"register:{record.name}")
        return record

    def _accept_expected(
        self,
        record: ModuleRecord,
        address: str,
        manifest: Manifest,
        manifest_proto: module_pb2.Manifest,
        instance_id: str,
    ) -> ModuleRecord:
        """A module of the folder, run elsewhere, registering: the first time the ordered
        start-up brings it up; later (a new instance) it is brought up again at once."""
        if manifest.version != record.manifest.version:
            raise MeshError(
                "INVALID_MANIFEST",
                f"module '{manifest.name}' registered as version {manifest.version}, but {record.directory} "
                f"holds version {record.manifest.version}; deploy the same code everywhere",
                metadata={"module": manifest.name},
            )
        registered = self._expected[manifest.name]
        again = registered.is_set()
        record.address, record.instance_id, record.manifest_proto = address, instance_id, manifest_proto
        record.origin = module_pb2.MODULE_ORIGIN_REGISTERED
        self._registry.update(record, State.REGISTERED, f"registered from {address}")
        if again:
            self._tasks.start(self._bring_up(record, again=True), name=f"re-register:{record.name}")
        registered.set()
        return record

    async def _bring_up(self, record: ModuleRecord, *, again: bool = False) -> None:
        """Bring a registered module up; a new instance of a known one also counts as a
        restart and its dependents learn its address."""
        with contextlib.suppress(MeshError):  # the failure is recorded on the module
            await self._lifecycle.bring_up(record)
            if again:
                record.restart_count += 1
                await self._lifecycle.reload_dependents(record)

    # --- DeregisterModule -------------------------------------------------------------

    def deregister(self, name: str, instance_id: str, force: bool) -> ModuleRecord:
        """Remove a registered module from the mesh.

        Args:
            name: The module.
            instance_id: When set, only this instance is removed (a newer one stays).
            force: Remove it even though running modules require it.

        Raises:
            MeshError: MODULE_NOT_FOUND or MODULE_HAS_DEPENDENTS.
        """
        record = self._registry.require(name)
        if record.origin != module_pb2.MODULE_ORIGIN_REGISTERED:
            raise MeshError(
                "MODULE_NOT_FOUND",
                f"module '{name}' was not registered; only registered modules deregister",
                metadata={"module": name},
            )
        if instance_id and instance_id != record.instance_id:
            raise MeshError(
                "MODULE_NOT_FOUND",
                f"module '{name}' is registered as instance {record.instance_id}, not {instance_id}",
                metadata={"module": name},
            )
        users = [dependent for dependent in record.dependents if self._requires_running(dependent, name)]
        if users and not force:
            raise MeshError(
                "MODULE_HAS_DEPENDENTS",
                f"running modules require '{name}': {', '.join(users)}; stop them first or deregister with force",
                metadata={"module": name},
            )
        self._registry.remove(name)
        self._registry.update(record, State.STOPPED, "deregistered")
        return record

    def _requires_running(self, dependent: str, name: str) -> bool:
        """Whether module `dependent` runs and requires `name` (not merely optionally)."""
        record = self._registry.get(dependent)
        if record is None or record.state is not State.RUNNING:
            return False
        dependency = record.manifest.dependency(name)
        return dependency is not None and not dependency.optional
