"""Events over a real nats-server: typed round trips, the wire format, durable delivery,
redelivery and dead letters, events that lie about their subject, ephemeral delivery,
lifecycle-aware handling, reconnects."""

from __future__ import annotations

import asyncio
import json

import grpc
import nats
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shop.events import OrderCreated, Ping

from conftest import PROJECT
from mesh.control.dlq import SHOWN_BYTES, list_dead_letters, replay, shown_data
from mesh.control.tenancy import TenancyStore
from mesh.protocol import deadletters
from mesh.protocol.names import EVENT_STREAM, consumer_name, event_subject, replay_subject
from mesh.protocol.nats_limits import MAX_STORED_HEADER_BYTES, check_subject, header_size, message_size
from mesh.v1 import lifecycle_pb2
from sdk import MeshError
from sdk.testing import eventually

FIXTURES = PROJECT / "tests" / "fixtures" / "modules"
SHOP = FIXTURES / "shop"
LEDGER = FIXTURES / "ledger"


async def enable_for(nats_url: str, tenant: str, module: str) -> None:
    client = await nats.connect(nats_url)
    await TenancyStore(client.jetstream()).set_enabled(tenant, module, True, "test")
    await client.close()


async def event_counts(harness, event_type: str, ready):
    """The module's counts of `event_type` if `ready(counts)` holds, else None."""
    metrics = (await harness.lifecycle.GetMetrics(lifecycle_pb2.GetMetricsRequest())).metrics
    counts = {entry.type: entry.counts for entry in metrics.event_types}.get(event_type)
    return counts if counts is not None and ready(counts) else None


async def order_created_counts(harness, ready):
    """The module's order.created event counts if `ready(counts)` holds, else None."""
    return await event_counts(harness, "order.created", ready)


async def consumer_info_once_it_sees_an_event(js, consumer: str):
    """The durable consumer's info once an event is pending for it or was delivered, else None."""
    info = await js.consumer_info(EVENT_STREAM, consumer)
    return info if info.num_pending + info.delivered.consumer_seq > 0 else None


async def test_a_typed_round_trip_with_the_tenant_in_the_subject(module_harness, mesh_nats):
    plain = await nats.connect(mesh_nats.url)
    seen = []

    async def keep(message) -> None:
        seen.append(message)

    await plain.subscribe("mesh.evt.>", cb=keep)
    await plain.flush()  # the server has the subscription before anything is published
    async with module_harness(LEDGER) as ledger, module_harness(SHOP) as shop:
        await enable_for(mesh_nats.url, "acme", "ledger")
        await eventually(lambda: ledger.context.tenants.is_enabled("acme"), "ledger enabled for acme")
        event_id = await shop.module.ctx.publish(
            "order.created", OrderCreated(order_id="o-1", amount=250), tenant="acme", subject="o-1"
        )
        await eventually(lambda: ledger.module.booked, "the order to be booked")
        await eventually(lambda: ledger.module.audited, "the order to be audited")
        await eventually(lambda: seen, "a plain subscriber to see the event")
    await plain.close()

    assert ledger.module.booked == [OrderCreated(order_id="o-1", amount=250)]
    assert ledger.module.audited == [("order.created", "acme", event_id)]
    message = seen[0]
    assert message.subject == "mesh.evt.acme.order.created"
    assert message.headers["ce-id"] == event_id
    assert message.headers["ce-type"] == "order.created"
    assert message.headers["ce-source"] == "mesh://shop"
    assert message.headers["ce-specversion"] == "1.0"
    assert message.headers["ce-tenant"] == "acme"
    assert message.headers["ce-subject"] == "o-1"
    assert message.headers["ce-time"]
    assert message.headers["content-type"] == "application/json"
    assert json.loads(message.data) == {"order_id": "o-1", "amount": 250}


async def test_a_pattern_subscription_sees_every_matching_type(module_harness):
    async with module_harness(LEDGER) as ledger, module_harness(SHOP) as shop:
        await shop.module.ctx.publish("order.cancelled", {"order_id": "o-2", "reason": "changed mind"})
        await shop.module.ctx.publish("order.created", {"order_id": "o-3", "amount": 1})
        # book and audit pull independently: wait for both before the harness stops them
        audited = await eventually(
            lambda: len(ledger.module.audited) == 2 and ledger.module.booked and ledger.module.audited,
            "two audits and one booking",
        )
    assert sorted(kind for kind, _, _ in audited) == ["order.cancelled", "order.created"]
    assert [order.order_id for order in ledger.module.booked] == ["o-3"]


async def test_undeclared_types_and_wrong_payloads_are_refused_at_the_call(module_harness):
    async with module_harness(SHOP) as shop:
        with pytest.raises(MeshError) as undeclared:
            await shop.module.ctx.publish("invoice.paid", {"id": 1})
        assert undeclared.value.reason == "UNDECLARED_EVENT"
        assert f"{SHOP / 'module.toml'} does not declare" in undeclared.value.message
        with pytest.raises(MeshError) as wrong:
            await shop.module.ctx.publish("order.created", Ping(n=1))
        assert wrong.value.reason == "INVALID_EVENT" and "must be OrderCreated" in wrong.value.message
        with pytest.raises(MeshError) as invalid:
            await shop.module.ctx.publish("order.created", {"order_id": "x"})
        assert invalid.value.reason == "INVALID_EVENT" and "amount" in invalid.value.message
        with pytest.raises(MeshError) as too_large:
            await shop.module.ctx.publish("signal.ping", {"n": 1}, subject="x" * (2 * 1024 * 1024))
        assert too_large.value.reason == "INVALID_EVENT" and "max_payload" in too_large.value.message
        with pytest.raises(MeshError) as bad_tenant:
            await shop.module.ctx.publish("signal.ping", {"n": 1}, tenant="a.b")
        assert bad_tenant.value.reason == "INVALID_EVENT"


def nosy_module(tmp_path, code: str, events: str = "", package: str = "nosy"):
    """A module `nosy` in folder `package` (a name not imported before) with `code` as
    module.py and `events` as its [events] table."""
    from sdk import load_module

    folder = tmp_path / package
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    manifest = 'name = "nosy"\nversion = "1.0.0"\n[run]\nentry = "module:Nosy"\n'
    (folder / "module.toml").write_text(manifest + (f"[events]\n{events}\n" if events else ""))
    (folder / "module.py").write_text(code)
    return load_module(folder)


def test_a_handler_of_an_undeclared_type_fails_at_start(tmp_path):
    from mesh.protocol.transport import Transport
    from sdk.runtime import ModuleServer

    code = """
import sdk


class Nosy(sdk.Module):
    @sdk.on("order.created")
    async def see(self, event: dict) -> None:
        pass
"""
    with pytest.raises(MeshError) as raised:
        ModuleServer(nosy_module(tmp_path, code), transport=Transport(None))
    assert raised.value.reason == "UNDECLARED_EVENT"
    assert "handler see of module nosy handles 'order.created'" in raised.value.message


@pytest.mark.parametrize(
    ("package", "models", "reason", "advice"),
    [
        (
            "undeclared_model",
            '{"order.created": Order, "order.shipped": Order}',
            "UNDECLARED_EVENT",
            "add it to [events] publishes",
        ),
        ("untyped_model", '{"order.created": dict}', "INVALID_EVENT", "use a pydantic model class"),
    ],
)
def test_event_models_are_checked_against_the_manifest_at_start(tmp_path, package, models, reason, advice):
    from mesh.protocol.transport import Transport
    from sdk.runtime import ModuleServer

    code = f"""
from typing import ClassVar

from pydantic import BaseModel

import sdk


class Order(BaseModel):
    order_id: str


class Nosy(sdk.Module):
    event_models: ClassVar = {models}
"""
    with pytest.raises(MeshError) as raised:
        ModuleServer(nosy_module(tmp_path, code, 'publishes = ["order.created"]', package), transport=Transport(None))
    assert raised.value.reason == reason
    assert "Nosy.event_models" in raised.value.message and advice in raised.value.message


async def test_a_failing_handler_is_redelivered_then_dead_lettered_and_can_be_replayed(module_harness, mesh_nats):
    async with module_harness(LEDGER) as ledger, module_harness(SHOP) as shop:
        bad_id = await shop.module.ctx.publish("order.created", OrderCreated(order_id="neg", amount=-5))
        invalid_id = await shop.module.ctx.publish("signal.ping", {"n": 1}, event_id="not-an-order")
        client = await nats.connect(mesh_nats.url)
        js = client.jetstream()
        # an invalid payload on the order.created subject, published by hand
        await js.publish(
            "mesh.evt._.order.created",
            b'{"order_id": "x", "amount": "lots"}',
            headers={
                "ce-id": "garbled",
                "ce-type": "order.created",
                "ce-source": "test",
                "ce-specversion": "1.0",
                "Nats-Msg-Id": "garbled",
            },
        )
        await js.publish("mesh.evt._.order.created", b"{}", headers={"Nats-Msg-Id": "headerless"})

        async def dlq_messages():
            return await list_dead_letters(client, module="ledger")

        expected = {bad_id, "garbled", "(none)"}

        async def book_letters_by_id():
            """book's dead letters by event id, once all three of this test's are there."""
            letters = [m for m in await dlq_messages() if m.headers.get("mesh-dlq-handler") == "book"]
            found = {m.headers.get("ce-id", "(none)"): m for m in letters}
            return found if expected <= set(found) else None

        by_id = await eventually(
            book_letters_by_id, "book's dead letters of the failing, garbled and headerless events"
        )
        assert set(by_id) == expected, by_id.keys()
        failing = by_id[bad_id]
        assert failing.headers["mesh-dlq-deliveries"] == "3"
        assert "ValueError: negative amount -5 (after 3 deliveries)" in failing.headers["mesh-dlq-reason"]
        assert failing.headers["mesh-dlq-module"] == "ledger"
        assert failing.headers["mesh-dlq-subject"] == "mesh.evt._.order.created"
        assert json.loads(failing.data) == {"order_id": "neg", "amount": -5}
        assert ledger.module.attempts["neg"] == 3
        assert by_id["garbled"].headers["mesh-dlq-deliveries"] == "1"
        assert "payload does not validate" in by_id["garbled"].headers["mesh-dlq-reason"]
        assert "not a valid event: missing header(s) ce-id" in by_id["(none)"].headers["mesh-dlq-reason"]

        # a dead letter is stored before the handler counts it: wait for the counts
        created = await eventually(
            lambda: order_created_counts(
                ledger, lambda c: c.redelivered >= 2 and c.failed >= 3 and c.dead_lettered >= 2
            ),
            "the metrics to count the redeliveries, failures and dead letters",
        )
        assert created.redelivered >= 2 and created.dead_lettered >= 2
        assert created.failed == 3  # final: the three events of book are all dead letters
        assert invalid_id == "not-an-order"

        ledger.module.fail_negative = False
        await replay(client, failing.seq, keep=False)
        await eventually(lambda: any(o.order_id == "neg" for o in ledger.module.booked), "the replayed order")
        remaining = [letter.event.id for letter in await dlq_messages()]
        assert bad_id not in remaining
        await client.close()


def forged(event_id: str, event_type: str, tenant: str = "") -> dict[str, str]:
    """The headers of an event as a raw NATS client would send them, claiming what it likes."""
    claims = {"ce-tenant": tenant} if tenant else {}
    return {
        "ce-id": event_id,
        "ce-type": event_type,
        "ce-source": "test",
        "ce-specversion": "1.0",
        "Nats-Msg-Id": event_id,
        **claims,
    }


async def test_an_event_that_disagrees_with_its_subject_is_never_handled(module_harness, mesh_nats):
    order = b'{"order_id": "forged", "amount": 1}'
    async with module_harness(LEDGER) as ledger:
        client = await nats.connect(mesh_nats.url)
        js = client.jetstream()
        await js.publish("mesh.evt.acme.order.created", order, headers=forged("tenant-lie", "order.created", "globex"))
        await js.publish("mesh.evt._.order.created", order, headers=forged("type-lie", "order.paid"))
        await js.publish("mesh.evt._.order.created", order, headers=forged("no-tenant-lie", "order.created", "_"))
        await client.publish("mesh.evt.acme.signal.ping", b'{"n": 1}', headers=forged("ping-lie", "signal.ping", "x"))

        expected = {(i, h) for i in ("tenant-lie", "type-lie", "no-tenant-lie") for h in ("book", "audit")}

        async def letters_by_id_and_handler():
            letters = {
                (m.headers.get("ce-id"), m.headers.get("mesh-dlq-handler")): m
                for m in await list_dead_letters(client, module="ledger")
            }
            return letters if expected <= set(letters) else None

        letters = await eventually(letters_by_id_and_handler, "the forged events among the dead letters")
        tenant_lie = letters[("tenant-lie", "book")].headers
        assert tenant_lie["mesh-dlq-deliveries"] == "1"  # dead-lettered at once: no retry makes it true
        assert (
            "disagrees with its subject mesh.evt.acme.order.created: the subject says tenant 'acme', "
            "ce-tenant says 'globex'" in tenant_lie["mesh-dlq-reason"]
        )
        assert (
            "the subject says type 'order.created', ce-type says 'order.paid'"
            in (letters[("type-lie", "audit")].headers["mesh-dlq-reason"])
        )
        assert (
            "the subject says no tenant, ce-tenant says '_'"
            in (letters[("no-tenant-lie", "book")].headers["mesh-dlq-reason"])
        )

        ping_failed = await eventually(
            lambda: event_counts(ledger, "signal.ping", lambda c: c.failed >= 1), "the forged ping to count as failed"
        )
        assert ping_failed.received == 0
        assert ledger.module.booked == [] and ledger.module.audited == [] and ledger.module.pings == []
        await client.close()


async def test_a_replayed_dead_letter_of_a_tenant_is_handled_as_the_tenant_s(module_harness, mesh_nats):
    async with module_harness(LEDGER) as ledger, module_harness(SHOP) as shop:
        await enable_for(mesh_nats.url, "acme", "ledger")
        await eventually(lambda: ledger.context.tenants.is_enabled("acme"), "ledger enabled for acme")
        order = OrderCreated(order_id="acme-neg", amount=-1)
        bad_id = await shop.module.ctx.publish("order.created", order, tenant="acme")
        client = await nats.connect(mesh_nats.url)

        async def book_letter():
            letters = await list_dead_letters(client, module="ledger")
            return next((m for m in letters if m.event.id == bad_id and m.headers["mesh-dlq-handler"] == "book"), None)

        letter = await eventually(book_letter, "the acme order among the dead letters")
        ledger.module.fail_negative = False
        await replay(client, letter.seq, keep=False)  # on mesh.replay.ledger--book: no tenant in that subject
        await eventually(lambda: ledger.module.booked, "the replayed order")
        await client.close()
    assert ledger.module.booked == [order]
    assert ("order.created", "acme", bad_id) in ledger.module.audited


async def test_ephemeral_handlers_get_core_nats_events(module_harness):
    async with module_harness(LEDGER) as ledger, module_harness(SHOP) as shop:
        for n in range(5):
            await shop.module.ctx.publish("signal.ping", Ping(n=n), durable=False)
        await eventually(lambda: len(ledger.module.pings) == 5, "five pings")
    assert sorted(ledger.module.pings) == [0, 1, 2, 3, 4]


async def test_handlers_run_only_while_running_and_stop_drains_them(module_harness):
    async with (
        module_harness(LEDGER, start=False, config={"handle_seconds": 0.5}) as ledger,
        module_harness(SHOP) as shop,
    ):
        await ledger.initialize()
        await shop.module.ctx.publish("order.created", OrderCreated(order_id="early", amount=1))
        # the consumers exist from Initialize; their delivered count covers all the time
        # before Start, so "nothing delivered" needs no waiting for something not to happen
        client = await nats.connect(ledger.nats_url)
        js = client.jetstream()
        for handler in ("book", "audit"):
            consumer = consumer_name("ledger", handler)
            info = await eventually(
                lambda consumer=consumer: consumer_info_once_it_sees_an_event(js, consumer),
                f"{consumer} to see the early order",
            )
            assert info.delivered.consumer_seq == 0, f"{consumer} delivered before Start: {info}"
        await client.close()
        assert ledger.module.booked == [] and ledger.module.audited == []
        await ledger.start()
        await eventually(lambda: ledger.module.booked, "the early order once RUNNING")
        await shop.module.ctx.publish("order.created", OrderCreated(order_id="slow", amount=2))
        await eventually(lambda: "slow" in ledger.module.attempts, "the slow order to be taken")
        reply = await ledger.stop(grace_seconds=10)
        assert not reply.forced
        assert [order.order_id for order in ledger.module.booked] == ["early", "slow"]


async def test_a_handler_can_ask_to_retry_later_or_to_drop(module_harness):
    async with module_harness(LEDGER) as ledger, module_harness(SHOP) as shop:
        ledger.module.fail_negative = False
        await shop.module.ctx.publish("order.created", OrderCreated(order_id="dropped", amount=-999))
        await shop.module.ctx.publish("order.created", OrderCreated(order_id="later", amount=-7))
        await shop.module.ctx.publish("order.created", OrderCreated(order_id="kept", amount=7))
        await eventually(lambda: sorted(o.order_id for o in ledger.module.booked) == ["kept", "later"], "two orders")
        # the drop counted too means all three are done with: the counts below are final
        created = await eventually(
            lambda: order_created_counts(ledger, lambda c: c.dropped >= 1), "the dropped order to be counted"
        )
    assert ledger.module.attempts["later"] == 2  # retried once, as asked
    assert created.dropped == 1
    assert created.failed == 0
    assert created.dead_lettered == 0


async def test_the_module_cache_keeps_values_with_a_time_to_live_and_reports_its_hit_rate(module_harness):
    async with module_harness(LEDGER) as ledger:
        cache = ledger.context.cache
        await cache.set("order:1", b"booked")
        await cache.set("short", b"soon gone", ttl=0.2)
        await cache.set("any key / with spaces", b"x")
        assert await cache.get("order:1") == b"booked"
        assert await cache.get("any key / with spaces") == b"x"
        await asyncio.sleep(0.3)
        assert await cache.get("short") is None
        await cache.delete("order:1")
        assert await cache.get("order:1") is None
        assert await cache.get("never-set") is None
        metrics = (await ledger.lifecycle.GetMetrics(lifecycle_pb2.GetMetricsRequest())).metrics
    assert metrics.custom["cache_hit_rate"] == pytest.approx(100 * 2 / 5)


ORIGIN = "mesh-origin-subject"
"""The header in which a dead letter, and so its replay, says where it was first delivered."""


async def test_a_replay_is_checked_against_the_subject_its_dead_letter_was_first_delivered_on(
    module_harness, mesh_nats
):
    order = b'{"order_id": "forged", "amount": 1}'
    to_book = replay_subject(consumer_name("ledger", "book"))
    async with module_harness(LEDGER) as ledger:
        client = await nats.connect(mesh_nats.url)
        js = client.jetstream()
        # replays published by hand on book's replay subject, claiming what they like
        await js.publish(to_book, order, headers=forged("no-origin", "order.created"))
        origin_lie = {**forged("origin-lie", "order.created", "globex"), ORIGIN: "mesh.evt.acme.order.created"}
        await js.publish(to_book, order, headers=origin_lie)
        other_type = {**forged("other-type", "order.paid"), ORIGIN: "mesh.evt._.order.paid"}
        await js.publish(to_book, order, headers=other_type)
        await js.publish(to_book, order, headers={**forged("no-event-subject", "order.created"), ORIGIN: to_book})
        # a lie dead-lettered on its first delivery, with an origin of its own invention
        laundered = {**forged("laundered", "order.created", "globex"), ORIGIN: "mesh.evt.globex.order.created"}
        await js.publish("mesh.evt.acme.order.created", order, headers=laundered)

        async def book_letters(ids: set[str]):
            """book's dead letters by event id (the latest of each) once all of `ids` are there."""
            letters = {
                m.headers.get("ce-id"): m
                for m in await list_dead_letters(client, module="ledger")
                if m.headers.get("mesh-dlq-handler") == "book"
            }
            return letters if ids <= set(letters) else None

        forged_ids = {"no-origin", "origin-lie", "other-type", "no-event-subject", "laundered"}
        letters = await eventually(lambda: book_letters(forged_ids), "the forged replays among book's dead letters")
        reasons = {event_id: letters[event_id].headers["mesh-dlq-reason"] for event_id in forged_ids}
        replay_on = f"replay on {to_book}: "
        assert reasons["no-origin"].startswith(f"{replay_on}it names no event subject it was first delivered on")
        assert reasons["origin-lie"].startswith(
            f"{replay_on}event disagrees with its subject mesh.evt.acme.order.created: the subject says tenant "
            "'acme', ce-tenant says 'globex'"
        )
        assert reasons["other-type"].startswith(
            f"{replay_on}it says it was first delivered on mesh.evt._.order.paid, but handler book subscribes to "
            "'order.created', not to 'order.paid'"
        )
        assert reasons["no-event-subject"].startswith(f"{replay_on}it says it was first delivered on '{to_book}'")
        assert all(letters[event_id].headers["mesh-dlq-deliveries"] == "1" for event_id in forged_ids)
        first = letters["laundered"]
        assert first.headers[ORIGIN] == "mesh.evt.acme.order.created"  # where it came from, not what it said

        await replay(client, first.seq, keep=False)

        async def replayed_letter():
            letter = (await book_letters({"laundered"}) or {}).get("laundered")
            return letter if letter is not None and letter.seq != first.seq else None

        again = await eventually(replayed_letter, "the replayed lie among book's dead letters again")
        assert again.subject == to_book and again.headers[ORIGIN] == "mesh.evt.acme.order.created"
        assert again.reason.startswith(
            f"{replay_on}event disagrees with its subject mesh.evt.acme.order.created: the subject says tenant "
            "'acme', ce-tenant says 'globex'"
        )
        await client.close()
        assert ledger.module.booked == []


async def test_a_key_or_subject_too_long_for_nats_is_refused_and_the_connection_stays(module_harness):
    # nats-server closes a connection whose protocol line exceeds 4096 bytes: a 5,000-character
    # sku (hex-encoded into a cache key of 10,000) must fail one call, not cut the module off.
    async with module_harness(LEDGER) as ledger, module_harness(SHOP) as shop:
        cache = ledger.context.cache
        for attempt in (cache.set("stock._." + "s" * 5000, b"1"), cache.get("é" * 5000), cache.delete("k" * 5000)):
            with pytest.raises(MeshError) as refused:
                await attempt
            assert refused.value.status == grpc.StatusCode.INVALID_ARGUMENT
            assert "cache key" in refused.value.message and len(refused.value.message) < 400
        with pytest.raises(MeshError) as long_subject:
            await shop.module.ctx.publish("signal.ping", {"n": 1}, tenant="t" * 5000)
        assert long_subject.value.status == grpc.StatusCode.INVALID_ARGUMENT and len(long_subject.value.message) < 400
        with pytest.raises(MeshError) as subject_checked:  # what publish checks every subject with
            check_subject(event_subject("signal.ping", "t") + ".x" * 1500, "the subject")
        assert subject_checked.value.status == grpc.StatusCode.INVALID_ARGUMENT
        assert "NATS takes at most 2048" in subject_checked.value.message
        # the same connections still work
        await cache.set("stock._.sku-1", b"2")
        assert await cache.get("stock._.sku-1") == b"2"
        await shop.module.ctx.publish("signal.ping", {"n": 2})


@settings(derandomize=True, deadline=None, max_examples=200)
@given(
    body=st.one_of(st.binary(max_size=5000), st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n)),
    original=st.dictionaries(st.text(min_size=1, max_size=20), st.text(max_size=3000), max_size=30),
    reason=st.text(max_size=6000),
    max_payload=st.integers(8 * 1024, 64 * 1024),
)
def test_any_dead_letter_fits_nats_and_shows_bounded(body, original, reason, max_payload):
    given_up = deadletters.GivenUp(reason, "m", "h", "m--h", "1", "mesh.evt._.a.b", "t")
    headers = deadletters.headers_of(original, given_up, sequence=1)
    kept_body, kept = deadletters.bounded(body, headers, max_payload)
    assert message_size(kept_body, kept) <= max_payload and header_size(kept) <= MAX_STORED_HEADER_BYTES
    assert kept["mesh-dlq-reason"] == reason[: deadletters.REASON_LIMIT]
    assert (kept_body, kept) == (body, headers) or kept[deadletters.TRUNCATED_HEADER] == str(len(body))
    shown = json.dumps(shown_data(body))
    assert len(shown) < 6 * SHOWN_BYTES
