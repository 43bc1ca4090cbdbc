"""The supervisor: owns each local module's process and restart budget. It spawns the
process, watches it exit, restarts it per its restart policy with backoff, replaces it on
request, and ends it at stop (Stop call, grace, SIGTERM, SIGKILL)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from opentelemetry import metrics, trace

from mesh.control.lifecycle import ModuleLifecycle
from mesh.control.process import ModuleProcess, ProcessStartError, current_environment, spawn
from mesh.control.registry import ModuleRecord, Registry
from mesh.control.statedir import StateDir
from mesh.control.tasks import BackgroundTasks
from mesh.protocol.errors import MeshError
from mesh.protocol.states import State
from mesh.protocol.transport import INSECURE_ENV, TLS_DIR_ENV, Transport

_log = logging.getLogger("mesh")
_tracer = trace.get_tracer("mesh.coordinator")
_restarts = metrics.get_meter("mesh.coordinator").create_counter(
    "mesh.module.restarts", description="module processes replaced, after a crash or on request"
)

PROCESS_END_GRACE_SECONDS = 5.0
"""After a module answered Stop (or failed to), how long its process may take to exit."""


class Supervisor:
    """Spawns, watches, restarts and ends module processes."""

    def __init__(
        self,
        registry: Registry,
        lifecycle: ModuleLifecycle,
        state_dir: StateDir,
        tasks: BackgroundTasks,
        transport: Transport,
        *,
        env: Mapping[str, str],
        module_env: Callable[[str], dict[str, str]],
        ready_timeout_seconds: float,
    ) -> None:
        """A supervisor of the modules in `registry`.

        Args:
            transport: How the coordinator dials a module (its health check at start).
            env: Variables every module process gets on top of the coordinator's.
            module_env: A module's own transport variables (MESH_TLS_DIR with its credentials,
                issued when called, or MESH_INSECURE), by module name.
        """
        self._registry = registry
        self._transport = transport
        self._module_env = module_env
        self._lifecycle = lifecycle
        self._state_dir = state_dir
        self._tasks = tasks
        self._env = dict(env)
        self._ready_timeout_seconds = ready_timeout_seconds
        self._spawning: dict[str, asyncio.Task[None]] = {}
        self._stopping = False
        self.restart_listeners: list[Callable[[ModuleRecord], None]] = []
        """Called after a crashed or replaced module runs again (e.g. the NATS lifecycle events)."""

    # --- spawn -------------------------------------------------------------------------

    def begin_spawn(self, record: ModuleRecord) -> None:
        """Start `record`'s process in the background; `spawned` waits for it to serve."""
        self._spawning[record.name] = self._tasks.start(self._spawn(record), name=f"spawn:{record.name}")

    async def spawned(self, name: str) -> None:
        """Wait for the spawn begun for `name`, if any; raises what the spawn raised."""
        spawning = self._spawning.pop(name, None)
        if spawning is not None:
            await spawning

    async def _spawn(self, record: ModuleRecord) -> None:
        assert record.directory is not None, "only modules of the folder are spawned"
        try:
            process = await spawn(
                record.manifest,
                record.directory,
                run_dir=self._state_dir.run,
                log_dir=self._state_dir.logs,
                state_dir=self._state_dir.state,
                env=self._environment(record.name),
            )
        except ProcessStartError as error:
            self._lifecycle.fail(record, "spawn", "MODULE_LOAD_FAILED", str(error))
            raise
        record.process = process
        record.pid = process.pid
        record.expected_exit = False
        self._tasks.start(self._watch_exit(record, process), name=f"watch:{record.name}")
        try:
            record.address = await process.wait_ready(self._ready_timeout_seconds, self._transport)
        except ProcessStartError as error:
            self._lifecycle.fail(record, "spawn", "MODULE_LOAD_FAILED", str(error))
            await process.end(PROCESS_END_GRACE_SECONDS)
            raise
        record.instance_id = process.instance_id

    def _environment(self, name: str) -> dict[str, str]:
        """The coordinator's environment without its own transport variables, plus the module's."""
        inherited = current_environment() | self._env
        for variable in (TLS_DIR_ENV, INSECURE_ENV):
            inherited.pop(variable, None)
        return inherited | self._module_env(name)

    # --- crashes and restarts --------------------------------------------------------------

    async def _watch_exit(self, record: ModuleRecord, process: ModuleProcess) -> None:
        """Supervise a module that has run: a process that never reached RUNNING is reported
        by the start-up path that waits for it instead."""
        code = await process.process.wait()
        if record.process is not process or record.expected_exit or self._stopping or record.started_at is None:
            return
        message = f"process {process.pid} exited with code {code}; see {process.log_path}"
        _log.warning("module %s: %s", record.name, message)
        self._lifecycle.fail(record, "process", "MODULE_UNAVAILABLE", message)
        self._tasks.start(self._restart_after_crash(record, code), name=f"restart:{record.name}")

    async def _restart_after_crash(self, record: ModuleRecord, exit_code: int | None) -> None:
        """Restart a crashed module per its policy, until it runs or the budget is spent."""
        assert record.budget is not None, "every spawned module has a restart budget"
        while not self._stopping:
            decision = record.budget.decide(exit_code, time.monotonic())
            if not decision.restart:
                self._registry.update(record, State.FAILED, f"{record.state_reason}; not restarted: {decision.reason}")
                return
            _log.info("module %s: %s", record.name, decision.reason)
            await asyncio.sleep(decision.delay)
            if self._stopping:
                return
            record.budget.record(time.monotonic())
            try:
                await self.replace_process(record)
                return
            except (MeshError, ProcessStartError) as error:
                _log.warning("module %s: restart failed: %s", record.name, error)
                exit_code = record.process.returncode if record.process else None

    async def replace_process(self, record: ModuleRecord) -> None:
        """A new process for `record`, initialized and started; dependents learn its address.

        Raises:
            MeshError, ProcessStartError: the new process did not come up (the record is FAILED).
        """
        with _tracer.start_as_current_span(f"restart {record.name}", attributes={"mesh.module": record.name}):
            old = record.process
            if old is not None and old.returncode is None:
                record.expected_exit = True
                self._registry.update(record, State.STOPPING, "restart")
                await self._end(record, "restart")
                self._registry.update(record, State.STOPPED, "restart")
            record.restart_count += 1
            await self._spawn(record)
            await self._lifecycle.bring_up(record)
            _log.info("module %s restarted at %s", record.name, record.address)
            for listener in self.restart_listeners:
                listener(record)
            await self._lifecycle.reload_dependents(record)
        _restarts.add(1, {"mesh.module": record.name})

    # --- stop ----------------------------------------------------------------------------

    async def stop_supervising(self) -> None:
        """From now on no process is spawned or restarted (the mesh is stopping); spawns
        still under way are cancelled, and those nobody waited for are collected here."""
        self._stopping = True
        spawning = list(self._spawning.values())
        self._spawning.clear()
        for task in spawning:
            task.cancel()
        await asyncio.gather(*spawning, return_exceptions=True)

    async def stop_one(self, record: ModuleRecord, reason: str) -> None:
        """Stop one module; never raises, so one module's trouble never blocks the others."""
        try:
            if record.state in (State.STOPPED, State.SKIPPED) and record.process is None:
                return
            record.expected_exit = True
            if record.address and record.state is not State.STOPPED:
                self._registry.update(record, State.STOPPING, reason)
            await self._end(record, reason)
            self._registry.update(record, State.STOPPED, reason)
        except Exception:
            _log.exception("module %s: error while stopping", record.name)
            self._registry.update(record, State.STOPPED, f"{reason} (with errors; see the coordinator log)")

    async def _end(self, record: ModuleRecord, reason: str) -> None:
        """The Stop call with the grace period, then the end of the process (SIGTERM, then SIGKILL)."""
        process = record.process
        if record.address and (process is None or process.returncode is None):
            await self._lifecycle.ask_to_stop(record, reason)
        if process is not None:
            process.close_stdin()
            code = await process.end(PROCESS_END_GRACE_SECONDS)
            _log.info("module %s: process %d exited with code %s", record.name, process.pid, code)
