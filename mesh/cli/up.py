"""`mesh up`: run a coordinator in this process until interrupted, showing progress.

Exit codes: 0 after a clean shutdown; 1 when start-up failed (a critical module failed,
the port is taken, ...); 2 when validation failed (bad manifest, graph or configuration).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import uuid
from collections.abc import Callable
from importlib import metadata

from rich.console import Console
from rich.live import Live

from mesh.cli._common import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from mesh.cli.render import module_table
from mesh.control.config import MeshConfig
from mesh.control.coordinator import Coordinator, StartupFailed, ValidationFailed
from mesh.control.registry import ModuleRecord
from mesh.control.statedir import StateDirLocked
from mesh.protocol.errors import MeshError
from mesh.protocol.nats_server import NatsServerError
from mesh.protocol.pki import CredentialsError
from mesh.protocol.states import State
from mesh.protocol.telemetry import configure_telemetry, shutdown_telemetry
from mesh.protocol.transport import refuse_public_plaintext
from mesh.v1 import module_pb2

EXIT_START_FAILED = EXIT_FAILED
EXIT_INVALID = EXIT_USAGE


def run_up(config: MeshConfig, console: Console, error_console: Console) -> int:
    """Validate, start, run until SIGINT/SIGTERM or Shutdown, stop.

    Args:
        config: The mesh configuration.
        console: Where progress and the module table go.
        error_console: Where failures go, one line each.

    Returns:
        The exit code (see the module's docstring).
    """
    return asyncio.run(_up(config, console, error_console))


async def _up(config: MeshConfig, console: Console, error_console: Console) -> int:
    try:
        configure_telemetry(
            service_name="mesh-coordinator",
            service_version=metadata.version("module-mesh"),
            instance_id=uuid.uuid4().hex,
        )
    except ValueError as error:
        error_console.print(f"mesh up: {error}", markup=False, highlight=False)
        return EXIT_INVALID
    try:
        return await _run(config, console, error_console)
    finally:
        await asyncio.to_thread(shutdown_telemetry)


async def _run(config: MeshConfig, console: Console, error_console: Console) -> int:
    try:
        if config.insecure:
            refuse_public_plaintext(config.listen)
        coordinator = Coordinator(config)
    except CredentialsError as error:
        error_console.print(f"mesh up: {error}", markup=False, highlight=False)
        return EXIT_INVALID
    try:
        remote = await coordinator.describe_remote_modules()
        plan = coordinator.prepare(remote)
    except ValidationFailed as failure:
        for line in failure.lines:
            error_console.print(f"mesh up: {line}", markup=False, highlight=False)
        return EXIT_INVALID
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, _on_signal(coordinator, interrupted))
    progress = _Progress(coordinator, console)
    coordinator.registry.listen(progress.changed)
    if config.insecure:
        console.print(
            "mesh up: INSECURE: plaintext gRPC, no certificates, no access checks (--insecure); this machine only",
            markup=False,
            highlight=False,
        )
    console.print(
        f"mesh up: {len(plan.order)} modules to start"
        + (f", {len(plan.skipped)} skipped" if plan.skipped else "")
        + f"; state in {coordinator.state_dir.root}",
        highlight=False,
    )
    starting = asyncio.create_task(coordinator.start())
    try:
        with progress.live():
            done, _ = await asyncio.wait(
                {starting, asyncio.create_task(interrupted.wait())}, return_when=asyncio.FIRST_COMPLETED
            )
        if starting not in done:
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            await coordinator.stop("interrupted during start-up")
            return EXIT_START_FAILED
        starting.result()
    except StartupFailed as failure:
        for line in failure.lines:
            error_console.print(f"mesh up: {line}", markup=False, highlight=False)
        return EXIT_START_FAILED
    except (StateDirLocked, OSError, NatsServerError, MeshError, CredentialsError) as error:
        error_console.print(f"mesh up: {error}", markup=False, highlight=False)
        await coordinator.stop("start-up failed")
        return EXIT_START_FAILED
    statuses = _statuses(coordinator)
    counts = {state: sum(1 for s in statuses if s.state == state.value) for state in State}
    summary = ", ".join(f"{count} {state.name.lower()}" for state, count in counts.items() if count)
    console.print(module_table(statuses, title=f"mesh is up: {summary}"))
    console.print(
        f"coordinator: {coordinator.address}   NATS: {coordinator.nats_url}   logs: {coordinator.state_dir.logs}\n"
        "Ctrl-C (or `mesh down`) stops every module in reverse dependency order.",
        highlight=False,
    )
    await coordinator.wait()
    reason = coordinator.shutdown_reason or "mesh down"
    console.print(f"mesh up: stopping ({reason})", highlight=False)
    await coordinator.stop(reason)
    console.print("mesh up: every module stopped", highlight=False)
    return EXIT_OK


def _on_signal(coordinator: Coordinator, interrupted: asyncio.Event) -> Callable[[], None]:
    def handle() -> None:
        coordinator.shutdown_reason = coordinator.shutdown_reason or "interrupted"
        interrupted.set()
        coordinator.shutdown_requested.set()

    return handle


def _statuses(coordinator: Coordinator) -> list[module_pb2.ModuleStatus]:
    return [record.status() for record in coordinator.registry.records.values()]


class _Progress:
    """A live table of module states on a terminal; one line per change otherwise."""

    def __init__(self, coordinator: Coordinator, console: Console) -> None:
        self._coordinator = coordinator
        self._console = console
        self._live: Live | None = None

    def live(self) -> Live | _NoLive:
        if self._console.is_terminal:
            self._live = Live(
                module_table(_statuses(self._coordinator)), console=self._console, refresh_per_second=8, transient=True
            )
            return self._live
        return _NoLive()

    def changed(self, record: ModuleRecord, previous: State) -> None:
        if self._live is not None and self._live.is_started:
            self._live.update(module_table(_statuses(self._coordinator)))
            return
        detail = f" ({record.state_reason})" if record.state in (State.FAILED, State.SKIPPED) else ""
        where = f" at {record.address}" if record.state is State.RUNNING else ""
        self._console.print(f"  {record.name}: {record.state.name}{where}{detail}", markup=False, highlight=False)
        sys.stdout.flush()


class _NoLive:
    def __enter__(self) -> _NoLive:
        return self

    def __exit__(self, *exc: object) -> None:
        return None
