"""The wire between the coordinator and its zygote (`python -m sdk.zygote`): one JSON object
per packet of a Unix SOCK_SEQPACKET socket pair, file descriptors passed beside it
(SCM_RIGHTS).

From the coordinator:
    {"op": "spawn", "id": N, "args": [...], "env": {...}, "cwd": "..."} with two descriptors,
    the child's stdin and its log (stdout and stderr).
From the zygote:
    {"op": "ready", "pid": P} once, when it has imported what module processes import;
    {"op": "spawned", "id": N, "pid": P} with one descriptor, a pidfd of the child;
    {"op": "refused", "id": N, "error": "..."} for a spawn it could not do;
    {"op": "exited", "pid": P, "code": C} when a child ends (C negative: killed by signal -C).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Sequence
from typing import Any

MAX_MESSAGE_BYTES = 1 << 20
"""The largest message either side sends (a spawn carries the module's environment)."""
MAX_FDS = 4
"""The most descriptors beside one message."""


class WireError(RuntimeError):
    """A message that is no JSON object, or too large to send."""


def encode(message: dict[str, Any]) -> bytes:
    """A message as sent.

    Raises:
        WireError: It is larger than MAX_MESSAGE_BYTES.
    """
    data = json.dumps(message, separators=(",", ":")).encode()
    if len(data) > MAX_MESSAGE_BYTES:
        raise WireError(f"a {message.get('op')!r} message of {len(data)} bytes is over {MAX_MESSAGE_BYTES}")
    return data


def send(sock: socket.socket, message: dict[str, Any], fds: Sequence[int] = ()) -> None:
    """Send one message (and descriptors); raises what `socket.send_fds` raises (on a
    non-blocking socket, BlockingIOError when the other side lags)."""
    socket.send_fds(sock, [encode(message)], list(fds))


def receive(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """The next message and the descriptors beside it; None at the end of the stream (the
    other side closed its end).

    Raises:
        WireError: The packet is not a JSON object (the descriptors that came with it are
            closed first, so none leaks).
    """
    data, fds, _flags, _address = socket.recv_fds(sock, MAX_MESSAGE_BYTES, MAX_FDS)
    if not data:
        return None, fds
    try:
        message = json.loads(data)
    except ValueError:
        message = None
    if not isinstance(message, dict):
        for fd in fds:
            _close(fd)
        raise WireError(f"not a JSON object: {data[:80]!r}")
    return message, fds


def _close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)
