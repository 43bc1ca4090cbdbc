"""The event bus of one module instance, tied to its lifecycle: consumers provisioned at
Initialize, delivery while RUNNING, drained at Stop, publishing throughout.

Durable handlers read from the one JetStream event stream through their durable consumer
(pulled in batches of their concurrency); ephemeral handlers subscribe on core NATS in a
queue group per handler. Both hand each message to the one `Dispatcher.deliver`, inside
the tracing middleware's span, and act on its outcome: the durable path acks, naks with a
delay, or dead-letters; the ephemeral path has nothing to answer.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable
from datetime import datetime
from typing import Any

import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from mesh.protocol.cloudevents import ID_HEADER, TYPE_HEADER
from mesh.protocol.deadletters import bounded
from mesh.protocol.errors import MeshError
from mesh.protocol.manifest import Manifest
from mesh.protocol.names import EVENT_STREAM, consumer_name, dead_letter_subject, pattern_subject
from mesh.protocol.streams import ensure_streams, provisioned, streams_exist
from sdk._metrics import ModuleMetricsRecorder
from sdk.events._bindings import HandlerBinding
from sdk.events._consumers import consumer_settings, prepare_consumers
from sdk.events._dead_letters import dead_letter_headers
from sdk.events._delivery import Accepts, DeliveryObserver, DeliveryReport, Dispatcher, Outcome, Verdict
from sdk.events._publishing import Publisher
from sdk.events._tracing import EventTracing

_log = logging.getLogger("sdk.events")


class EventBus:
    """Publishing and handling for one module instance, tied to its lifecycle."""

    def __init__(
        self,
        *,
        nats_client: NatsClient | None,
        module: Any,
        manifest: Manifest,
        manifest_path: str,
        bindings: list[HandlerBinding],
        recorder: ModuleMetricsRecorder,
        events_since: datetime | None = None,
        provisioned_by_mesh: bool = False,
        accepts: Accepts | None = None,
        observers: list[DeliveryObserver] | None = None,
    ) -> None:
        self._nats = nats_client
        self._js = nats_client.jetstream() if nats_client else None
        self._name = manifest.name
        self._bindings = bindings
        self._recorder = recorder
        self._events_since = events_since
        self._provisioned_by_mesh = provisioned_by_mesh
        self._consumers = consumer_settings(self._name, bindings)
        self.accepts = accepts
        """Whether an event is for this module (its tenant enabled); others are acked and skipped."""
        self._observers = observers if observers is not None else []
        self._tracing = EventTracing(manifest.name)
        self._dispatcher = Dispatcher(module, manifest.name, recorder)
        self._publisher = Publisher(
            nats_client=nats_client,
            manifest=manifest,
            manifest_path=manifest_path,
            module=module,
            recorder=recorder,
            tracing=self._tracing,
        )
        self._workers: list[asyncio.Task[None]] = []
        self._subscriptions: list[Subscription] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self._ephemeral_busy = 0
        self._ephemeral_idle = asyncio.Event()
        self._ephemeral_idle.set()
        self._running = False

    # --- set-up -----------------------------------------------------------------

    async def prepare(self) -> None:
        """Create the streams and the durable consumers (at Initialize, so that no event
        published while the module starts is missed)."""
        if self._js is None:
            if self._bindings:
                raise MeshError(
                    "MODULE_UNAVAILABLE",
                    f"module {self._name} handles events but was given no NATS servers at Initialize",
                    metadata={"module": self._name},
                )
            return
        js = self._js
        if not self._provisioned_by_mesh:
            await provisioned("creating the event streams", lambda: ensure_streams(js))
        elif not await provisioned("looking up the event streams", lambda: streams_exist(js)):
            raise MeshError(
                "MODULE_UNAVAILABLE",
                f"module {self._name}: the event streams do not exist on the NATS it was given; the coordinator "
                "creates them at `mesh up`, so check that the module and the coordinator use the same NATS",
                metadata={"module": self._name},
            )
        await prepare_consumers(
            js,
            self._name,
            self._consumers,
            created_by_mesh=self._provisioned_by_mesh,
            events_since=self._events_since,
        )

    async def publish(
        self,
        event_type: str,
        payload: Any,
        *,
        tenant: str | None = None,
        company: str | None = None,
        subject: str | None = None,
        event_id: str | None = None,
        durable: bool = True,
    ) -> str:
        """Publish one event; returns its id. See `Context.publish`."""
        return await self._publisher.publish(
            event_type, payload, tenant=tenant, company=company, subject=subject, event_id=event_id, durable=durable
        )

    # --- delivery while RUNNING -------------------------------------------------

    async def start(self) -> None:
        """Begin delivering events to the handlers (after the module's start hook)."""
        if self._nats is None:
            return
        self._running = True
        for binding in self._bindings:
            if binding.ephemeral is not None:
                # one queue subscriber per concurrent handler: nats-py runs a subscription's
                # callbacks one at a time, and the queue group spreads events over them
                for _ in range(binding.ephemeral.concurrency):
                    self._subscriptions.append(
                        await self._nats.subscribe(
                            pattern_subject(binding.options.pattern),
                            queue=consumer_name(self._name, binding.method_name),
                            cb=functools.partial(self._on_ephemeral, binding),
                        )
                    )
            else:
                self._workers.append(asyncio.create_task(self._pull(binding), name=f"events:{binding.method_name}"))

    async def drain(self, grace_seconds: float) -> bool:
        """Stop taking events, let in-flight handlers finish within the grace period, then
        cancel them. Returns True when some had to be cancelled."""
        self._running = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(grace_seconds, 0.0)
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers.clear()
        forced = False
        try:
            await asyncio.wait_for(self._ephemeral_idle.wait(), timeout=max(deadline - loop.time(), 0.0))
        except TimeoutError:
            forced = True
        for subscription in self._subscriptions:  # cancels an ephemeral handler still running
            try:
                await subscription.unsubscribe()
            except nats.errors.Error as error:
                _log.warning("unsubscribing failed: %s", error)
        self._subscriptions.clear()
        if self._in_flight:
            _, pending = await asyncio.wait(set(self._in_flight), timeout=max(deadline - loop.time(), 0.0))
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            forced = forced or bool(pending)
        return forced

    def _track(self, work: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)
        return task

    async def _pull(self, binding: HandlerBinding) -> None:
        assert self._js is not None and binding.durable is not None
        name = consumer_name(self._name, binding.method_name)
        subscription = None
        while self._running:
            try:
                if subscription is None:
                    subscription = await self._js.pull_subscribe_bind(durable=name, stream=EVENT_STREAM)
                messages = await subscription.fetch(binding.durable.concurrency, timeout=1.0)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            except asyncio.CancelledError:
                raise
            except Exception as error:  # NATS away or the consumer gone: keep trying
                _log.warning(
                    "module %s: fetching events for %s failed: %s; retrying", self._name, binding.method_name, error
                )
                subscription = None
                await asyncio.sleep(1.0)
                continue
            handling = {self._track(self._on_durable(binding, message)) for message in messages}
            if handling:
                # asyncio.wait, not gather: cancelling this loop at Stop must leave the
                # in-flight handlers running, so that drain() can let them finish.
                await asyncio.wait(handling)

    # --- acting on one delivery's outcome ---------------------------------------

    async def _deliver(self, binding: HandlerBinding, message: Msg, attempt: int) -> Outcome:
        return await self._tracing.process(
            message,
            consumer_name(self._name, binding.method_name),
            attempt,
            lambda: self._dispatcher.deliver(binding, message, attempt, self.accepts),
        )

    async def _on_durable(self, binding: HandlerBinding, message: Msg) -> None:
        attempt = message.metadata.num_delivered if message.metadata else 1
        try:
            outcome = await self._deliver(binding, message, attempt)
        except asyncio.CancelledError:
            await _quietly(message.nak())
            raise
        except Exception as error:  # a message no delivery step foresaw: never a consumer stuck on it
            _log.exception("module %s: delivering to %s failed", self._name, binding.method_name)
            outcome = Outcome(Verdict.DEAD_LETTER, reason=f"undeliverable: {type(error).__name__}: {error}"[:1000])
        try:
            match outcome.verdict:
                case Verdict.RETRY:
                    await message.nak(delay=outcome.delay)
                case Verdict.DEAD_LETTER | Verdict.FAILED:
                    await self._dead_letter(binding, message, outcome.reason, attempt)
                case Verdict.ACK | Verdict.DROP | Verdict.SKIP:
                    await message.ack()
        except (nats.errors.Error, MeshError) as error:  # NATS away: the message comes back after ack_wait
            _log.warning("module %s: answering for event on %s failed: %s", self._name, message.subject, error)
            return
        self._report(binding, message, attempt, outcome)

    async def _dead_letter(self, binding: HandlerBinding, message: Msg, reason: str, attempt: int) -> None:
        """Move the message to the dead-letter stream with why (intact, unless too large for
        NATS with the reason added); then end its deliveries."""
        assert self._nats is not None
        consumer = consumer_name(self._name, binding.method_name)
        headers = dead_letter_headers(message, self._name, binding.method_name, consumer, reason, attempt)
        body, headers = bounded(message.data or b"", headers, self._nats.max_payload)
        await self._publisher.store(dead_letter_subject(consumer), body, headers)
        event_headers = message.headers or {}
        self._recorder.record_event(event_headers.get(TYPE_HEADER, "invalid"), "dead_lettered")
        _log.warning(
            "module %s: event %s dead-lettered from %s: %s",
            self._name,
            event_headers.get(ID_HEADER, "?"),
            binding.method_name,
            reason,
        )
        await message.term()

    async def _on_ephemeral(self, binding: HandlerBinding, message: Msg) -> None:
        # nats-py runs a subscription's callbacks one at a time in a task of its own, and
        # unsubscribing cancels that task: so drain() waits for this count to reach zero
        # before it unsubscribes, instead of starting a task per message.
        if not self._running:
            return  # at most once: an event arriving while the module stops is not handled
        self._ephemeral_busy += 1
        self._ephemeral_idle.clear()
        try:
            outcome = await self._deliver(binding, message, 1)  # at most once: every outcome is final
            self._report(binding, message, 1, outcome)
        except Exception:  # a message no delivery step foresaw: logged, and the next one is handled
            _log.exception("module %s: delivering to %s failed", self._name, binding.method_name)
        finally:
            self._ephemeral_busy -= 1
            if not self._ephemeral_busy:
                self._ephemeral_idle.set()

    def _report(self, binding: HandlerBinding, message: Msg, attempt: int, outcome: Outcome) -> None:
        if not self._observers:
            return
        headers = message.headers or {}
        report = DeliveryReport(
            binding.method_name, headers.get(ID_HEADER, ""), headers.get(TYPE_HEADER, ""), attempt, outcome
        )
        for observer in list(self._observers):
            observer(report)


async def _quietly(work: Awaitable[Any]) -> None:
    try:
        await work
    except Exception as error:
        _log.debug("ignored while cancelling: %s", error)
