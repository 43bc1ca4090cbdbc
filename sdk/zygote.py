"""The zygote: a Python process that imports once what every module process imports (grpc,
protobuf, pydantic, nats-py, OpenTelemetry, the SDK) and forks a child per module, which
then runs `python -m sdk.run` without starting an interpreter or importing anything again.

    python -m sdk.zygote --control-fd N

The coordinator starts it (`mesh.control.zygote`) and speaks to it over the socket N (see
`mesh.protocol.zygote_wire`). A fresh module process spends about 0.3 s of CPU importing
before it serves; a child of the zygote serves in about 20 ms, and shares the imported
libraries' pages with the zygote and its siblings until it writes to them.

gRPC's rule for fork: no channel, server or other gRPC object may exist in the process that
forks. The zygote only imports; it creates none, and it has no thread (its loop is a
`select`, not asyncio), so a child starts as a single-threaded copy, as a fresh process would.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import select
import signal
import socket
import sys
import traceback
from typing import Any

from mesh.protocol import zygote_wire

PRELOADED = (
    "sdk.run",
    "grpc_health.v1.health",
    "grpc_reflection.v1alpha.reflection",
    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
    "opentelemetry.exporter.otlp.proto.grpc.metric_exporter",
    "opentelemetry.sdk.trace",
    "opentelemetry.sdk.metrics",
    "opentelemetry.instrumentation.grpc",
)
"""What the zygote imports for its children: `sdk.run` and what it imports only later (the
OpenTelemetry SDK, its OTLP exporters and the gRPC instrumentation, when a module is told to
export: `mesh.protocol.telemetry`)."""

RUN_MODULE = "sdk.run"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sdk.zygote", description=__doc__.splitlines()[0])
    parser.add_argument("--control-fd", type=int, required=True, help="the socket the coordinator speaks on")
    args = parser.parse_args(argv)
    for name in PRELOADED:
        importlib.import_module(name)
    control = socket.socket(fileno=args.control_fd)
    return Zygote(control).serve()


class Zygote:
    """Forks children on request and reports how they end."""

    def __init__(self, control: socket.socket) -> None:
        self._control = control
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)
        self._children: set[int] = set()

    def serve(self) -> int:
        """Until the coordinator closes its end; returns the exit code."""
        signal.signal(signal.SIGCHLD, _nothing)  # wakes the loop through the wakeup fd
        signal.set_wakeup_fd(self._wake_write)
        zygote_wire.send(self._control, {"op": "ready", "pid": os.getpid()})
        while True:
            control = self._control.fileno()
            readable, _, _ = select.select([control, self._wake_read], [], [])
            if self._wake_read in readable:
                os.read(self._wake_read, 4096)
                self._reap()
            if control in readable:
                message, fds = zygote_wire.receive(self._control)
                if message is None:
                    return 0  # closed, or the coordinator is gone: its children see that themselves (stdin EOF)
                self._handle(message, fds)

    def _handle(self, message: dict[str, Any], fds: list[int]) -> None:
        try:
            if message.get("op") != "spawn" or len(fds) != 2:
                raise ValueError(f"expected a spawn with 2 descriptors, got {message.get('op')!r} with {len(fds)}")
            args, env, cwd = message["args"], message["env"], message["cwd"]
            if not (isinstance(args, list) and isinstance(env, dict) and isinstance(cwd, str)):
                raise ValueError("a spawn needs 'args' (a list), 'env' (an object) and 'cwd' (a string)")
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                self._become_child([str(arg) for arg in args], {str(k): str(v) for k, v in env.items()}, cwd, fds)
            self._children.add(pid)
            self._report_spawned(message.get("id"), pid)
        except (KeyError, ValueError, OSError) as error:
            zygote_wire.send(self._control, {"op": "refused", "id": message.get("id"), "error": str(error)})
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _report_spawned(self, request: object, pid: int) -> None:
        """Tell the coordinator the child's pid, with a pidfd of it: signals sent through a
        pidfd cannot reach another process that got the pid after the child ended. The pidfd
        is opened here, before the child can be reaped; without one (a kernel before 5.3) the
        coordinator signals by pid."""
        try:
            pidfd: int | None = os.pidfd_open(pid)
        except OSError:
            pidfd = None
        try:
            zygote_wire.send(
                self._control, {"op": "spawned", "id": request, "pid": pid}, [pidfd] if pidfd is not None else []
            )
        finally:
            if pidfd is not None:
                os.close(pidfd)

    def _reap(self) -> None:
        while self._children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._children.discard(pid)
            zygote_wire.send(self._control, {"op": "exited", "pid": pid, "code": os.waitstatus_to_exitcode(status)})

    def _become_child(self, args: list[str], env: dict[str, str], cwd: str, fds: list[int]) -> None:
        """In the forked child: become the module process `python -m sdk.run ARGS` would be,
        then exit with its code. Never returns."""
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            for signum in (signal.SIGCHLD, signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, signal.SIG_DFL)
            os.setsid()  # a session of its own, as the coordinator gives every module process
            stdin, log = fds
            os.dup2(stdin, 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            for fd in (stdin, log, self._control.detach(), self._wake_read, self._wake_write):
                with contextlib.suppress(OSError):
                    os.close(fd)
            os.chdir(cwd)
            os.environ.clear()
            os.environ.update(env)
            sys.path[0] = cwd  # what `python -m` puts first: the folder it runs in
            importlib.invalidate_caches()  # the module's folder may be newer than the zygote
            run = importlib.import_module(RUN_MODULE)
            sys.argv = [str(run.__file__), *args]
            code = run.main(args)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        except BaseException:  # the child must never return into the zygote's loop
            traceback.print_exc()
            code = 1
        finally:
            with contextlib.suppress(Exception):
                logging.shutdown()
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)


def _nothing(signum: int, frame: object) -> None:
    """SIGCHLD's handler: the wakeup fd does the work."""


if __name__ == "__main__":
    raise SystemExit(main())
