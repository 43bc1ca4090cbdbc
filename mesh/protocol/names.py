"""The names both sides of the mesh agree on: NATS subjects, JetStream streams and
key-value buckets, consumer names, and the metadata keys that carry a tenant.

One module owns them so that the SDK (which publishes and consumes), the control plane
(which provisions, inspects and replays) and a module in another language reading this
file all use the same strings.
"""

from __future__ import annotations

import re

from mesh.protocol.errors import MeshError, excerpt

# --- events -----------------------------------------------------------------------------

EVENT_STREAM = "MESH_EVENTS"
"""The JetStream stream over every event subject (and the replay subjects)."""
EVENT_SUBJECT_PREFIX = "mesh.evt"
"""Events travel on `mesh.evt.<tenant>.<entity>.<action>`."""
NO_TENANT = "_"
"""The tenant token of an event that belongs to no tenant."""
REPLAY_SUBJECT_PREFIX = "mesh.replay"
"""A replayed dead letter goes to `mesh.replay.<consumer>`, read by that consumer alone."""
DEAD_LETTER_STREAM = "MESH_DLQ"
DEAD_LETTER_SUBJECT_PREFIX = "mesh.dlq"
"""Dead letters are kept on `mesh.dlq.<consumer>`."""
SYSTEM_SUBJECT_PREFIX = "mesh.sys"
"""Lifecycle and tenancy events of the mesh itself: `mesh.sys.module.<name>.<event>`, `mesh.sys.tenant.…`."""
MODULE_EVENTS_PREFIX = f"{SYSTEM_SUBJECT_PREFIX}.module"
RATE_LIMIT_USAGE_SUBJECT = "mesh.gateway.limits"
"""Where gateway replicas tell each other the calls they admitted (core NATS, not kept), so
that each deducts the others' from its rate-limit buckets (mesh.gateway.limit_sharing)."""

# fullmatch everywhere: `$` also matches before a final newline, so "acme\n" would pass.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,128}")


def check_token(value: str, what: str) -> None:
    """Refuse a value that cannot be one token of a NATS subject (INVALID_EVENT); a tenant
    may not be `_`, which on a subject means "no tenant"."""
    if not _TOKEN.fullmatch(value):
        raise MeshError(
            "INVALID_EVENT",
            f"{what} {excerpt(value)} cannot be part of a NATS subject; use 1-128 letters, digits, '-' and '_'",
        )
    _refuse_no_tenant_marker(value, what, "INVALID_EVENT")


def _refuse_no_tenant_marker(value: str, what: str, reason: str) -> None:
    """A tenant named `_` would be indistinguishable from no tenant on every event subject."""
    if what == "tenant" and value == NO_TENANT:
        raise MeshError(
            reason,
            f'tenant {NO_TENANT!r} is reserved for "no tenant" (the tenant token of an event that '
            "belongs to none); use another id",
            metadata={what: value},
        )


def event_subject_parts(subject: str) -> tuple[str, str] | None:
    """The tenant ("" for none) and event type an event subject says, or None when
    `subject` is no event subject (a replay, a dead letter, a system event).

    `mesh.evt.acme.order.created` -> ("acme", "order.created"); `mesh.evt._.x.y` -> ("", "x.y").
    """
    prefix = f"{EVENT_SUBJECT_PREFIX}."
    if not subject.startswith(prefix):
        return None
    tenant, _, event_type = subject[len(prefix) :].partition(".")
    return ("" if tenant == NO_TENANT else tenant), event_type


def event_subject(event_type: str, tenant: str | None) -> str:
    """The subject an event of `event_type` for `tenant` is published on."""
    return f"{EVENT_SUBJECT_PREFIX}.{tenant or NO_TENANT}.{event_type}"


def pattern_subject(pattern: str) -> str:
    """An event type pattern as a NATS subject filter: `order.*` -> `mesh.evt.*.order.*`."""
    return f"{EVENT_SUBJECT_PREFIX}.>" if pattern == ">" else f"{EVENT_SUBJECT_PREFIX}.*.{pattern}"


def matches(pattern: str, event_type: str) -> bool:
    """Whether an event type matches a pattern (`*` one token, `>` the rest)."""
    if pattern == ">":
        return True
    wanted, given = pattern.split("."), event_type.split(".")
    for index, token in enumerate(wanted):
        if token == ">":
            return len(given) > index
        if index >= len(given) or (token != "*" and token != given[index]):
            return False
    return len(given) == len(wanted)


def consumer_name(module: str, handler: str) -> str:
    """The durable consumer of one handler: `<module>--<handler>` (no dots allowed there)."""
    return f"{module}--{handler}".replace(".", "_")


def replay_subject(consumer: str) -> str:
    """Where a dead letter replayed to `consumer` is sent."""
    return f"{REPLAY_SUBJECT_PREFIX}.{consumer}"


def dead_letter_subject(consumer: str) -> str:
    """Where `consumer`'s dead letters are kept."""
    return f"{DEAD_LETTER_SUBJECT_PREFIX}.{consumer}"


# --- tenancy ----------------------------------------------------------------------------
# Key layouts (the history of each key is the audit trail):
#   mesh_tenant_modules   <tenant>.<module>              {"enabled", "changed_by", "changed_at"}
#   mesh_tenant_flags     <tenant>.<flag>                {"enabled", "changed_by", "changed_at"}
#   mesh_config           <module>.<tenant>[.<company>]  {"config", "changed_by", "changed_at"}
#   mesh_cache_<module>   the module's own cache (ctx.cache)

MODULES_BUCKET = "mesh_tenant_modules"
FLAGS_BUCKET = "mesh_tenant_flags"
CONFIG_BUCKET = "mesh_config"
CACHE_BUCKET_PREFIX = "mesh_cache_"
BUCKET_HISTORY = 64
"""The most NATS keeps per key: the audit trail."""
TENANT_METADATA = "x-tenant-id"
"""The gRPC metadata key of the tenant a call is for."""
COMPANY_METADATA = "x-company-id"
"""The gRPC metadata key of the company a call is for."""

_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def check_id(value: str, what: str) -> str:
    """A tenant, company or flag id: it is a key token, so letters, digits, '-' and '_'; a
    tenant may not be `_`, the "no tenant" token of event subjects."""
    if not _ID.fullmatch(value or ""):
        raise MeshError(
            "INVALID_TENANT",
            f"{what} {excerpt(value)} is not valid: use 1-128 letters, digits, '-' or '_'",
            metadata={what: value},
        )
    _refuse_no_tenant_marker(value, what, "INVALID_TENANT")
    return value


# --- metrics ----------------------------------------------------------------------------

EVENT_COUNT_FIELDS = ("published", "received", "failed", "redelivered", "dead_lettered", "skipped", "dropped")
"""The outcomes counted per event type: the fields of mesh.v1.EventCounts."""
