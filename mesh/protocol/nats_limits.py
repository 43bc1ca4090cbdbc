"""What a NATS server refuses by closing the connection, checked before anything is sent.

nats-server reads every protocol line (`HPUB <subject> <reply> <header bytes> <total bytes>`)
into a buffer of `max_control_line` bytes (4096 by default: MAX_CONTROL_LINE_SIZE in the
server's const.go, and nats-py's parser reads deliveries with the same limit). A longer line
is a protocol error: the server closes the connection, and a client that does not reconnect
is cut off for good. So is a message whose headers and body together exceed `max_payload`
(1 MiB by default; nats-py checks the body alone). Both are refused here as MeshErrors with
an INVALID_ARGUMENT status instead: one call fails, the connection stays. JetStream also
refuses to store more than 64 KiB of headers (without closing anything); that is checked too.

A subject may use at most `MAX_SUBJECT_BYTES` of the control line; the rest is for the verb,
a reply subject (an inbox on publish, `$JS.ACK.<stream>.<consumer>.<counters>` on delivery)
and the two sizes.
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import chain

from mesh.protocol.errors import MeshError

MAX_CONTROL_LINE_BYTES = 4096
"""nats-server's default `max_control_line` (MAX_CONTROL_LINE_SIZE)."""
MAX_SUBJECT_BYTES = 2048
"""The longest subject (or KV key with its `$KV.<bucket>.` prefix) sent: half the control line,
so that any reply subject and sizes fit beside it."""
MAX_KV_KEY_BYTES = 1024
"""The longest key-value key: the longest subject a key travels on is a direct get's
`$JS.API.DIRECT.GET.KV_<bucket>.$KV.<bucket>.<key>`, and with bucket names of up to 255 bytes
(JetStream's JSMaxNameLen) that still fits MAX_SUBJECT_BYTES."""
MAX_STORED_HEADER_BYTES = 64 * 1024
"""The most header bytes JetStream stores with a message (it refuses more: error 10097,
JSStreamHeaderExceedsMaximumErr, "header size exceeds maximum allowed of 64k")."""
HEADER_OVERHEAD_BYTES = 32
"""`NATS/1.0\\r\\n`, the blank line that ends the headers and a margin, per message."""


def check_subject(subject: str, what: str, reason: str = "INVALID_EVENT") -> None:
    """Refuse a subject that would make the server close the connection.

    Args:
        subject: The full subject (for a KV key, `$KV.<bucket>.<key>`).
        what: What it is, for the message ("event subject", "cache key").
        reason: The MeshError reason (its status is INVALID_ARGUMENT).

    Raises:
        MeshError: The subject is longer than MAX_SUBJECT_BYTES.
    """
    size = len(subject.encode())
    if size > MAX_SUBJECT_BYTES:
        raise MeshError(
            reason,
            f"{what} is {size} bytes ({excerpt(subject)}); NATS takes at most {MAX_SUBJECT_BYTES} on a "
            f"subject (its control line is {MAX_CONTROL_LINE_BYTES} bytes); use a shorter key, or a hash of it",
            metadata={"subject_bytes": str(size)},
        )


def check_kv_key(key: str, what: str, reason: str = "INVALID_EVENT") -> None:
    """Refuse a key-value key (as stored, without the bucket) longer than MAX_KV_KEY_BYTES.

    Raises:
        MeshError: Saying the size and the limit, with a short excerpt of the key.
    """
    size = len(key.encode())
    if size > MAX_KV_KEY_BYTES:
        raise MeshError(
            reason,
            f"{what} is {size} bytes as stored ({excerpt(key)}); a NATS key-value key may be at most "
            f"{MAX_KV_KEY_BYTES}, so that every subject it travels on fits the server's "
            f"{MAX_CONTROL_LINE_BYTES}-byte control line; use a shorter key, or a hash of it",
            metadata={"key_bytes": str(size)},
        )


def header_size(headers: Mapping[str, str] | None) -> int:
    """The bytes of `headers` encoded (`NATS/1.0`, `key: value` lines, the blank line)."""
    if not headers:
        return 0
    # One string of all keys and values, measured at once: this runs on every publish, and
    # for ASCII (nearly every header) the length in characters is the length in bytes.
    text = "".join(chain.from_iterable(headers.items()))
    return HEADER_OVERHEAD_BYTES + (len(text) if text.isascii() else len(text.encode())) + 4 * len(headers)


def message_size(body: bytes, headers: Mapping[str, str] | None) -> int:
    """The bytes a message counts against `max_payload`: its body and its encoded headers."""
    return len(body) + header_size(headers)


def check_size(
    body: bytes, headers: Mapping[str, str] | None, max_payload: int, what: str, *, stored: bool = False
) -> None:
    """Refuse a message larger than the server's `max_payload` (headers included), or with
    more headers than JetStream stores when `stored`.

    Raises:
        MeshError: INVALID_EVENT (status INVALID_ARGUMENT) saying the size and the limit.
    """
    size = message_size(body, headers)
    if size > max_payload:
        raise MeshError(
            "INVALID_EVENT",
            f"{what} is {size} bytes with its headers; the NATS server takes at most {max_payload} "
            "(max_payload); send a reference to the data instead",
            metadata={"message_bytes": str(size)},
        )
    if stored and (headers_bytes := header_size(headers)) > MAX_STORED_HEADER_BYTES:
        raise MeshError(
            "INVALID_EVENT",
            f"{what} has {headers_bytes} bytes of headers; JetStream stores at most {MAX_STORED_HEADER_BYTES}; "
            "put long values (a subject, an extension) in the data",
            metadata={"header_bytes": str(headers_bytes)},
        )


def excerpt(text: str, limit: int = 60) -> str:
    """The start of `text`, for a message that must stay short whatever the input."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}… ({len(text)} characters)"
