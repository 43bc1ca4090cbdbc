"""A supervised, health-checked NATS: a `kill -9` of the embedded nats-server under a real
mesh is seen in the system health, the server comes back on the same port with its data,
and the modules reconnect and keep exchanging events. A connection the server closes with
an error (nats-py would give it up for good) comes back too."""

from __future__ import annotations

import asyncio
from urllib.parse import urlparse

import nats
import psutil

from greeter.v1 import greeter_pb2, greeter_pb2_grpc
from mesh.protocol.names import EVENT_STREAM, event_subject
from mesh.protocol.nats_server import EmbeddedNats
from mesh.v1 import coordinator_pb2, health_pb2
from meshkit import WAIT_SECONDS, MeshDir, RunningMesh
from sdk.runtime._nats_link import NatsConnectionHealth, ReconnectingClient

HEALTHY = health_pb2.HEALTH_STATUS_HEALTHY
UNHEALTHY = health_pb2.HEALTH_STATUS_UNHEALTHY


def _system_health(running: RunningMesh) -> coordinator_pb2.GetSystemHealthResponse:
    return running.call(
        lambda stub: stub.GetSystemHealth(coordinator_pb2.GetSystemHealthRequest(fresh=True), timeout=WAIT_SECONDS)
    )


def _component(components: list[health_pb2.ComponentHealth], name: str) -> health_pb2.ComponentHealth | None:
    return next((component for component in components if component.name == name), None)


def _say(running: RunningMesh, address: str, name: str) -> None:
    async def call() -> None:
        async with running.channel(address) as channel:
            await greeter_pb2_grpc.GreeterStub(channel).SayHello(
                greeter_pb2.SayHelloRequest(name=name), timeout=WAIT_SECONDS, wait_for_ready=True
            )

    asyncio.run(call())


def _nats_server(running: RunningMesh) -> psutil.Process | None:
    """The nats-server process `mesh up` runs now (in a session of its own, still its child)."""
    children = psutil.Process(running.process.pid).children(recursive=True)
    return next((child for child in children if child.name() == "nats-server"), None)


def _listens_on(process: psutil.Process, port: int) -> bool:
    try:
        return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in process.net_connections("tcp"))
    except psutil.NoSuchProcess:
        return False


def _stored_event(running: RunningMesh, subject: str) -> bytes:
    async def read() -> bytes:
        client = await nats.connect(running.nats_url, **running.nats_login())
        try:
            message = await client.jetstream().get_last_msg(EVENT_STREAM, subject)
            return message.data or b""
        finally:
            await client.close()

    return asyncio.run(read())


def test_a_killed_nats_server_is_restarted_on_its_port_and_the_mesh_keeps_its_events(tmp_path):
    mesh = MeshDir(tmp_path)
    mesh.module("speaker", publishes=["greeting.sent"])
    mesh.module("listener", subscribes=["greeting.sent"], cls="Listener")
    with mesh.up() as running:
        modules = running.wait_until_up()
        speaker = modules["speaker"].address
        _say(running, speaker, "before")
        running.wait_for(lambda: ("heard", "before") in mesh.records(), "the listener to hear the first event")
        port = urlparse(running.nats_url).port
        assert port is not None
        killed = _nats_server(running)
        assert killed is not None and _listens_on(killed, port)

        # Held away, the server's users keep a restarted server from starting: NATS stays down
        # (and the supervisor keeps retrying) until the test has seen the health say so.
        config = mesh.state / "nats-access" / "server.conf"
        held = config.with_name("server.conf.held")
        config.rename(held)
        try:
            killed.kill()
            down = running.wait_for(
                lambda: (
                    (reply := _system_health(running)).status == UNHEALTHY
                    and getattr(_component(list(reply.components), "nats"), "status", None) == UNHEALTHY
                    and reply
                ),
                "the system health to name NATS as down",
            )
        finally:
            held.rename(config)
        assert "not connected to NATS" in _component(list(down.components), "nats").message

        restarted = running.wait_for(
            lambda: (
                (server := _nats_server(running)) is not None
                and server.pid != killed.pid
                and _listens_on(server, port)
                and server
            ),
            "a new nats-server on the same port",
        )
        assert restarted.pid != killed.pid

        def recovered() -> coordinator_pb2.GetSystemHealthResponse | None:
            reply = _system_health(running)
            modules_nats = [_component(list(module.components), "nats") for module in reply.modules]
            if reply.status == HEALTHY and all(c is not None and c.status == HEALTHY for c in modules_nats):
                return reply
            return None

        healthy = running.wait_for(recovered, "the mesh and every module's NATS component to be healthy again")
        assert "restarted 1 time" in _component(list(healthy.components), "nats").message
        assert _component(list(healthy.components), "jetstream").status == HEALTHY

        assert b"before" in _stored_event(running, event_subject("greeting.sent", None))
        _say(running, speaker, "after")
        running.wait_for(
            lambda: ("heard", "after") in mesh.records(), "the listener to hear an event after the restart"
        )
    assert "the embedded nats-server was ended by signal 9" in running.text


def test_a_connection_the_server_closes_with_an_error_reconnects_and_keeps_its_subscriptions():
    async def scenario() -> None:
        async with EmbeddedNats() as server:
            refusals: list[str] = []

            async def keep(error: Exception) -> None:
                refusals.append(str(error))

            health = NatsConnectionHealth()
            callbacks = health.callbacks()
            back = asyncio.Event()

            async def reconnected() -> None:
                await callbacks["reconnected_cb"]()
                back.set()

            client = ReconnectingClient()
            await client.connect(
                server.url,
                error_cb=keep,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.1,
                disconnected_cb=callbacks["disconnected_cb"],
                reconnected_cb=reconnected,
            )
            heard: asyncio.Queue[bytes] = asyncio.Queue()

            async def on_message(message: nats.aio.msg.Msg) -> None:
                await heard.put(message.data)

            await client.subscribe("still.here", cb=on_message)
            # A subject past the server's control line limit: the server answers -ERR and drops
            # the connection, which plain nats-py then closes for good.
            await client.publish("too.long." + "x" * 5000, b"")
            await asyncio.wait_for(back.wait(), WAIT_SECONDS)
            assert client.is_connected and health.reconnects == 1
            assert any("maximum control line" in refusal.lower() for refusal in refusals)
            assert health.component(client).status == HEALTHY
            await client.publish("still.here", b"after")
            assert await asyncio.wait_for(heard.get(), WAIT_SECONDS) == b"after"
            await client.close()

    asyncio.run(scenario())
