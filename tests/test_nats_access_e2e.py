"""NATS with identities: the embedded nats-server of `mesh up` lets no one in without a user,
and a module's user may do on NATS only what its manifest declares (real coordinator, real
module processes, a raw nats-py client as the attacker)."""

from __future__ import annotations

import asyncio
import json
import os

import nats
import nats.errors
import nats.js.errors
import pytest
from nats.aio.client import Client as NatsClient

from mesh.protocol.names import EVENT_STREAM, MODULES_BUCKET, RATE_LIMIT_USAGE_SUBJECT, consumer_name, event_subject
from mesh.protocol.nats_access import inbox_prefix
from meshkit import WAIT_SECONDS, MeshDir, RunningMesh


async def _connect(url: str, **login: str) -> tuple[NatsClient, list[str]]:
    """A client that keeps what the server refuses it (permissions violations arrive apart
    from the call that caused them)."""
    refusals: list[str] = []

    async def keep(error: Exception) -> None:
        refusals.append(str(error))

    client = await nats.connect(url, error_cb=keep, allow_reconnect=False, max_reconnect_attempts=0, **login)
    return client, refusals


async def _refused(refusals: list[str], subject: str) -> None:
    """Until the server has said it refused `subject`."""
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    wanted = f'permissions violation for publish to "{subject.lower()}"'  # nats-py lowercases it
    while not any(wanted in refusal.lower() for refusal in refusals):
        assert asyncio.get_running_loop().time() < deadline, f"no refusal of {subject}: {refusals}"
        await asyncio.sleep(0.02)


def _login(running: RunningMesh, module: str) -> dict[str, str]:
    """A module's login, with the inbox its replies may arrive at, as the SDK connects."""
    settings = running.module_nats(module)
    return {"user": settings.user, "password": settings.password, "inbox_prefix": inbox_prefix(module)}


@pytest.fixture
def mesh_with_events(tmp_path):
    mesh = MeshDir(tmp_path)
    mesh.module("sender", publishes=["greeting.sent"])
    mesh.module("listener", cls="Listener", subscribes=["greeting.sent"])
    with mesh.up() as running:
        running.wait_until_up()
        yield mesh, running


def test_mesh_up_admits_every_module_to_nats_with_one_reload(mesh_with_events):
    """Each reload of the embedded server drops the connections still in their handshake and
    costs the module that made one a retry: the spawned modules are described first and their
    users loaded at once (bench/boot.py), not one reload per module."""
    mesh, _ = mesh_with_events
    log = (mesh.state / "logs" / "nats-server.log").read_text()
    assert log.count("Reloaded server configuration") == 1, log
    permissions = json.loads((mesh.state / "nats-access" / "permissions.json").read_text())
    assert sorted(permissions) == ["listener", "sender"]


def test_a_module_slow_to_start_holds_up_only_its_dependents(tmp_path):
    """Admitting every module at once must not make the mesh wait for the slowest one: a module
    still starting after DESCRIBE_AHEAD_SECONDS is admitted on its own, when it is ready."""
    from mesh.protocol.states import State

    mesh = MeshDir(tmp_path)
    mesh.module("quick")
    go = tmp_path / "go"
    os.mkfifo(go)  # the slow module's import blocks reading it until the test writes it
    slow = mesh.module("slow")
    (slow / "module.py").write_text(
        f"from pathlib import Path\n\nfrom meshnode import Node\n\nPath({str(go)!r}).read_text()\n\n\n"
        "class Module(Node):\n    pass\n"
    )
    with mesh.up() as running:
        running.wait_for(
            lambda: running.modules()["quick"].state == State.RUNNING.value, "quick running while slow still starts"
        )
        assert running.modules()["slow"].state != State.RUNNING.value
        go.write_text("go")  # opens once the module reads, as it has since it was spawned
        modules = running.wait_until_up()
        assert {name: module.state for name, module in modules.items()} == {
            "quick": State.RUNNING.value,
            "slow": State.RUNNING.value,
        }
        permissions = json.loads((mesh.state / "nats-access" / "permissions.json").read_text())
        assert sorted(permissions) == ["quick", "slow"]


def test_a_client_without_credentials_cannot_connect(mesh_with_events):
    _, running = mesh_with_events

    async def attempt() -> None:
        with pytest.raises(nats.errors.Error, match=r"[Aa]uthorization"):
            await nats.connect(running.nats_url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=5)
        with pytest.raises(nats.errors.Error, match=r"[Aa]uthorization"):
            await nats.connect(
                running.nats_url, user="listener", password="guessed", allow_reconnect=False, max_reconnect_attempts=0
            )

    asyncio.run(attempt())


def test_a_module_may_do_on_nats_only_what_its_manifest_declares(mesh_with_events):
    _, running = mesh_with_events
    forged = event_subject("greeting.sent", "acme")
    tenancy_key = f"$KV.{MODULES_BUCKET}.acme.listener"
    delete_stream = f"$JS.API.STREAM.DELETE.{EVENT_STREAM}"
    listeners_consumer = consumer_name("listener", "heard")

    async def attack() -> None:
        admin = await nats.connect(running.nats_url, **running.nats_login())
        admin_js = admin.jetstream()
        listener, listener_refusals = await _connect(running.nats_url, **_login(running, "listener"))
        sender, sender_refusals = await _connect(running.nats_url, **_login(running, "sender"))
        try:
            # listener publishes greeting.sent, which only sender declares
            await listener.publish(forged, b"{}", headers={"ce-type": "greeting.sent", "ce-source": "forged"})
            await _refused(listener_refusals, forged)
            with pytest.raises(nats.js.errors.NotFoundError):
                await admin_js.get_last_msg(EVENT_STREAM, forged)

            # a tenancy write, past every rule of the Tenancy API
            await listener.publish(tenancy_key, json.dumps({"enabled": True}).encode())
            await _refused(listener_refusals, tenancy_key)
            bucket = await admin_js.key_value(MODULES_BUCKET)
            with pytest.raises(nats.js.errors.KeyNotFoundError):
                await bucket.get("acme.listener")

            # deleting the event stream
            await listener.publish(delete_stream, b"", reply=listener.new_inbox())
            await _refused(listener_refusals, delete_stream)
            assert (await admin_js.stream_info(EVENT_STREAM)).config.name == EVENT_STREAM

            # reading another module's consumer
            next_message = f"$JS.API.CONSUMER.MSG.NEXT.{EVENT_STREAM}.{listeners_consumer}"
            await sender.publish(next_message, b'{"batch": 1}', reply=sender.new_inbox())
            await _refused(sender_refusals, next_message)

            # what sender declares, it may publish: the stream acknowledges it
            acknowledged = await sender.jetstream().publish(
                event_subject("greeting.sent", "acme"),
                b'{"name": "ada"}',
                headers={
                    "ce-id": "e-1",
                    "ce-type": "greeting.sent",
                    "ce-source": "sender",
                    "ce-specversion": "1.0",
                    "ce-tenant": "acme",
                },
            )
            assert acknowledged.stream == EVENT_STREAM
            assert not [r for r in sender_refusals if "greeting.sent" in r], sender_refusals
        finally:
            for client in (listener, sender, admin):
                await client.close()

    asyncio.run(attack())


def test_mesh_nats_permissions_prints_what_each_module_may_do(mesh_with_events):
    mesh, _ = mesh_with_events
    shown = mesh.run_cli("nats", "permissions", "--module", "listener")
    assert shown.returncode == 0, shown.stderr
    permissions = json.loads(shown.stdout)["listener"]
    publish = permissions["publish"]["allow"]
    assert f"$JS.API.CONSUMER.MSG.NEXT.{EVENT_STREAM}.{consumer_name('listener', 'heard')}" in publish
    assert not any(subject.startswith("mesh.evt.") for subject in publish), "listener publishes no event"
    assert "_INBOX.listener.>" in permissions["subscribe"]["allow"]

    unknown = mesh.run_cli("nats", "permissions", "--module", "nobody")
    assert unknown.returncode == 2
    assert "no module 'nobody'" in unknown.stderr


def test_the_gateways_nats_user_may_share_rate_limits_and_nothing_else(mesh_with_events):
    """`mesh-gateway.json` in the state folder (owner only) is the login `mesh gateway` shares
    its rate limits with: it may publish and hear rate-limit reports, and not forge an event."""
    mesh, running = mesh_with_events
    login_file = mesh.state / "nats-access" / "mesh-gateway.json"
    assert login_file.stat().st_mode & 0o777 == 0o600
    login = json.loads(login_file.read_text())
    forged = event_subject("greeting.sent", "acme")

    async def attempt() -> None:
        gateway, refusals = await _connect(running.nats_url, user=login["user"], password=login["password"])
        try:
            heard = await gateway.subscribe(RATE_LIMIT_USAGE_SUBJECT)
            await gateway.publish(RATE_LIMIT_USAGE_SUBJECT, b'{"replica": "r", "admitted": []}')
            assert (await heard.next_msg(timeout=WAIT_SECONDS)).data.startswith(b'{"replica"')
            await gateway.publish(forged, b"{}")
            await _refused(refusals, forged)
        finally:
            await gateway.close()

    asyncio.run(attempt())
