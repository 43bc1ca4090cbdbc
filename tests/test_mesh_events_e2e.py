"""Events in a running mesh, end to end: lifecycle events on NATS, module events flowing
between module processes with nothing lost at start-up, and mesh.v1.Events for services
that do not speak NATS (publish, dead letters, replay; no event that lies about its
attributes). Real processes, real nats-server."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal

import grpc
import nats
import pytest

from conftest import PROJECT
from mesh.protocol.errors import error_info
from mesh.v1 import coordinator_pb2, event_pb2, event_pb2_grpc
from meshkit import MeshDir
from sdk import State

pytestmark = pytest.mark.e2e

FIXTURES = PROJECT / "tests" / "fixtures" / "modules"


def booked_ids(mesh: MeshDir) -> set[str]:
    """The event ids the ledger booked, from the record file's complete lines (a module may
    be writing the last one right now)."""
    text = mesh.record_file.read_text()
    lines = text[: text.rfind("\n") + 1].splitlines()
    return {line.split()[1] for line in lines if line.startswith("book ")}


def test_lifecycle_events_are_published_on_nats(tmp_path):
    mesh = MeshDir(tmp_path)
    mesh.module("base")
    with mesh.up() as running:
        before = running.wait_until_up()["base"]
        nats_url = json.loads((mesh.state / "coordinator.json").read_text())["nats_url"]

        async def crash_restart_and_listen() -> list[tuple[str, str]]:
            client = await nats.connect(nats_url, **running.nats_login())
            seen: list[tuple[str, str]] = []
            wanted: set[tuple[str, str]] = set()
            done = asyncio.Event()

            async def handle(message) -> None:
                seen.append((message.subject, message.headers["ce-type"]))
                if wanted <= set(seen):
                    done.set()

            async def until_seen(*events: str) -> None:
                done.clear()
                wanted.clear()
                wanted.update((f"mesh.sys.module.base.{event}", f"module.{event}") for event in events)
                if wanted <= set(seen):
                    return
                await asyncio.wait_for(done.wait(), timeout=60)

            await client.subscribe("mesh.sys.>", cb=handle)
            await client.flush()
            # A crash: the module fails, is started again, and that counts as a restart.
            os.kill(before.pid, signal.SIGKILL)
            await until_seen("failed", "started", "restarted")
            # A restart on request: the new process starts beside the old one, so the module
            # itself never stops; only its restart is told.
            seen.clear()
            await asyncio.to_thread(mesh.run_cli, "restart", "base", "--coordinator", running.address)
            await until_seen("restarted")
            await client.close()
            return seen

        seen = asyncio.run(crash_restart_and_listen())
    assert [subject for subject, _ in seen] == ["mesh.sys.module.base.restarted"]


def test_events_flow_between_modules_of_a_mesh(tmp_path):
    mesh = MeshDir(tmp_path)
    for name in ("shop", "ledger"):
        shutil.copytree(FIXTURES / name, mesh.modules / name)
    mesh.write_config('[modules.shop.config]\nburst = 50\nprefix = "meshed"\n')
    with mesh.up() as running:
        modules = running.wait_until_up()
        assert {State(m.state) for m in modules.values()} == {State.RUNNING}
        # the shop published while the ledger may still have been starting: none is lost
        booked = running.wait_for(
            lambda: booked_ids(mesh) >= {f"meshed-{n}" for n in range(50)}, "the ledger to book all 50 orders"
        )
        assert booked

        def counted() -> bool:
            metrics = running.call(lambda stub: stub.GetSystemMetrics(coordinator_pb2.GetSystemMetricsRequest()))
            return metrics.events.published >= 50 and metrics.events.received >= 100  # book and audit

        running.wait_for(counted, "the system metrics to count 50 published and 100 received events")


def test_services_without_nats_publish_and_replay_dead_letters_over_grpc(tmp_path):
    mesh = MeshDir(tmp_path)
    shutil.copytree(FIXTURES / "ledger", mesh.modules / "ledger")
    shutil.copytree(FIXTURES / "shop", mesh.modules / "shop")
    with mesh.up() as running:
        running.wait_until_up()

        def events(method: str, request):
            async def call():
                async with running.channel() as channel:
                    return await getattr(event_pb2_grpc.EventsStub(channel), method)(request, timeout=30)

            return asyncio.run(call())

        good = event_pb2.Event(
            type="order.created", source="mesh://billing-service", data=b'{"order_id": "g-1", "amount": 5}'
        )
        published = events("Publish", event_pb2.PublishRequest(event=good))
        assert published.subject == "mesh.evt._.order.created" and published.id
        running.wait_for(lambda: published.id in booked_ids(mesh), "the ledger to book it")

        with pytest.raises(grpc.aio.AioRpcError) as malformed:
            events("Publish", event_pb2.PublishRequest(event=event_pb2.Event(type="OrderCreated", source="x")))
        assert malformed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "event type 'OrderCreated'" in malformed.value.details()

        bad = event_pb2.Event(
            type="order.created", source="mesh://billing-service", data=b'{"order_id": "b-1", "amount": -3}'
        )
        bad_id = events("Publish", event_pb2.PublishRequest(event=bad)).id

        def dead():
            letters = events("ListDeadLetters", event_pb2.ListDeadLettersRequest(module="ledger")).dead_letters
            return [letter for letter in letters if letter.event.id == bad_id and letter.handler == "book"]

        letter = running.wait_for(dead, "the bad event among the dead letters")[0]
        assert letter.deliveries == 3 and "negative amount -3" in letter.reason
        assert letter.event.source == "mesh://billing-service" and letter.event.data == bad.data
        replayed = events("ReplayDeadLetter", event_pb2.ReplayDeadLetterRequest(seq=letter.seq))
        assert replayed.dead_letter.event.id == bad_id
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            events("ReplayDeadLetter", event_pb2.ReplayDeadLetterRequest(seq=letter.seq))
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND


def test_an_event_published_over_grpc_cannot_lie_about_its_attributes(tmp_path):
    mesh = MeshDir(tmp_path)
    with mesh.up() as running:
        running.wait_until_up()

        async def publish(event: event_pb2.Event) -> event_pb2.PublishResponse:
            async with running.channel() as channel:
                stub = event_pb2_grpc.EventsStub(channel)
                return await stub.Publish(event_pb2.PublishRequest(event=event), timeout=30)

        def refused(event: event_pb2.Event) -> str:
            """Why Publish refused `event`, once that was INVALID_EVENT."""
            with pytest.raises(grpc.aio.AioRpcError) as error:
                asyncio.run(publish(event))
            assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            info = error_info(error.value)
            assert info is not None and info.reason == "INVALID_EVENT"
            return error.value.details()

        def order(tenant: str, **fields) -> event_pb2.Event:
            return event_pb2.Event(type="order.created", source="mesh://billing-service", tenant=tenant, **fields)

        with running.subjects("mesh.evt.>") as seen:
            for name in ("tenant", "id", "source", "type", "traceparent"):
                details = refused(order("liar", extensions={name: "forged"}))
                assert f"extension '{name}' collides with the CloudEvents attribute" in details
            malformed = refused(order("liar", extensions={"Not-A-Name": "x"}))
            assert "extension 'Not-A-Name' is not a CloudEvents attribute name" in malformed
            assert "tenant '_' is reserved for \"no tenant\"" in refused(order("_"))
            # published after the refused ones on the coordinator's one connection: once it
            # is seen, anything refused that had been published would have been seen before it
            honest = asyncio.run(publish(order("honest", extensions={"priority": "high"})))
            running.wait_for(lambda: honest.subject in seen, "the honest event on NATS")
        assert seen == ["mesh.evt.honest.order.created"]
