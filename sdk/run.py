"""Serve one module as its own process: `python -m sdk.run modules/<name>`.

The process binds the address it is given (port 0 picks a free one), reports the bound
address (log line, and the file named by MESH_READY_FILE), registers with the coordinator
named by MESH_COORDINATOR when there is one, and stops gracefully on SIGTERM or SIGINT.
With `--exit-with-parent` (what the coordinator uses) it also stops when its stdin pipe
closes or its parent process dies, so that no module outlives a killed coordinator.

It serves mTLS with the credentials in MESH_TLS_DIR (`mesh up` issues them; they are
re-read when renewed) and presents them when it registers and when `ctx.client` dials a
dependency; only the coordinator's certificate may call its Lifecycle. MESH_INSECURE=1
serves plaintext instead, on loopback only.

Environment:
    MESH_TLS_DIR: the folder with the module's ca.pem, cert.pem and key.pem.
    MESH_INSECURE: "1" serves and dials plaintext (loopback only), when there is no MESH_TLS_DIR.
    MESH_LISTEN: "host:port" to bind (default 127.0.0.1:0); `--listen` wins.
    MESH_ADVERTISE_HOST: the host to report when binding a wildcard address.
    MESH_COORDINATOR: the coordinator's "host:port" to register with.
    MESH_READY_FILE: a path where the process writes {"name", "address", "pid", "instance_id"}.
    MESH_STATE_DIR: the module's state folder unless Initialize names one.
    MESH_STOP_GRACE_SECONDS: the grace period of a signal-initiated stop (default 30).
    MESH_EXIT_WITH_PARENT: "1" has the effect of `--exit-with-parent`.
    MESH_PARENT_PID: the process `--exit-with-parent` watches instead of the real parent (the
        coordinator gives its own pid to the modules its zygote forks).
    MESH_HEALTH_INTERVAL_SECONDS: how often a RUNNING module runs its health hook (default 10).
    MESH_LOG_LEVEL: logging level (default INFO).
    MESH_LOG_FORMAT: "text" (default) or "json"; lines inside a span carry its trace and span ids.
    OTEL_*: OpenTelemetry settings (see mesh/protocol/telemetry.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import logging
import os
import signal
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import grpc

from mesh.protocol.errors import MeshError
from mesh.protocol.logs import configure_logging
from mesh.protocol.manifest import ManifestError
from mesh.protocol.pids import alive
from mesh.protocol.pki import CredentialsError
from mesh.protocol.states import State
from mesh.protocol.telemetry import configure_telemetry, environment_configures_export, shutdown_telemetry
from mesh.protocol.transport import Transport
from mesh.v1 import coordinator_pb2, coordinator_pb2_grpc
from sdk._loader import LoadedModule, ModuleLoadError, load_module
from sdk.runtime import ModuleServer, located

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_MODULE = 2
EXIT_REGISTRATION_REFUSED = 3
PARENT_POLL_SECONDS = 1.0
PARENT_PID_ENV = "MESH_PARENT_PID"
_PR_SET_PDEATHSIG = 1

_log = logging.getLogger("sdk.run")


def parse_listen(value: str) -> tuple[str, int]:
    """'host:port' (or '[v6]:port') -> (host, port), with a clear error."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"listen address {value!r} is not 'host:port' with a port 0-65535, e.g. 127.0.0.1:0")
    return host.strip("[]") or "127.0.0.1", int(port)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sdk.run", description="Serve one Module Mesh module.")
    parser.add_argument("module_dir", type=Path, help="the module's folder (holding module.toml)")
    parser.add_argument(
        "--listen",
        default=os.environ.get("MESH_LISTEN", "127.0.0.1:0"),
        help="host:port to bind; port 0 picks a free one (env MESH_LISTEN)",
    )
    parser.add_argument(
        "--exit-with-parent",
        action="store_true",
        default=os.environ.get("MESH_EXIT_WITH_PARENT") == "1",
        help="stop when stdin closes or the parent process dies (env MESH_EXIT_WITH_PARENT=1)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Serve the module until a signal (or the parent) ends it; returns the exit code."""
    args = _arguments(argv)
    try:
        configure_logging(os.environ.get("MESH_LOG_LEVEL", "INFO"), os.environ.get("MESH_LOG_FORMAT", "text"))
    except ValueError as error:
        print(f"sdk.run: {error}", file=sys.stderr)
        return EXIT_BAD_MODULE
    try:
        transport = Transport.from_env(os.environ)
        host, port = parse_listen(args.listen)
        grace = _stop_grace()
        loaded = load_module(args.module_dir)
    except ModuleLoadError as error:
        # The line the coordinator quotes when the process ends at start: it names the line to fix.
        cause = error.__cause__
        print(f"sdk.run: {error}{located(cause, args.module_dir) if cause else ''}", file=sys.stderr)
        return EXIT_BAD_MODULE
    except (CredentialsError, ManifestError, ValueError) as error:
        print(f"sdk.run: {error}", file=sys.stderr)
        return EXIT_BAD_MODULE
    if args.exit_with_parent:
        _die_with_parent()
    try:
        return asyncio.run(_serve(loaded, transport, host, port, grace, exit_with_parent=args.exit_with_parent))
    except (CredentialsError, ManifestError, MeshError, TypeError) as error:
        print(f"sdk.run: {error}", file=sys.stderr)
        return EXIT_BAD_MODULE
    except OSError as error:
        print(f"sdk.run: {error}", file=sys.stderr)
        return EXIT_FAILURE


async def _serve(
    loaded: LoadedModule, transport: Transport, host: str, port: int, grace: float, *, exit_with_parent: bool
) -> int:
    state_dir = os.environ.get("MESH_STATE_DIR")
    server = ModuleServer(
        loaded,
        transport=transport,
        host=host,
        port=port,
        advertise_host=os.environ.get("MESH_ADVERTISE_HOST"),
        state_dir=Path(state_dir) if state_dir else None,
    )
    if environment_configures_export(os.environ):
        # Now, so that even the first Initialize call is traced; otherwise the module takes
        # the coordinator's settings at Initialize.
        configure_telemetry(
            service_name=loaded.manifest.name,
            service_version=loaded.manifest.version,
            instance_id=server.runtime.instance_id,
            module=loaded.manifest.name,
        )
    address = await server.start()
    _write_ready_file(loaded, server)
    stop = asyncio.Event()
    exit_code = EXIT_OK
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    background: list[asyncio.Task[None]] = []
    if exit_with_parent:

        def expected_end() -> bool:
            return server.runtime.state in (State.REGISTERED, State.STOPPING, State.STOPPED)

        background.append(asyncio.create_task(_watch_parent(stop, expected_end)))
        if stat.S_ISFIFO(os.fstat(sys.stdin.fileno()).st_mode):
            background.append(asyncio.create_task(_watch_stdin(stop, expected_end)))
    coordinator = os.environ.get("MESH_COORDINATOR")
    if coordinator:

        async def register() -> None:
            nonlocal exit_code
            if not await _register(coordinator, transport, server, address):
                exit_code = EXIT_REGISTRATION_REFUSED
                stop.set()

        background.append(asyncio.create_task(register()))
    await stop.wait()
    for task in background:
        task.cancel()
    forced = await server.shutdown(grace)
    _log.info("module %s exited%s", loaded.manifest.name, " (stop was forced)" if forced else "")
    await asyncio.to_thread(shutdown_telemetry)
    return exit_code


def _stop_grace() -> float:
    """MESH_STOP_GRACE_SECONDS, or 30 (read at start, so a bad value stops nothing later)."""
    value = os.environ.get("MESH_STOP_GRACE_SECONDS", "30")
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds < 0:
        raise ValueError(f"MESH_STOP_GRACE_SECONDS is {value!r}; expected seconds >= 0, e.g. 30")
    return seconds


def _write_ready_file(loaded: LoadedModule, server: ModuleServer) -> None:
    target = os.environ.get("MESH_READY_FILE")
    if not target:
        return
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(path.name + ".tmp")
    scratch.write_text(
        json.dumps(
            {
                "name": loaded.manifest.name,
                "address": server.address,
                "pid": os.getpid(),
                "instance_id": server.runtime.instance_id,
            }
        )
    )
    scratch.replace(path)  # atomic: a reader never sees half a file


async def _register(coordinator: str, transport: Transport, server: ModuleServer, address: str) -> bool:
    """Register with the coordinator (presenting the module's certificate, which names it),
    retrying while it is unreachable.

    Returns:
        True once registered; False when the coordinator refuses (the process then exits).
    """
    request = coordinator_pb2.RegisterModuleRequest(
        address=address,
        manifest=server.loaded.manifest.to_proto(),
        instance_id=server.runtime.instance_id,
    )
    delay = 0.2
    async with transport.channel(coordinator) as channel:
        stub = coordinator_pb2_grpc.CoordinatorStub(channel)
        while True:
            try:
                await stub.RegisterModule(request, timeout=10)
                _log.info("registered with the coordinator at %s", coordinator)
                return True
            except grpc.aio.AioRpcError as error:
                if error.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    _log.error(
                        "the coordinator at %s refused module %s: %s: %s",
                        coordinator,
                        server.loaded.manifest.name,
                        error.code().name,
                        error.details(),
                    )
                    return False
                _log.warning(
                    "coordinator at %s not reachable (%s); retrying in %.1f s", coordinator, error.details(), delay
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def _watched_parent() -> int:
    """The process whose end ends this one: MESH_PARENT_PID (the coordinator, when a zygote
    forked this process: its real parent is the zygote, which may end first without the
    modules having to), else the real parent."""
    value = os.environ.get(PARENT_PID_ENV, "")
    return int(value) if value.isdigit() else os.getppid()


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM when the parent dies (no-op elsewhere, or when the parent
    watched is not the real one; polling covers it)."""
    if not sys.platform.startswith("linux") or _watched_parent() != os.getppid():
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


async def _watch_parent(stop: asyncio.Event, expected_end: Callable[[], bool]) -> None:
    parent = _watched_parent()
    real = parent == os.getppid()
    # Polling: the kernel offers no event for "my parent died" besides PDEATHSIG (Linux only).
    while parent != 1 and (parent == os.getppid() if real else alive(parent)):  # noqa: ASYNC110
        await asyncio.sleep(PARENT_POLL_SECONDS)
    _ending_log(expected_end)("parent process %d is gone; stopping", parent)
    stop.set()


def _ending_log(expected_end: Callable[[], bool]) -> Callable[..., None]:
    """How to log that the coordinator's end was seen: a warning once the module was brought up
    (its coordinator died), only info before that or after a Stop (the coordinator ends what it
    stopped, or what it never brought up when its start-up was interrupted)."""
    return _log.info if expected_end() else _log.warning


async def _watch_stdin(stop: asyncio.Event, expected_end: Callable[[], bool]) -> None:
    """The coordinator holds our stdin pipe open; EOF means it is gone."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while await reader.read(4096):
            pass
    finally:
        transport.close()
    _ending_log(expected_end)("stdin closed; stopping")
    stop.set()


if __name__ == "__main__":
    raise SystemExit(main())
