"""The coordinator's side of the zygote (`python -m sdk.zygote`): a pre-started interpreter
that has imported what every Python module process imports and forks one child per module.

Started once per `mesh up`, beside NATS, it serves every spawn of a module run by the Python
SDK (an `entry`, not a `command`): a child serves in about 20 ms instead of the 0.3 s of CPU a
fresh interpreter spends importing, and shares the imported libraries' pages with its
siblings. MESH_ZYGOTE=0 starts every module as a fresh process instead. When the zygote
cannot start, or ends, modules are started as fresh processes, and the coordinator logs a
warning saying so.

A child is not the coordinator's own child, so `ZygoteChild` stands for it where a process
is expected: its exit code comes from the zygote, which reaps it; signals go through a pidfd
(`os.pidfd_open`), which cannot reach another process that got the pid after the child ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mesh.protocol import zygote_wire

ZYGOTE_ENV = "MESH_ZYGOTE"
""""0" starts every module as a fresh process instead of forking it from the zygote."""
READY_TIMEOUT_SECONDS = 60.0
"""How long the zygote may take to import what it preloads."""
CLOSE_GRACE_SECONDS = 5.0
UNKNOWN_EXIT = 255
"""The exit code reported for a child that ended after its zygote did (no one reaped it for us)."""

_log = logging.getLogger("mesh")


class ZygoteUnavailable(RuntimeError):
    """The zygote did not start, has ended, or refused a spawn; the message says which."""


def wanted(env: Mapping[str, str]) -> bool:
    """Whether MESH_ZYGOTE asks for the zygote (anything but "0"; on Linux, where pidfds are)."""
    return env.get(ZYGOTE_ENV, "1") != "0" and hasattr(os, "pidfd_open")


class _PipeEnd:
    """The coordinator's end of a child's stdin pipe: the child stops when it closes."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    def attach(self, fd: int) -> None:
        """Take the write end of the pipe (closed at once when the child has already ended)."""
        self._fd = fd

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None

    def is_closing(self) -> bool:
        return self._fd is None


class ZygoteChild:
    """A module process forked by the zygote, with what the supervisor asks of a process."""

    def __init__(self, pid: int, pidfd: int | None) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.stdin = _PipeEnd(None)
        self._pidfd = pidfd
        self._exited = asyncio.Event()

    async def wait(self) -> int:
        """Until the child has ended; its exit code (negative: the signal that ended it)."""
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        """Signal the child.

        Raises:
            ProcessLookupError: It has ended.
        """
        if self.returncode is not None:
            raise ProcessLookupError(self.pid)
        if self._pidfd is not None:
            signal.pidfd_send_signal(self._pidfd, signum)
        else:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def take_stdin(self, fd: int) -> None:
        """The coordinator's end of the child's stdin pipe (closed when the child ends)."""
        self.stdin.attach(fd)
        if self.returncode is not None:
            self.stdin.close()

    def ended(self, code: int) -> None:
        """The zygote reaped the child (or, the zygote gone, its pidfd said it ended)."""
        if self.returncode is not None:
            return
        self.returncode = code
        if self._pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(self._pidfd)
            self._pidfd = None
        self.stdin.close()
        self._exited.set()

    def watch_without_zygote(self, loop: asyncio.AbstractEventLoop) -> None:
        """The zygote is gone and no exit code will come: take the child's end from its pidfd
        becoming readable, with UNKNOWN_EXIT for its code (at once, without a pidfd)."""
        pidfd = self._pidfd
        if self.returncode is not None:
            return
        if pidfd is None:
            self.ended(UNKNOWN_EXIT)
            return

        def readable() -> None:
            loop.remove_reader(pidfd)
            self.ended(UNKNOWN_EXIT)

        loop.add_reader(pidfd, readable)


class Zygote:
    """A running zygote: forks module processes on request."""

    def __init__(self, process: asyncio.subprocess.Process, control: socket.socket, log_path: Path) -> None:
        self._process = process
        self._control = control
        self._log_path = log_path
        self._loop = asyncio.get_running_loop()
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[ZygoteChild]] = {}
        self._children: dict[int, ZygoteChild] = {}
        self._ready: asyncio.Future[None] = self._loop.create_future()
        self._send_lock = asyncio.Lock()
        self._lost_because = ""
        self._loop.add_reader(control.fileno(), self._on_readable)
        self._watch = asyncio.create_task(self._watch_process(), name="zygote exit watch")

    @classmethod
    async def start(cls, log_path: Path, env: Mapping[str, str]) -> Zygote:
        """Start the zygote and wait until it has imported what it preloads.

        Args:
            log_path: Where its output goes (a crash of its own, a child's before it took its log).
            env: Its environment (the coordinator's).

        Raises:
            ZygoteUnavailable: It could not be started, or ended or took longer than
                READY_TIMEOUT_SECONDS before it was ready.
        """
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            with open(log_path, "ab") as log:  # noqa: ASYNC230  # one small open, once per mesh
                process = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "sdk.zygote",
                    "--control-fd",
                    str(theirs.fileno()),
                    pass_fds=(theirs.fileno(),),
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=log,
                    stderr=asyncio.subprocess.STDOUT,
                    env=dict(env),
                    start_new_session=True,  # no terminal signals, as the module processes
                )
        except OSError as error:
            ours.close()
            raise ZygoteUnavailable(f"the zygote could not be started: {error}") from None
        finally:
            theirs.close()
        ours.setblocking(False)
        zygote = cls(process, ours, log_path)
        try:
            await asyncio.wait_for(asyncio.shield(zygote._ready), READY_TIMEOUT_SECONDS)
        except TimeoutError:
            await zygote.close()
            raise ZygoteUnavailable(
                f"the zygote was not ready within {READY_TIMEOUT_SECONDS:.0f} s; see {log_path}"
            ) from None
        except BaseException:  # it ended before it was ready, or the start was cancelled
            await zygote.close()
            raise
        return zygote

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def available(self) -> bool:
        """Whether it still takes spawns (it has not ended, nor been closed)."""
        return not self._lost_because

    async def spawn(self, args: Sequence[str], env: Mapping[str, str], cwd: Path, *, log: int) -> ZygoteChild:
        """Fork a child that runs `python -m sdk.run ARGS` in `cwd` with exactly `env`; its
        stdin is a pipe whose other end the returned child holds (`stdin.close()`).

        Args:
            args: sdk.run's arguments.
            env: The child's whole environment.
            cwd: Its working folder (and first import folder, as `python -m` makes it).
            log: Its stdout and stderr (the caller keeps and closes its own descriptor).

        Raises:
            ZygoteUnavailable: The zygote has ended or refused.
        """
        request = next(self._ids)
        answer: asyncio.Future[ZygoteChild] = self._loop.create_future()
        self._pending[request] = answer
        message = {"op": "spawn", "id": request, "args": list(args), "env": dict(env), "cwd": str(cwd)}
        stdin_read, stdin_write = os.pipe()
        try:
            try:
                await self._send(message, [stdin_read, log])
            finally:
                os.close(stdin_read)
            child = await answer
        except BaseException:
            os.close(stdin_write)
            raise
        finally:
            self._pending.pop(request, None)
        child.take_stdin(stdin_write)
        return child

    async def close(self) -> None:
        """End the zygote (it exits when its socket closes) and wait for it. Its children
        are not ended here: the supervisor ends them, and they watch the coordinator, not it."""
        self._lose("the zygote was closed", expected=True)
        try:
            await asyncio.wait_for(self._process.wait(), CLOSE_GRACE_SECONDS)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            await self._process.wait()
        self._watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._watch

    # --- the socket ------------------------------------------------------------------------

    async def _send(self, message: dict[str, Any], fds: Sequence[int]) -> None:
        async with self._send_lock:
            while True:
                if self._lost_because:
                    raise ZygoteUnavailable(self._lost_because)
                try:
                    zygote_wire.send(self._control, message, fds)
                    return
                except BlockingIOError:
                    await self._writable()
                except OSError as error:
                    self._lose(f"the zygote's socket failed: {error}")

    async def _writable(self) -> None:
        ready: asyncio.Future[None] = self._loop.create_future()
        fd = self._control.fileno()

        def writable() -> None:
            if not ready.done():
                ready.set_result(None)

        self._loop.add_writer(fd, writable)
        try:
            await ready
        finally:
            self._loop.remove_writer(fd)

    def _on_readable(self) -> None:
        while not self._lost_because:
            try:
                message, fds = zygote_wire.receive(self._control)
            except BlockingIOError:
                return
            except zygote_wire.WireError as error:
                _log.warning("the zygote sent something unreadable (%s); ignored", error)
                continue
            except OSError as error:
                self._lose(f"the zygote's socket failed: {error}")
                return
            if message is None:
                self._lose(f"the zygote (pid {self.pid}) ended; see {self._log_path}")
                return
            self._dispatch(message, fds)

    def _dispatch(self, message: dict[str, Any], fds: list[int]) -> None:
        try:
            self._act_on(message, fds)
        except (KeyError, TypeError, ValueError) as error:
            _log.warning("the zygote sent a message that is not understood (%r: %s); ignored", message, error)
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _act_on(self, message: dict[str, Any], fds: list[int]) -> None:
        op = message.get("op")
        if op == "ready":
            if not self._ready.done():
                self._ready.set_result(None)
        elif op == "spawned":
            pid = int(message["pid"])
            child = ZygoteChild(pid, fds[0] if fds else None)
            self._children[pid] = child
            answer = self._pending.get(message.get("id", -1))
            if answer is not None and not answer.done():
                answer.set_result(child)
            return
        elif op == "refused":
            answer = self._pending.get(message.get("id", -1))
            if answer is not None and not answer.done():
                answer.set_exception(ZygoteUnavailable(f"the zygote refused a spawn: {message.get('error')}"))
        elif op == "exited":
            reaped = self._children.pop(int(message["pid"]), None)
            if reaped is not None:
                reaped.ended(int(message["code"]))
        else:
            _log.warning("the zygote sent an unknown message %r; ignored", op)
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _lose(self, why: str, *, expected: bool = False) -> None:
        """From now on nothing is sent or awaited: pending spawns fail, and the children still
        running are watched through their pidfds (they keep serving: they need no zygote)."""
        if self._lost_because:
            return
        self._lost_because = why
        if not expected:
            _log.warning("%s; the modules it forked keep running, modules start as fresh processes", why)
        with contextlib.suppress(ValueError, OSError):
            self._loop.remove_reader(self._control.fileno())
        self._control.close()
        error = ZygoteUnavailable(why)
        if not self._ready.done():
            self._ready.set_exception(error)
            self._ready.exception()  # retrieved: `start` may not be waiting any more
        for answer in self._pending.values():
            if not answer.done():
                answer.set_exception(error)
        for child in self._children.values():
            child.watch_without_zygote(self._loop)
        self._children.clear()

    async def _watch_process(self) -> None:
        code = await self._process.wait()
        self._lose(f"the zygote (pid {self.pid}) exited with code {code}; see {self._log_path}")
