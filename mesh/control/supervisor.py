"""The supervisor: owns each local module's process and restart budget. It spawns the
process, watches it exit, restarts it per its restart policy with backoff, replaces it on
request, and ends it at stop (Stop call, grace, SIGTERM, SIGKILL)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from opentelemetry import metrics, trace

from mesh.control.lifecycle import ModuleLifecycle
from mesh.control.liveness import LivenessSettings, LivenessWatch
from mesh.control.process import ModuleProcess, ProcessStartError, current_environment, last_words, spawn
from mesh.control.registry import ModuleRecord, Registry, now
from mesh.control.statedir import StateDir
from mesh.control.tasks import BackgroundTasks
from mesh.control.zygote import Zygote, ZygoteUnavailable
from mesh.control.zygote import wanted as zygote_wanted
from mesh.protocol.errors import MeshError
from mesh.protocol.states import State
from mesh.protocol.transport import INSECURE_ENV, TLS_DIR_ENV, Transport
from mesh.v1 import module_pb2

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
            env: Variables every module process gets on top of the coordinator's (and the
                coordinator's own MESH_LIVENESS_* settings).

        Raises:
            MeshError: INVALID_CONFIG for a MESH_LIVENESS_* value that is not a positive number.
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
        self._liveness = LivenessSettings.from_env(env)
        self._spawning: dict[str, asyncio.Task[None]] = {}
        self._stopping = False
        self._hurry = asyncio.Event()
        """Set by `hurry`: the mesh must end now, so no Stop call and no grace any more."""
        self.killed_in_hurry = 0
        """How many module processes `hurry` ended with SIGKILL."""
        self._killed_unresponsive: dict[int, str] = {}
        """Why a process was killed by the liveness watch, by pid, for its exit report."""
        self.restart_listeners: list[Callable[[ModuleRecord], None]] = []
        """Called after a crashed or replaced module runs again (e.g. the NATS lifecycle events)."""
        self._zygote_start: asyncio.Task[Zygote] | None = None
        self._zygote_failure_told = False

    # --- spawn -------------------------------------------------------------------------

    def begin_spawn(self, record: ModuleRecord) -> None:
        """Start `record`'s process in the background; `spawned` waits for it to serve."""
        self._spawning[record.name] = self._tasks.start(self._spawn(record), name=f"spawn:{record.name}")

    async def spawned(self, name: str) -> None:
        """Wait for the spawn begun for `name`, if any; raises what the spawn raised."""
        spawning = self._spawning.pop(name, None)
        if spawning is not None:
            await spawning

    async def _spawn(self, record: ModuleRecord, *, port: int = 0) -> None:
        """A process for `record`, serving on `port` (0: any free one), and its exit watched."""
        assert record.directory is not None, "only modules of the folder are spawned"
        try:
            process = await spawn(
                record.manifest,
                record.directory,
                run_dir=self._state_dir.run,
                log_dir=self._state_dir.logs,
                state_dir=self._state_dir.state,
                env=self._environment(record.name),
                port=port,
                zygote=await self._zygote(),
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
        return self._inherited_environment() | self._module_env(name)

    def _inherited_environment(self) -> dict[str, str]:
        inherited = current_environment() | self._env
        for variable in (TLS_DIR_ENV, INSECURE_ENV):
            inherited.pop(variable, None)
        return inherited

    # --- the zygote ------------------------------------------------------------------------

    def start_zygote(self) -> None:
        """Start the zygote in the background, unless MESH_ZYGOTE=0 (mesh.control.zygote):
        the first spawns wait for it, nothing else does."""
        environment = self._inherited_environment()
        if zygote_wanted(environment):
            self._zygote_start = asyncio.create_task(
                Zygote.start(self._state_dir.logs / "zygote.log", environment), name="zygote start"
            )

    async def _zygote(self) -> Zygote | None:
        """The zygote to fork from, once it is ready; None without one (not wanted, could
        not start, or gone: then modules start as fresh processes, as said once in the log)."""
        start = self._zygote_start
        if start is None:
            return None
        try:
            zygote = await asyncio.shield(start)
        except ZygoteUnavailable as error:
            if not self._zygote_failure_told:
                self._zygote_failure_told = True
                _log.warning("%s; modules start as fresh processes", error)
            return None
        return zygote if zygote.available else None

    async def close_zygote(self) -> None:
        """End the zygote, after the modules (its children watch the coordinator, not it)."""
        start, self._zygote_start = self._zygote_start, None
        if start is None:
            return
        if not start.done():
            start.cancel()
        try:
            zygote = await start
        except (ZygoteUnavailable, asyncio.CancelledError):
            return
        await zygote.close()

    # --- crashes and restarts --------------------------------------------------------------

    async def _watch_exit(self, record: ModuleRecord, process: ModuleProcess) -> None:
        """Supervise a module that has run: a process that never reached RUNNING is reported
        by the start-up path that waits for it instead."""
        code = await process.process.wait()
        if record.process is not process or record.expected_exit or self._stopping or record.started_at is None:
            return
        see = f"see `mesh logs {record.name}`"
        message = f"process {process.pid} exited with code {code}{last_words(process.log_tail())}; {see}"
        killed_for = self._killed_unresponsive.pop(process.pid, "")
        if killed_for:
            message = f"{killed_for}; process {process.pid} killed; {see}"
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

        A module that still runs keeps serving until its successor does (zero downtime): the
        new process starts beside it, and only once that one is RUNNING are dependents pointed
        at it and the old one drained and stopped. A process that is gone is replaced on its
        old port when that is free, so addresses already handed out keep working.

        Raises:
            MeshError, ProcessStartError: the new process did not come up. The running process
                (if there was one) keeps serving; otherwise the record is FAILED.
        """
        with _tracer.start_as_current_span(f"restart {record.name}", attributes={"mesh.module": record.name}):
            old = record.process
            if old is not None and old.returncode is None and record.state is State.RUNNING:
                await self._replace_beside(record, old)
            else:
                await self._replace_gone(record)
            _log.info("module %s restarted at %s", record.name, record.address)
            for listener in self.restart_listeners:
                listener(record)
        _restarts.add(1, {"mesh.module": record.name})

    async def _replace_gone(self, record: ModuleRecord) -> None:
        """Replace a process that has exited (or never ran properly)."""
        old = record.process
        if old is not None and old.returncode is None:
            record.expected_exit = True
            self._registry.update(record, State.STOPPING, "restart")
            await self._end(record.name, record.address, old, "restart")
            self._registry.update(record, State.STOPPED, "restart")
        record.restart_count += 1
        previous_address = record.address
        port = _port_of(previous_address)
        try:
            await self._spawn(record, port=port)
        except ProcessStartError:
            if not port:
                raise
            _log.info("module %s: its old port %d is taken; it gets a new one", record.name, port)
            await self._spawn(record)
        await self._lifecycle.bring_up(record)
        if record.address != previous_address:  # on its old port, dependents' channels reconnect by themselves
            await self._lifecycle.retarget_dependents(record)

    async def _replace_beside(self, record: ModuleRecord, old: ModuleProcess) -> None:
        """Start the successor of a running process beside it, switch to it, then drain the old one."""
        successor = ModuleRecord(
            manifest=record.manifest,
            origin=record.origin,
            directory=record.directory,
            critical=record.critical,
            dependents=record.dependents,
        )  # not in the registry: its steps are not shown as the module's state, which stays RUNNING
        self._registry.update(record, State.RUNNING, f"restarting: a new process starts beside {old.pid}")
        try:
            await self._spawn(successor)
            await self._lifecycle.bring_up(successor)
        except (MeshError, ProcessStartError) as error:
            successor.expected_exit = True
            if successor.process is not None:
                await self._end(record.name, successor.address, successor.process, "its start failed")
            failure = error.message if isinstance(error, MeshError) else str(error)
            self._registry.update(record, State.RUNNING, f"restart failed; process {old.pid} keeps serving")
            raise MeshError(
                error.reason if isinstance(error, MeshError) else "MODULE_LOAD_FAILED",
                f"restart of module {record.name} failed, so process {old.pid} keeps serving at {record.address}: "
                f"{failure}",
                metadata={"module": record.name},
            ) from None
        new = successor.process
        assert new is not None, "a brought-up successor has its process"
        old_address = record.address
        successor.expected_exit = True  # its exit watch retires; the record's own watch takes over
        record.expected_exit = False
        record.process, record.pid, record.address = new, successor.pid, successor.address
        record.instance_id, record.manifest_proto = successor.instance_id, successor.manifest_proto
        record.restart_count += 1
        record.error = None
        record.started_at = now()
        self._tasks.start(self._watch_exit(record, new), name=f"watch:{record.name}")
        self._registry.update(record, State.RUNNING, f"restarted: process {new.pid} replaced {old.pid}")
        await self._lifecycle.retarget_dependents(record)
        await self._end(record.name, old_address, old, "replaced by a new process")

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

    async def stop_one(self, record: ModuleRecord, reason: str) -> bool:
        """Stop one module; never raises, so one module's trouble never blocks the others.

        Returns:
            Whether there was something to stop: a module that never ran (start-up refused
            or aborted before it) or whose process had already ended keeps its state, so a
            refused `mesh up` reports no STOPPED module.
        """
        try:
            if not _has_something_to_stop(record):
                return False
            record.expected_exit = True
            if record.address and record.state is not State.STOPPED:
                self._registry.update(record, State.STOPPING, reason)
            await self._end(record.name, record.address, record.process, reason)
            self._registry.update(record, State.STOPPED, reason)
        except Exception:
            _log.exception("module %s: error while stopping", record.name)
            self._registry.update(record, State.STOPPED, f"{reason} (with errors; see the coordinator log)")
        return True

    def hurry(self) -> None:
        """End the stop under way now (a second Ctrl-C): Stop calls in flight are given up and
        every module process still running, or still to be stopped, is killed at once."""
        self._hurry.set()

    async def _end(self, name: str, address: str, process: ModuleProcess | None, reason: str) -> None:
        """The Stop call with the grace period (the module drains), then the end of the process
        (SIGTERM, then SIGKILL); all at once when hurried."""
        if address and (process is None or process.returncode is None) and not self._hurry.is_set():
            await self._unless_hurried(self._lifecycle.ask_to_stop(name, address, reason))
        if process is not None:
            process.close_stdin()
            if not self._hurry.is_set():
                await self._unless_hurried(process.end(PROCESS_END_GRACE_SECONDS))
            if process.returncode is None:
                self.killed_in_hurry += 1
                await process.kill()
            _log.info("module %s: process %d exited with code %s", name, process.pid, process.returncode)

    async def _unless_hurried(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run `work` until it ends or `hurry` is called, whichever comes first."""
        task = asyncio.ensure_future(work)
        hurried = asyncio.ensure_future(self._hurry.wait())
        try:
            await asyncio.wait({task, hurried}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pending in (task, hurried):
                pending.cancel()
            await asyncio.gather(task, hurried, return_exceptions=True)

    # --- liveness --------------------------------------------------------------------------

    def watch_liveness(self) -> None:
        """From now on, modules that stop answering health are acted on (see `_unresponsive`)."""
        watch = LivenessWatch(self._registry, self._transport, self._liveness, self._unresponsive)
        self._tasks.start(watch.run(), name="liveness")

    async def _unresponsive(self, record: ModuleRecord, reason: str) -> None:
        """A process of ours is killed (SIGKILL: a stopped process takes no other signal), and
        its exit restarts it per its policy; a registration that stopped answering is dropped,
        as it would be at DeregisterModule."""
        if self._stopping:
            return
        process = record.process
        if process is not None and process.returncode is None:
            self._killed_unresponsive[process.pid] = f"module {record.name} {reason}"
            with contextlib.suppress(ProcessLookupError):
                process.process.kill()
            return
        if record.origin == module_pb2.MODULE_ORIGIN_REGISTERED and self._registry.get(record.name) is record:
            self._registry.remove(record.name)
            self._registry.update(record, State.STOPPED, f"registration dropped: {reason}")


def _has_something_to_stop(record: ModuleRecord) -> bool:
    """A running process of ours, or a module elsewhere that we reached (it gets the Stop call)."""
    if record.process is not None:
        return record.process.returncode is None
    return bool(record.address) and record.state not in (State.STOPPED, State.SKIPPED)


def _port_of(address: str) -> int:
    """The port of a "host:port" address (0 when there is none)."""
    _, _, port = address.rpartition(":")
    return int(port) if port.isdigit() else 0
