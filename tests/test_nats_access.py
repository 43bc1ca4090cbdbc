"""The permissions a module's NATS user gets, as data: derived from its manifest and the
consumers it reports, and refused when a consumer is not its own."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import PROJECT
from mesh.control.nats_identities import NatsIdentities
from mesh.protocol.errors import MeshError
from mesh.protocol.manifest import ManifestError, load_manifest
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
    # the Node.js module lists its consumer in its manifest
    assert "$JS.API.CONSUMER.MSG.NEXT.MESH_EVENTS.audit--record" in permissions["audit"]["publish"]["allow"]
    assert shown.stderr == ""


def test_an_external_nats_login_that_is_missing_or_malformed_is_refused_with_the_fix(tmp_path):
    identities = NatsIdentities(tmp_path / "access", embedded=False, credentials_dir=tmp_path, enforced=True)
    with pytest.raises(MeshError, match=r"no NATS login for shop: expected .*shop\.json") as missing:
        identities.module_login("shop")
    assert missing.value.reason == "ACCESS_DENIED"
    assert "mesh nats users --out DIR" in missing.value.message

    (tmp_path / "shop.json").write_text('{"user": "shop"}')
    with pytest.raises(MeshError, match="is no NATS login"):
        identities.module_login("shop")

    (tmp_path / "shop.json").write_text('{"user": "shop", "password": "pw"}')
    assert identities.module_login("shop").connect_options() == {"user": "shop", "password": "pw"}


def test_a_module_may_not_take_the_name_of_a_mesh_user():
    with pytest.raises(MeshError, match="may not be called 'mesh-admin'"):
        ModuleGrant("mesh-admin").check()


def _manifest(events: str, run: str) -> str:
    return f'name = "shop"\nversion = "1.0.0"\n[events]\n{events}\n[run]\n{run}\n'


@pytest.mark.parametrize(
    ("events", "run", "problem"),
    [
        (
            'subscribes = ["order.*"]\nconsumers = { spy = [">"] }',
            'command = ["node", "index.js"]',
            "consumer 'spy' reads >; list patterns of 'subscribes' there",
        ),
        (
            'subscribes = ["order.*"]\nconsumers = { on_order = ["order.*"] }',
            'entry = "module:Shop"',
            "a Python module's consumers come from its @on handlers",
        ),
        (
            'subscribes = ["order.*"]\nconsumers = { "on.order" = ["order.*"] }',
            'command = ["node", "index.js"]',
            "on.order",
        ),
    ],
)
def test_declared_consumers_are_checked_in_the_manifest(tmp_path, events, run, problem):
    (tmp_path / "module.toml").write_text(_manifest(events, run))
    with pytest.raises(ManifestError) as refused:
        load_manifest(tmp_path)
    assert problem in str(refused.value)


def test_mesh_nats_users_refuses_a_route_that_is_no_address(tmp_path):
    refused = subprocess.run(
        [sys.executable, "-m", "mesh.cli", "nats", "users", "--out", str(tmp_path), "--route", "nats-1"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2
    assert "--route 'nats-1' is not HOST:PORT" in refused.stderr
    assert not any(tmp_path.iterdir()), "nothing is written for a bad route"
