"""The sequencer: brings the modules up in dependency order and stops them in reverse.

Built on the eager ordering (`ordering.run_in_order`): each module is initialized and
started the moment its own dependencies run. A critical module's failure aborts the
start-up; a non-critical one's only fails the modules that require it.
"""

from __future__ import annotations

from opentelemetry import trace

from mesh.control import graph
from mesh.control.lifecycle import ModuleLifecycle
from mesh.control.ordering import OrderedRun, run_in_order
from mesh.control.registration import Registration
from mesh.control.registry import ModuleRecord, Registry
from mesh.control.reports import failure_report
from mesh.control.supervisor import Supervisor
from mesh.protocol.states import State
from mesh.v1 import module_pb2

_tracer = trace.get_tracer("mesh.coordinator")


class Sequencer:
    """Orders the bring-up and the stop of every module of a mesh."""

    def __init__(
        self, registry: Registry, lifecycle: ModuleLifecycle, supervisor: Supervisor, registration: Registration
    ) -> None:
        self._registry = registry
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
        for record in self._registry.records.values():
            if record.origin != module_pb2.MODULE_ORIGIN_LOCAL or record.state is State.SKIPPED:
                continue
            if external:
                self._registration.expect(record.name)
            else:
                self._supervisor.begin_spawn(record)

        async def bring_up_one(name: str) -> None:
            record = self._registry.records[name]
            await self._supervisor.spawned(name)
            await self._registration.arrival(record, coordinator_address)
            await self._lifecycle.bring_up(record)

        # One trace for the whole start-up: a span per module initialize and start below it,
        # continued into each module's own server spans.
        with _tracer.start_as_current_span("mesh up", attributes={"mesh.modules": len(plan.order)}):
            result = await run_in_order(
                plan.order,
                waits_for={name: [d.name for d in plan.modules[name].dependencies] for name in plan.order},
                requires=graph.required_dependencies(plan.modules),
                action=bring_up_one,
                abort_on_failure_of=plan.critical,
            )
        if result.aborted_by is None:
            for name, reason in result.not_run.items():
                self._registry.update(self._registry.records[name], State.FAILED, reason)
        return result

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
