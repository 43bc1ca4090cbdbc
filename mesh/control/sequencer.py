"""The sequencer: brings the modules up in dependency order and stops them in reverse.

Built on the eager ordering (`ordering.run_in_order`): each module is initialized and
started the moment its own dependencies run. A critical module's failure aborts the
start-up; a non-critical one's only fails the modules that require it.

The modules `mesh up` spawns are all described first, and their NATS users admitted at once
(one reload of the embedded server instead of one per module, which also drops connections
still in their handshake), before the first Initialize; a module still not described after
DESCRIBE_AHEAD_SECONDS is admitted on its own later, so a slow one holds up only its
dependents, as before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from opentelemetry import trace

from mesh.control import graph
from mesh.control.lifecycle import ModuleLifecycle
from mesh.control.ordering import OrderedRun, run_in_order
from mesh.control.registration import Registration
from mesh.control.registry import ModuleRecord, Registry
from mesh.control.reports import failure_report
from mesh.control.supervisor import Supervisor
from mesh.protocol.errors import MeshError
from mesh.protocol.manifest import Manifest
from mesh.protocol.states import State
from mesh.v1 import lifecycle_pb2, module_pb2

AdmitAhead = Callable[[Sequence[tuple[Manifest, Sequence[lifecycle_pb2.EventConsumer]]]], Awaitable[None]]
"""Gives many described modules their NATS identities at once (NatsIdentities.admit_ahead)."""

DESCRIBE_AHEAD_SECONDS = 3.0
"""How long the first Initialize waits for the other spawned modules to be described, so
that all are admitted to NATS at once (a 40-module mesh takes about 0.5 s)."""

_tracer = trace.get_tracer("mesh.coordinator")
_log = logging.getLogger("mesh")


class Sequencer:
    """Orders the bring-up and the stop of every module of a mesh."""

    def __init__(
        self,
        registry: Registry,
        lifecycle: ModuleLifecycle,
        supervisor: Supervisor,
        registration: Registration,
        *,
        admit_ahead: AdmitAhead,
    ) -> None:
        self._registry = registry
        self._admit_ahead = admit_ahead
        self._lifecycle = lifecycle
        self._supervisor = supervisor
        self._registration = registration

    async def bring_up(self, plan: graph.Plan, *, external: bool, coordinator_address: str) -> OrderedRun:
        """Spawn the local modules (or expect them to register), then initialize and start
        every module in dependency order.

        Args:
            plan: The validated plan.
            external: The modules of the folder run elsewhere and register themselves.
            coordinator_address: Where modules reach the coordinator (named in messages).

        Returns:
            How the run went; when no critical module failed, every module that did not
            run is marked FAILED.
        """
        spawned: list[str] = []
        for record in self._registry.records.values():
            if record.origin != module_pb2.MODULE_ORIGIN_LOCAL or record.state is State.SKIPPED:
                continue
            if external:
                self._registration.expect(record.name)
            else:
                self._supervisor.begin_spawn(record)
                spawned.append(record.name)

        async def arrived(record: ModuleRecord) -> None:
            await self._supervisor.spawned(record.name)
            await self._registration.arrival(record, coordinator_address)

        async def described(record: ModuleRecord) -> lifecycle_pb2.DescribeResponse:
            await arrived(record)
            return await self._lifecycle.describe(record)

        records = self._registry.records
        ahead = {name: asyncio.create_task(described(records[name]), name=f"describe:{name}") for name in spawned}

        async def bring_up_one(name: str) -> None:
            task = ahead.get(name)
            if task is not None:
                await self._lifecycle.bring_up(records[name], await task)
                return
            await arrived(records[name])
            await self._lifecycle.bring_up(records[name])

        # One trace for the whole start-up: a span per module initialize and start below it,
        # continued into each module's own server spans.
        try:
            with _tracer.start_as_current_span("mesh up", attributes={"mesh.modules": len(plan.order)}):
                await self._admit_described(ahead)
                result = await run_in_order(
                    plan.order,
                    waits_for={name: [d.name for d in plan.modules[name].dependencies] for name in plan.order},
                    requires=graph.required_dependencies(plan.modules),
                    action=bring_up_one,
                    abort_on_failure_of=plan.critical,
                )
        finally:
            for task in ahead.values():
                task.cancel()
            await asyncio.gather(*ahead.values(), return_exceptions=True)  # their failures are reported in order
        if result.aborted_by is None:
            for name, reason in result.not_run.items():
                self._registry.update(self._registry.records[name], State.FAILED, reason)
        return result

    async def _admit_described(self, ahead: dict[str, asyncio.Task[lifecycle_pb2.DescribeResponse]]) -> None:
        """Admit to NATS at once every module described within DESCRIBE_AHEAD_SECONDS; a failure
        here is left to each module's own admission, which reports it as that module's."""
        if not ahead:
            return
        await asyncio.wait(ahead.values(), timeout=DESCRIBE_AHEAD_SECONDS)
        ready = [
            (self._registry.records[name].manifest, task.result().consumers)
            for name, task in ahead.items()
            if task.done() and not task.cancelled() and task.exception() is None
        ]
        try:
            await self._admit_ahead(ready)
        except MeshError as error:
            _log.warning("admitting the modules to NATS at once failed (%s); each is admitted on its own", error)

    def abort_report(self, result: OrderedRun) -> list[str]:
        """The lines that explain an aborted start-up: the critical failure, then what did not run."""
        assert result.aborted_by is not None, "only an aborted run has an abort report"
        failed = self._registry.records[result.aborted_by]
        lines = failure_report(
            failed, f"start-up aborted: critical module '{failed.name}' failed: {_error_text(failed)}"
        )
        for name, why in sorted(result.not_run.items()):
            lines.append(f"  {name}: not started, {why}")
        return lines

    async def stop_all(self, reason: str) -> int:
        """Stop every module that is not skipped, each once all its dependents have stopped.

        Returns:
            How many modules there were to stop (those that never ran are left as they are).
        """
        records = self._registry.records
        names = [name for name, record in records.items() if record.state is not State.SKIPPED]
        dependents = {name: records[name].dependents for name in names}
        stopped: list[str] = []

        async def stop_one(name: str) -> None:
            if await self._supervisor.stop_one(records[name], reason):
                stopped.append(name)

        await run_in_order(names, waits_for=dependents, action=stop_one)
        return len(stopped)


def _error_text(record: ModuleRecord) -> str:
    if record.error is not None and record.error.message:
        return f"{record.error.reason}: {record.error.message}"
    return record.state_reason or record.state.name
