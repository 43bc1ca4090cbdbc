"""The permissions a module's NATS user gets, as data: derived from its manifest and the
consumers it reports, and refused when a consumer is not its own."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import PROJECT
from mesh.protocol.errors import MeshError
from mesh.protocol.nats_access import ConsumerGrant, ModuleGrant, NatsUser, server_config


def test_a_consumer_of_another_module_or_an_undeclared_pattern_is_refused():
    foreign = ModuleGrant(
        "shop", subscribes=("order.*",), consumers=(ConsumerGrant("billing--on_order", ("order.*",)),)
    )
    with pytest.raises(MeshError, match="named 'shop--<handler>'") as refused:
        foreign.check()
    assert refused.value.reason == "ACCESS_DENIED"

    # "shopkeeper--x" begins with "shop" but is not shop's: the separator is part of the prefix
    lookalike = ModuleGrant("shop", subscribes=("order.*",), consumers=(ConsumerGrant("shopkeeper--x", ("order.*",)),))
    with pytest.raises(MeshError, match="named 'shop--<handler>'"):
        lookalike.check()

    undeclared = ModuleGrant("shop", subscribes=("order.*",), consumers=(ConsumerGrant("shop--spy", (">",)),))
    with pytest.raises(MeshError, match="reads >, which its manifest does not subscribe to"):
        undeclared.check()

    ModuleGrant("shop", subscribes=("order.*",), consumers=(ConsumerGrant("shop--on_order", ("order.*",)),)).check()


def test_permissions_name_each_consumer_and_only_the_declared_event_types():
    grant = ModuleGrant(
        "shop",
        publishes=("order.created",),
        subscribes=("payment.*",),
        consumers=(ConsumerGrant("shop--on_payment", ("payment.*",)),),
    )
    permissions = grant.permissions()
    publish = permissions["publish"]["allow"]
    assert [subject for subject in publish if subject.startswith("mesh.")] == [
        "mesh.evt.*.order.created",
        "mesh.dlq.shop--on_payment",
    ]
    assert "$JS.API.CONSUMER.MSG.NEXT.MESH_EVENTS.shop--on_payment" in publish
    assert not any(subject.startswith(("$KV.mesh_tenant", "$KV.mesh_config")) for subject in publish)
    assert not any("STREAM.DELETE.MESH" in subject or "STREAM.UPDATE.MESH" in subject for subject in publish)
    assert permissions["subscribe"]["allow"] == ["_INBOX.shop.>", "mesh.evt.*.payment.*"]


def test_the_server_configuration_lists_users_with_their_permissions():
    config = json.loads(
        server_config([NatsUser("root", "secret"), NatsUser("shop", "pw", ModuleGrant("shop").permissions())])
    )
    users = config["authorization"]["users"]
    assert users[0] == {"user": "root", "password": "secret"}
    assert users[1]["permissions"]["subscribe"]["allow"] == ["_INBOX.shop.>"]


def test_mesh_nats_permissions_without_a_running_mesh_reads_the_modules_folder(tmp_path):
    shown = subprocess.run(
        [sys.executable, "-m", "mesh.cli", "nats", "permissions", "--state-dir", str(tmp_path)],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    permissions = json.loads(shown.stdout)
    assert "$JS.API.CONSUMER.MSG.NEXT.MESH_EVENTS.orders--remember_stock" in permissions["orders"]["publish"]["allow"]
    assert "module audit is not Python" in shown.stderr
