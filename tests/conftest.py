"""Shared helpers of the test suite: the project's folders and its venv's tools."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

# The `spawn` fixture (module processes driven by a test) lives in tests/processes.py.
pytest_plugins = ["processes"]

# A suite started in the background (`make test &`, some CI runners) inherits SIGINT ignored,
# and so would every process it starts: the tests that press Ctrl-C on a command would then
# test nothing. A handler (unlike "ignored") is reset to the default in a child at exec.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

PROJECT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


@pytest.fixture
def project() -> Path:
    """The project folder (tests run from anywhere)."""
    return PROJECT


def tool(name: str) -> str:
    """A tool installed in this venv by the project's own dependencies (grpcurl, buf)."""
    path = BIN / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; install the dev extras: make test does (pip install -e '.[dev]')")
    return str(path)
