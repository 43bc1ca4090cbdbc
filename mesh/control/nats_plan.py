"""The NATS users and permissions a modules folder will need, before it runs: for an operator
who runs the NATS servers (NATS_URL) and provisions their users (`mesh nats permissions`,
`mesh nats users`). Loads the Python modules' code (through the SDK) to find the consumers
of their handlers; a module in another language lists its own in `[events] consumers`.

`mesh nats users --out DIR` writes what a NATS cluster and the coordinator need:

    DIR/server/nats-server.conf   the users (and, with routes, authenticated cluster routes),
                                  for every nats-server: `nats-server -c …/nats-server.conf`
    DIR/logins/<user>.json        {"user", "password"} of mesh-coordinator, mesh-admin,
                                  mesh-gateway and each module: the coordinator's (and the
                                  gateways') MESH_NATS_CREDENTIALS folder
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mesh.control.discovery import DiscoveredModule
from mesh.control.nats_identities import grant_of, write_private
from mesh.protocol.names import consumer_name
from mesh.protocol.nats_access import (
    ADMIN_USER,
    COORDINATOR_USER,
    GATEWAY_PERMISSIONS,
    GATEWAY_USER,
    ROUTE_USER,
    ModuleGrant,
    NatsUser,
)
from mesh.v1 import lifecycle_pb2
from sdk import event_consumers, handler_bindings, load_module


def planned_grants(modules: Mapping[str, DiscoveredModule]) -> tuple[dict[str, ModuleGrant], list[str]]:
    """The grants of a modules folder before it runs, with warnings for what could not be read.

    A Python module's consumers come from its handlers; a module in another language lists
    them in `[events] consumers` (without them, a module that subscribes gets a warning: its
    NATS user will not be allowed to read its consumers)."""
    grants: dict[str, ModuleGrant] = {}
    warnings: list[str] = []
    for name, module in sorted(modules.items()):
        events = module.manifest.events
        consumers: list[lifecycle_pb2.EventConsumer] = []
        if module.manifest.run.entry is None:
            consumers = [
                lifecycle_pb2.EventConsumer(name=consumer_name(name, handler), patterns=patterns)
                for handler, patterns in events.consumers.items()
            ]
            if events.subscribes and not consumers:
                warnings.append(
                    f"module {name} is not Python and lists no [events] consumers in its module.toml, so its "
                    "consumers are known only once it runs (then `mesh nats permissions` with the mesh up shows them)"
                )
        else:
            try:
                consumers = event_consumers(name, handler_bindings(load_module(module.directory).module_class))
            except Exception as error:  # one broken module must not hide the others' permissions
                warnings.append(f"module {name}: cannot load its code to find its consumers: {error}")
        grants[name] = grant_of(module.manifest, consumers)
    return grants, warnings


def write_users(out: Path, grants: Mapping[str, ModuleGrant], routes: Sequence[str]) -> list[Path]:
    """Write a NATS server configuration with a user per module (fresh passwords) and the
    logins that go with it; returns the files written.

    Args:
        out: The folder (created; existing files are replaced).
        grants: Each module's permissions.
        routes: "host:port" of every server of the cluster, for authenticated routes; none for
            a single server.
    """
    logins = {name: secrets.token_urlsafe(24) for name in (COORDINATOR_USER, ADMIN_USER, GATEWAY_USER, *grants)}
    users = [
        NatsUser(COORDINATOR_USER, logins[COORDINATOR_USER]),
        NatsUser(ADMIN_USER, logins[ADMIN_USER]),
        NatsUser(GATEWAY_USER, logins[GATEWAY_USER], GATEWAY_PERMISSIONS),
        *(NatsUser(name, logins[name], grant.permissions()) for name, grant in sorted(grants.items())),
    ]
    config: dict[str, Any] = {"authorization": {"users": [user.entry() for user in users]}}
    if routes:
        route_password = secrets.token_urlsafe(24)
        config["cluster"] = {
            "name": "mesh",
            "listen": "0.0.0.0:6222",
            "authorization": {"user": ROUTE_USER, "password": route_password},
            "routes": [f"nats://{ROUTE_USER}:{route_password}@{route}" for route in routes],
        }
    written = [out / "server" / "nats-server.conf"]
    write_private(written[0], json.dumps(config, indent=2))
    for name, password in logins.items():
        path = out / "logins" / f"{name}.json"
        write_private(path, json.dumps({"user": name, "password": password}))
        written.append(path)
    return written
