"""The coordinator's state folder (default `.mesh/`): logs, ready files, module state,
embedded NATS data, and the lock that keeps two coordinators off one folder.

    .mesh/coordinator.lock     held while a coordinator runs
    .mesh/coordinator.json     {"address", "pid", "nats_url", "tls", "credentials"} of the running
                               coordinator ("credentials": the admin operator's folder)
    .mesh/pki/                 the mesh CA and the credentials issued from it (credentials.py)
    .mesh/logs/<module>.log    each module's stdout and stderr
    .mesh/run/                 ready files of module processes
    .mesh/state/<module>/      each module's own state (databases, caches)
    .mesh/nats/                the embedded nats-server's JetStream data
    .mesh/nats-access/         NATS users and permissions (nats_identities.py)
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import IO, Any


class StateDirLocked(RuntimeError):
    """Another coordinator holds the state folder."""


class StateDir:
    """Paths under one state folder, and its lock."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.logs = root / "logs"
        self.run = root / "run"
        self.state = root / "state"
        self.nats = root / "nats"
        self.pki = root / "pki"
        self.nats_access = root / "nats-access"
        self.info_file = root / "coordinator.json"
        self._lock_file: IO[str] | None = None

    def lock(self) -> None:
        """Take the folder for this process (again: nothing happens); the OS releases it when
        the process dies."""
        if self._lock_file is not None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        handle = open(self.root / "coordinator.lock", "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            owner = self.read_info() or {}
            raise StateDirLocked(
                f"another coordinator (pid {owner.get('pid', '?')}, {owner.get('address', '?')}) is running "
                f"with state folder {self.root}; stop it (mesh down) or pass another --state-dir"
            ) from None
        self._lock_file = handle

    def make_folders(self) -> None:
        """Create the folders a running mesh writes to (logs, ready files, module state)."""
        for folder in (self.logs, self.run, self.state):
            folder.mkdir(parents=True, exist_ok=True)

    def unlock(self) -> None:
        """Give the folder up (only if this process holds it)."""
        if self._lock_file is not None:
            self.info_file.unlink(missing_ok=True)
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def write_info(self, **info: Any) -> None:
        scratch = self.info_file.with_suffix(".tmp")
        scratch.write_text(json.dumps({"pid": os.getpid(), **info}))
        scratch.replace(self.info_file)

    def read_info(self) -> dict[str, Any] | None:
        try:
            info: dict[str, Any] = json.loads(self.info_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return info
