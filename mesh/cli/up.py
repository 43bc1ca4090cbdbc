"""`mesh up`: run a coordinator in this process until interrupted, showing progress; once the
mesh is up, an HTTP gateway beside it (mesh.gateway), unless --no-gateway.

Ctrl-C (SIGINT) or SIGTERM stops the mesh: every module in reverse dependency order, each
drained within its grace period, then NATS; stderr gets one line, e.g. "mesh stopped: 9
modules in 1.8 s". The modules and the nats-server run in sessions of their own, so the
terminal's Ctrl-C reaches only this process. Another Ctrl-C (or SIGTERM) while the mesh stops
gives up the grace: what still runs is killed at once.

Exit codes: 0 after a clean shutdown (also when interrupted during start-up); 1 when start-up
failed (a critical module failed, the port is taken, another coordinator holds the state
folder, ...); 2 when validation failed (bad manifest, graph or configuration); 128 + the
signal's number (130 for Ctrl-C) when a second signal cut the stop short.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
import uuid
from dataclasses import replace
from importlib import metadata

from rich.console import Console
from rich.live import Live

from mesh.cli._common import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from mesh.cli.gateway import GatewayPlan
from mesh.cli.render import module_table
from mesh.control.config import MeshConfig
from mesh.control.coordinator import Coordinator, StartupFailed, StopSummary, ValidationFailed
from mesh.control.registry import ModuleRecord
from mesh.control.statedir import StateDirLocked
from mesh.gateway.directory import ModuleDirectory
from mesh.gateway.serve import RunningGateway, mesh_token_verifier
from mesh.gateway.settings import LimitsBus
from mesh.protocol.errors import MeshError
from mesh.protocol.nats_server import NatsServerError
from mesh.protocol.pki import CredentialsError
from mesh.protocol.states import State
from mesh.protocol.telemetry import configure_telemetry, shutdown_telemetry
from mesh.protocol.transport import Transport, refuse_public_plaintext
from mesh.v1 import module_pb2

EXIT_START_FAILED = EXIT_FAILED
EXIT_INVALID = EXIT_USAGE


def run_up(config: MeshConfig, console: Console, error_console: Console, gateway: GatewayPlan | None = None) -> int:
    """Validate, start, run until SIGINT/SIGTERM or Shutdown, stop.

    Args:
        config: The mesh configuration.
        console: Where progress and the module table go.
        error_console: Where failures go, one line each.
        gateway: The HTTP gateway to start once the mesh is up; None: none.

    Returns:
        The exit code (see the module's docstring).
    """
    return asyncio.run(_up(config, console, error_console, gateway))


async def _up(config: MeshConfig, console: Console, error_console: Console, gateway: GatewayPlan | None) -> int:
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
        return await _run(config, console, error_console, gateway)
    finally:
        await asyncio.to_thread(shutdown_telemetry)


async def _run(config: MeshConfig, console: Console, error_console: Console, gateway: GatewayPlan | None) -> int:
    try:
        if config.insecure:
            refuse_public_plaintext(config.listen)
            if gateway is not None:
                refuse_public_plaintext(gateway.listen)
        coordinator = Coordinator(config)
    except CredentialsError as error:
        _print_lines(error_console, [str(error)])
        return EXIT_INVALID
    try:
        remote = await coordinator.describe_remote_modules()
        plan = coordinator.prepare(remote)
    except ValidationFailed as failure:
        _print_lines(error_console, failure.lines)
        return EXIT_INVALID
    try:
        coordinator.claim()  # before any output: a second `mesh up` of a running mesh is refused in one line
    except (StateDirLocked, OSError) as error:
        _print_lines(error_console, [str(error)])
        return EXIT_START_FAILED
    interrupts = _Interrupts(coordinator)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, interrupts.received, signum)
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
                {starting, asyncio.create_task(interrupts.requested.wait())}, return_when=asyncio.FIRST_COMPLETED
            )
        if starting not in done:
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            return await _stop(coordinator, interrupts, progress, "interrupted during start-up", error_console)
        starting.result()
    except StartupFailed as failure:
        _print_lines(error_console, failure.lines)
        return EXIT_START_FAILED
    except (StateDirLocked, OSError, NatsServerError, MeshError, CredentialsError) as error:
        _print_lines(error_console, [str(error)])
        interrupts.stopping = True
        await coordinator.stop("start-up failed")
        return EXIT_START_FAILED
    statuses = _statuses(coordinator)
    counts = {state: sum(1 for s in statuses if s.state == state.value) for state in State}
    summary = ", ".join(f"{count} {state.name.lower()}" for state, count in counts.items() if count)
    console.print(module_table(statuses, title=f"mesh is up: {summary}"))
    for report in coordinator.failure_reports():
        _print_lines(error_console, report)
    console.print(
        f"coordinator: {coordinator.address}   NATS: {coordinator.nats_url}   logs: {coordinator.state_dir.logs}\n"
        "Ctrl-C (or `mesh down`) stops every module in reverse dependency order.",
        highlight=False,
    )
    serving = await _start_gateway(coordinator, gateway, console, error_console) if gateway is not None else None
    await coordinator.wait()
    if serving is not None:
        await serving.stop()  # first: no call through it finds a module stopping
    return await _stop(coordinator, interrupts, progress, coordinator.shutdown_reason or "mesh down", error_console)


async def _start_gateway(
    coordinator: Coordinator, plan: GatewayPlan, console: Console, error_console: Console
) -> RunningGateway | None:
    """The HTTP gateway, following this coordinator with the admin's credentials; None when it
    cannot listen (the mesh runs without it, and says so in one line)."""
    insecure = coordinator.config.insecure
    transport = Transport(None if insecure else coordinator.credentials.admin_dir)
    try:
        tokens = (
            None
            if insecure
            else mesh_token_verifier(
                coordinator.credentials.token_key_file, coordinator.state_dir.pki / "gateway", coordinator.env
            )
        )
        settings = replace(plan.settings, tokens=tokens, limits_bus=_limits_bus(coordinator, error_console))
        serving = await RunningGateway.start(plan.listen, ModuleDirectory(coordinator.address, transport), settings)
    except (OSError, CredentialsError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        error_console.print(
            f"mesh up: the HTTP gateway cannot listen on {plan.listen} ({reason}); the mesh runs without it "
            "(--gateway-listen HOST:PORT picks another address, --no-gateway starts none)",
            markup=False,
            highlight=False,
        )
        return None
    console.print(f"gateway: {serving.url}/api/v1/<module>/<Method> (HTTP/JSON, docs/gateway.md)", highlight=False)
    return serving


def _limits_bus(coordinator: Coordinator, error_console: Console) -> LimitsBus | None:
    """The mesh's NATS, with the gateways' login, for the gateway to share its rate limits
    with the gateways run beside it (`mesh gateway`); None, said in one line, when an external
    NATS's credentials folder has no login for it."""
    try:
        login = coordinator.nats_identities.gateway_login()
    except MeshError as error:
        error_console.print(
            f"mesh up: the HTTP gateway's rate limits are its own, not shared with other gateways: {error.message}",
            markup=False,
            highlight=False,
        )
        return None
    return LimitsBus(tuple(coordinator.nats_url.split(",")), login.user, login.password)


async def _stop(
    coordinator: Coordinator, interrupts: _Interrupts, progress: _Progress, reason: str, error_console: Console
) -> int:
    """Stop the mesh, showing progress; the one line on stderr says how it went."""
    interrupts.stopping = True
    progress.console.print(f"mesh up: stopping ({reason})", markup=False, highlight=False)
    began = time.monotonic()
    with progress.live():
        stopped = await coordinator.stop(reason)
    error_console.print(_stop_summary(stopped, time.monotonic() - began), markup=False, highlight=False)
    return 128 + interrupts.hurried_by if interrupts.hurried_by else EXIT_OK


def _stop_summary(stopped: StopSummary, seconds: float) -> str:
    modules = f"{stopped.modules} module{'' if stopped.modules == 1 else 's'}"
    killed = f"; {stopped.killed} killed at once after a second interrupt" if stopped.killed else ""
    return f"mesh stopped: {modules} in {seconds:.1f} s{killed}"


def _print_lines(error_console: Console, lines: list[str]) -> None:
    """Each line as `mesh up: ...`; indented lines (a log excerpt, details) stay as they are."""
    for line in lines:
        text = line if line.startswith(" ") else f"mesh up: {line}"
        error_console.print(text, markup=False, highlight=False)


class _Interrupts:
    """SIGINT and SIGTERM: the first asks for a shutdown; one while the mesh stops hurries it."""

    def __init__(self, coordinator: Coordinator) -> None:
        self._coordinator = coordinator
        self.requested = asyncio.Event()
        self.stopping = False
        """Whether the stop has begun (by a signal, `mesh down` or a failed start-up)."""
        self.hurried_by = 0
        """The signal that cut the stop short, if one did."""

    def received(self, signum: int) -> None:
        if self.stopping:
            self.hurried_by = self.hurried_by or signum
            self._coordinator.hurry()
            return
        self._coordinator.request_shutdown(self._coordinator.shutdown_reason or "interrupted")
        self.requested.set()


def _statuses(coordinator: Coordinator) -> list[module_pb2.ModuleStatus]:
    return [record.status() for record in coordinator.registry.records.values()]


class _Progress:
    """A live table of module states on a terminal; one line per change otherwise."""

    def __init__(self, coordinator: Coordinator, console: Console) -> None:
        self._coordinator = coordinator
        self.console = console
        self._live: Live | None = None

    def live(self) -> Live | _NoLive:
        if self.console.is_terminal:
            self._live = Live(
                module_table(_statuses(self._coordinator)), console=self.console, refresh_per_second=8, transient=True
            )
            return self._live
        return _NoLive()

    def changed(self, record: ModuleRecord, previous: State) -> None:
        if self._live is not None and self._live.is_started:
            self._live.update(module_table(_statuses(self._coordinator)))
            return
        detail = f" ({record.state_reason})" if record.state in (State.FAILED, State.SKIPPED) else ""
        where = f" at {record.address}" if record.state is State.RUNNING else ""
        self.console.print(f"  {record.name}: {record.state.name}{where}{detail}", markup=False, highlight=False)
        sys.stdout.flush()


class _NoLive:
    def __enter__(self) -> _NoLive:
        return self

    def __exit__(self, *exc: object) -> None:
        return None
