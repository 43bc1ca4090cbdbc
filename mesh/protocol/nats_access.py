"""Who may do what on NATS: each module's permissions, derived from its manifest (the event
types it publishes and the patterns it subscribes to) and the durable consumers its handlers
read, in the shape nats-server's configuration takes (JSON is valid NATS configuration).

A module's NATS identity may publish only its declared event types and its own dead letters,
read only its own consumers (which the coordinator creates for it), read but not write the
tenancy buckets, and keep its own cache bucket. Only the coordinator (and the operator's admin
user) administer streams and buckets and write tenancy state.

NATS subjects are matched token by token (`*` one token, `>` the rest), never by a prefix of
a token, so a consumer named `<module>--<handler>` cannot be granted by a wildcard: the
permissions list each consumer by its full name.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mesh.protocol.errors import MeshError
from mesh.protocol.names import (
    CACHE_BUCKET_PREFIX,
    CONFIG_BUCKET,
    DEAD_LETTER_STREAM,
    EVENT_STREAM,
    FLAGS_BUCKET,
    MODULES_BUCKET,
    RATE_LIMIT_USAGE_SUBJECT,
    dead_letter_subject,
    event_subject,
    pattern_subject,
)

TENANCY_BUCKETS = (MODULES_BUCKET, FLAGS_BUCKET, CONFIG_BUCKET)
"""The buckets every module reads (and only the coordinator writes)."""
COORDINATOR_USER = "mesh-coordinator"
ADMIN_USER = "mesh-admin"
"""The operator's NATS user (`mesh dlq` and other CLI commands that read NATS directly)."""
PROBE_USER = "mesh-config-probe"
"""A user without permissions whose password proves which configuration a server has loaded."""
ROUTE_USER = "mesh-route"
"""The user NATS servers of one cluster authenticate their routes to each other with."""
GATEWAY_USER = "mesh-gateway"
"""The HTTP gateways' NATS user: they share their rate limits (GATEWAY_PERMISSIONS)."""
RESERVED_USERS = frozenset({COORDINATOR_USER, ADMIN_USER, PROBE_USER, ROUTE_USER, GATEWAY_USER})
"""NATS users of the mesh itself: no module may be called so."""


def inbox_prefix(module: str) -> str:
    """Where replies to a module's requests arrive; only that module may subscribe there."""
    return f"_INBOX.{module}"


def consumer_prefix(module: str) -> str:
    """What every durable consumer name of `module` begins with (see names.consumer_name)."""
    return f"{module}--"


@dataclass(frozen=True)
class ConsumerGrant:
    """One durable consumer a module reads, as it reported it at Describe."""

    name: str
    patterns: tuple[str, ...]


@dataclass(frozen=True)
class ModuleGrant:
    """What a module may do on NATS: from its manifest and the consumers it reported."""

    module: str
    publishes: tuple[str, ...] = ()
    subscribes: tuple[str, ...] = ()
    consumers: tuple[ConsumerGrant, ...] = field(default_factory=tuple)

    def check(self) -> None:
        """Refuse a consumer that is not the module's own, or reads a pattern its manifest
        does not subscribe to: either would let it read another module's events.

        Raises:
            MeshError: ACCESS_DENIED naming the consumer and what is wrong.
        """
        if self.module in RESERVED_USERS:
            raise MeshError(
                "ACCESS_DENIED",
                f"a module may not be called {self.module!r}: the mesh's own NATS user has that name; rename it",
                metadata={"module": self.module},
            )
        declared = set(self.subscribes)
        for consumer in self.consumers:
            if not consumer.name.startswith(consumer_prefix(self.module)) or "." in consumer.name:
                raise MeshError(
                    "ACCESS_DENIED",
                    f"module {self.module} reported the consumer {consumer.name!r}; a module's consumers are "
                    f"named '{consumer_prefix(self.module)}<handler>' (no dots)",
                    metadata={"module": self.module, "consumer": consumer.name},
                )
            undeclared = sorted(set(consumer.patterns) - declared)
            if undeclared or not consumer.patterns:
                raise MeshError(
                    "ACCESS_DENIED",
                    f"module {self.module}'s consumer {consumer.name} reads {', '.join(undeclared) or 'nothing'}, "
                    f"which its manifest does not subscribe to; add the patterns to [events] subscribes "
                    f"in module.toml",
                    metadata={"module": self.module, "consumer": consumer.name},
                )

    def permissions(self) -> dict[str, Any]:
        """The nats-server `permissions` block of this module's user."""
        publish = [event_subject(event_type, "*") for event_type in self.publishes]
        publish += [f"$JS.API.STREAM.INFO.{stream}" for stream in (EVENT_STREAM, DEAD_LETTER_STREAM)]
        for consumer in self.consumers:
            publish += _consumer_subjects(consumer.name)
        for bucket in TENANCY_BUCKETS:
            publish += _bucket_read_subjects(bucket)
        publish += _bucket_owner_subjects(CACHE_BUCKET_PREFIX + self.module)
        subscribe = [f"{inbox_prefix(self.module)}.>", *(pattern_subject(p) for p in self.subscribes)]
        return {"publish": {"allow": _unique(publish)}, "subscribe": {"allow": _unique(subscribe)}}


def _consumer_subjects(name: str) -> list[str]:
    """Reading one durable consumer: look it up, pull from it, acknowledge, dead-letter."""
    return [
        f"$JS.API.CONSUMER.INFO.{EVENT_STREAM}.{name}",
        f"$JS.API.CONSUMER.MSG.NEXT.{EVENT_STREAM}.{name}",
        f"$JS.ACK.{EVENT_STREAM}.{name}.>",
        dead_letter_subject(name),
    ]


def _bucket_read_subjects(bucket: str) -> list[str]:
    """Reading and watching a key-value bucket (an ordered consumer of its own), not writing it."""
    stream = f"KV_{bucket}"
    return [
        f"$JS.API.STREAM.INFO.{stream}",
        f"$JS.API.STREAM.MSG.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}.>",
        f"$JS.API.CONSUMER.CREATE.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.DELETE.{stream}.>",
        f"$JS.API.CONSUMER.INFO.{stream}.>",
        f"$JS.FC.{stream}.>",
    ]


def _bucket_owner_subjects(bucket: str) -> list[str]:
    """Everything on a bucket of the module's own (its cache)."""
    stream = f"KV_{bucket}"
    return [
        f"$JS.API.STREAM.*.{stream}",
        f"$JS.API.STREAM.MSG.*.{stream}",
        f"$JS.API.DIRECT.GET.{stream}.>",
        f"$JS.API.CONSUMER.*.{stream}",
        f"$JS.API.CONSUMER.*.{stream}.>",
        f"$JS.FC.{stream}.>",
        f"$KV.{bucket}.>",
    ]


def _unique(subjects: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(subjects))


@dataclass(frozen=True)
class NatsUser:
    """One user of the embedded server: a name, a password, and permissions (None: all)."""

    name: str
    password: str
    permissions: dict[str, Any] | None = None

    def entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"user": self.name, "password": self.password}
        if self.permissions is not None:
            entry["permissions"] = self.permissions
        return entry


GATEWAY_PERMISSIONS: dict[str, Any] = {
    "publish": {"allow": [RATE_LIMIT_USAGE_SUBJECT]},
    "subscribe": {"allow": [RATE_LIMIT_USAGE_SUBJECT]},
}
"""What the gateways' user may do: tell each other the calls they admitted, and hear it; no
event, no bucket (a gateway calls modules over gRPC, with the caller's token)."""

DENY_ALL: dict[str, Any] = {"publish": {"deny": [">"]}, "subscribe": {"deny": [">"]}}
"""The permissions of a user that only proves a configuration was loaded."""


def server_config(users: Sequence[NatsUser]) -> str:
    """The nats-server configuration (JSON, which nats-server reads as its own format) of
    these users; everything else comes from the command line."""
    return json.dumps({"authorization": {"users": [user.entry() for user in users]}}, indent=2)
