"""Module processes: spawn one, learn its address, know when it exits, end it.

Any language fits the same protocol: the process gets MESH_LISTEN (bind there; port 0 =
any) and MESH_READY_FILE (write `{"address": ..., "pid": ...}` there once serving), and
its stdin is a pipe that closes when the coordinator dies. Python modules get it all from
`python -m sdk.run ... --exit-with-parent`.

Each process runs in a session of its own, so that a Ctrl-C in the terminal reaches only the
coordinator: it stops the modules itself, dependents first, each drained; were the signal to
reach every module at once, they would all stop together and refuse each other's calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mesh.control.zygote import Zygote, ZygoteUnavailable
from mesh.protocol.manifest import Manifest
from mesh.protocol.transport import Transport

_log = logging.getLogger("mesh")

LOG_TAIL_LINES = 15
"""How much of a failed process's own part of its log a failure report shows."""

_TRACEBACK_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+)')


class Closable(Protocol):
    """The coordinator's end of a process's stdin pipe."""

    def close(self) -> None: ...

    def is_closing(self) -> bool: ...


class ChildProcess(Protocol):
    """What the coordinator asks of a module process: a process it started itself
    (`asyncio.subprocess.Process`), or a child of the zygote (`ZygoteChild`)."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    @property
    def stdin(self) -> Closable | None: ...

    async def wait(self) -> int: ...

    def send_signal(self, signal: int) -> None: ...

    def kill(self) -> None: ...


class ProcessStartError(RuntimeError):
    """The module's process did not come up; the message is one line: what happened, the
    last thing the process logged (with a file:line when there is one) and `mesh logs NAME`."""


@dataclass
class ModuleProcess:
    """One running module process."""

    name: str
    process: ChildProcess
    log_path: Path
    ready_file: Path
    started_at: float = field(default_factory=time.monotonic)
    address: str = ""
    instance_id: str = ""
    log_offset: int = 0
    """Where this process's part of the log begins: the log keeps every run's output, and a
    failure report must show this run's, not an earlier run's error."""

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    async def wait_ready(self, deadline_seconds: float, transport: Transport) -> str:
        """Wait for the ready file, then for a health answer (any status) over `transport`;
        returns the address."""
        deadline = time.monotonic() + deadline_seconds
        while not self.ready_file.exists():
            if self.process.returncode is not None:
                raise ProcessStartError(self._exit_report(f"exited with code {self.process.returncode} at start"))
            if time.monotonic() > deadline:
                raise ProcessStartError(
                    self._exit_report(f"did not report its address within {deadline_seconds:.0f} s")
                )
            await asyncio.sleep(0.02)
        ready = json.loads(self.ready_file.read_text())
        self.address = ready["address"]
        self.instance_id = ready.get("instance_id", "")
        async with transport.channel(self.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            while True:
                try:
                    await health.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                    return self.address
                except grpc.aio.AioRpcError as error:
                    if time.monotonic() > deadline:
                        raise ProcessStartError(
                            self._exit_report(f"does not answer health at {self.address}: {error.details()}")
                        ) from None
                    await asyncio.sleep(0.05)

    def run_log(self) -> list[str]:
        """The lines this process wrote to the module's log (earlier runs' left out)."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self.log_offset)
                return log.read().decode(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def log_tail(self) -> list[str]:
        """The last lines of this process's part of the log, for a failure report."""
        return self.run_log()[-LOG_TAIL_LINES:]

    def _exit_report(self, what: str) -> str:
        return f"module {self.name} {what}{last_words(self.run_log())}; see `mesh logs {self.name}`"

    async def end(self, grace: float) -> int:
        """SIGTERM, then SIGKILL after `grace` seconds; returns the exit code."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout=grace)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
        return await self.process.wait()

    async def kill(self) -> int:
        """SIGKILL at once, no grace; returns the exit code."""
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        return await self.process.wait()

    def close_stdin(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.is_closing():
            self.process.stdin.close()


def last_words(lines: list[str]) -> str:
    """The last line a process logged, as ": LINE" to follow what happened to it, with the
    file:line of the last traceback frame when the line names none itself; "" for no lines."""
    said = [line.strip() for line in lines if line.strip()]
    if not said:
        return ""
    last = said[-1]
    frames = [match for line in lines if (match := _TRACEBACK_FRAME.match(line))]
    if frames and "(at " not in last:
        last += f" (at {frames[-1]['file']}:{frames[-1]['line']})"
    return f": {last}"


def module_command(manifest: Manifest, directory: Path) -> list[str]:
    """How to run a module: its own command, or the Python SDK for an `entry`."""
    if manifest.run.command:
        return list(manifest.run.command)
    return [sys.executable, "-m", "sdk.run", *sdk_run_arguments(directory)]


def sdk_run_arguments(directory: Path) -> list[str]:
    """`python -m sdk.run`'s arguments for the module in `directory` (also what the zygote runs)."""
    return [str(directory), "--exit-with-parent"]


async def spawn(
    manifest: Manifest,
    directory: Path,
    *,
    run_dir: Path,
    log_dir: Path,
    state_dir: Path,
    env: dict[str, str],
    port: int = 0,
    zygote: Zygote | None = None,
) -> ModuleProcess:
    """Start the module's process; its output goes to `<log_dir>/<name>.log`.

    `port`: the loopback port to serve on (a restarted module asks for its previous one, so
    addresses copied from `mesh address` keep working); 0 picks a free one.
    `zygote`: forks a module run by the Python SDK (not one with its own `command`); when it
    is gone or refuses, the module starts as a fresh process, with a warning.
    """
    name = manifest.name
    # Small local file operations, once per spawn: not worth a thread.
    run_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
    log_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240
    ready_file = run_dir / f"{name}.ready.json"
    ready_file.unlink(missing_ok=True)
    log_path = log_dir / f"{name}.log"
    environment = {
        **env,
        **manifest.run.env,
        "MESH_LISTEN": f"127.0.0.1:{port}",
        "MESH_READY_FILE": str(ready_file),
        "MESH_STATE_DIR": str(state_dir / name),
        "MESH_EXIT_WITH_PARENT": "1",
        "MESH_PARENT_PID": str(os.getpid()),  # a module forked by the zygote outlives the zygote, not us
        "MESH_MODULE_NAME": name,
    }
    environment.pop("MESH_COORDINATOR", None)  # spawned modules report through the ready file
    command = module_command(manifest, directory)
    # A command runs in its module's folder; the Python SDK in the modules folder, which is
    # the import root of every module package anyway.
    cwd = directory if manifest.run.command else directory.parent
    if manifest.run.command:
        zygote = None  # the zygote runs the Python SDK, not a command of the module's own
    with open(log_path, "ab") as log:  # noqa: ASYNC230
        how = f" (forked from the zygote, pid {zygote.pid})" if zygote is not None else ""
        log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {name}: {' '.join(command)}{how}\n".encode())
        log.flush()
        log_offset = log.tell()
        process: ChildProcess | None = None
        if zygote is not None:
            try:
                process = await zygote.spawn(sdk_run_arguments(directory), environment, cwd, log=log.fileno())
            except ZygoteUnavailable as error:
                _log.warning("module %s: %s; it starts as a fresh process", name, error)
                log.write(f"--- the zygote could not fork it ({error}); starting it as a fresh process\n".encode())
                log.flush()
        if process is None:
            try:
                process = await asyncio.create_subprocess_exec(
                    *command,
                    cwd=cwd,
                    env=environment,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    start_new_session=True,  # no terminal signals: the coordinator sequences the stop
                )
            except OSError as error:
                raise ProcessStartError(f"module {name}: cannot run {command[0]!r}: {error}") from None
    return ModuleProcess(name=name, process=process, log_path=log_path, ready_file=ready_file, log_offset=log_offset)


def current_environment() -> dict[str, str]:
    """The environment module processes inherit (so OTEL_*, PATH and PYTHONPATH carry over)."""
    return dict(os.environ)
