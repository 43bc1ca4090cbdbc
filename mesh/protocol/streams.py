"""JetStream provisioning: the event and dead-letter streams, the key-value buckets and the
durable consumers, created when missing and brought up to date, with the streams' settings
read from the environment.

In a mesh the coordinator provisions everything (a module's NATS identity may not: see
nats_access.py); a module run alone, against a NATS server nobody prepared, provisions what
it needs itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import nats.errors
import nats.js.errors
from nats.js import api

from mesh.protocol.errors import MeshError
from mesh.protocol.names import (
    BUCKET_HISTORY,
    CONFIG_BUCKET,
    DEAD_LETTER_STREAM,
    DEAD_LETTER_SUBJECT_PREFIX,
    EVENT_STREAM,
    EVENT_SUBJECT_PREFIX,
    FLAGS_BUCKET,
    MODULES_BUCKET,
    REPLAY_SUBJECT_PREFIX,
    pattern_subject,
    replay_subject,
)

PROVISIONING_SECONDS = 120.0
"""How long creating streams, buckets and consumers keeps retrying a JetStream that does not
answer yet (a new cluster electing its leaders, a loaded machine) before it gives up."""
DUPLICATE_WINDOW_SECONDS = 120.0
"""How long the server remembers event ids, so that a retried publish is stored once."""

_log = logging.getLogger("mesh.protocol.streams")

T = TypeVar("T")

# What a JetStream that is there but not ready yet answers: no reply in time, no server
# with JetStream yet, or "JetStream not available" while a cluster elects its leaders.
_NOT_READY = (
    TimeoutError,
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.js.errors.ServiceUnavailableError,
)


async def provisioned(what: str, work: Callable[[], Awaitable[T]], *, within: float = PROVISIONING_SECONDS) -> T:
    """Run an idempotent provisioning step, again while JetStream is not ready, until `within`.

    Raises:
        MeshError: MODULE_UNAVAILABLE naming `what` and the last error, when JetStream never
            answered in time; any other error of `work` at once.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    delay = 0.2
    while True:
        try:
            return await work()
        except _NOT_READY as error:
            if loop.time() + delay > deadline:
                raise MeshError(
                    "MODULE_UNAVAILABLE",
                    f"JetStream did not answer while {what} for {within:.0f} s: {error!r}; check that the "
                    "NATS servers run with JetStream (-js) and, in a cluster, that a majority of them is up",
                ) from error
            _log.info("JetStream not ready while %s (%r); trying again in %.1f s", what, error, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


def jetstream_replicas(env: Mapping[str, str]) -> int:
    """MESH_JETSTREAM_REPLICAS: copies of every stream and bucket (1-5; the cluster must be that large)."""
    value = env.get("MESH_JETSTREAM_REPLICAS", "1")
    if not value.isdigit() or not 1 <= int(value) <= 5:
        raise MeshError("INVALID_CONFIG", f"MESH_JETSTREAM_REPLICAS is {value!r}; expected 1 to 5")
    return int(value)


@dataclass(frozen=True)
class StreamSettings:
    """The event stream's retention, from MESH_EVENTS_RETENTION ("limits", the default:
    keep events until they are older than the max age; or "interest": drop an event once
    every consumer has acknowledged it) and MESH_EVENTS_MAX_AGE_SECONDS (default 7 days)."""

    retention: api.RetentionPolicy = api.RetentionPolicy.LIMITS
    max_age_seconds: float = 7 * 24 * 3600.0
    replicas: int = 1
    """Copies of each stream in a NATS cluster (MESH_JETSTREAM_REPLICAS; 3 in docker-compose)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> StreamSettings:
        retention = env.get("MESH_EVENTS_RETENTION", "limits").strip().lower()
        if retention not in ("limits", "interest"):
            raise MeshError(
                "INVALID_CONFIG", f"MESH_EVENTS_RETENTION is {retention!r}; expected 'limits' or 'interest'"
            )
        max_age = env.get("MESH_EVENTS_MAX_AGE_SECONDS", str(cls.max_age_seconds))
        try:
            seconds = float(max_age)
        except ValueError:
            seconds = -1.0
        if seconds < 0:
            raise MeshError(
                "INVALID_CONFIG", f"MESH_EVENTS_MAX_AGE_SECONDS is {max_age!r}; expected seconds >= 0 (0: forever)"
            )
        return cls(api.RetentionPolicy(retention), seconds, jetstream_replicas(env))


async def ensure_streams(js: Any, settings: StreamSettings | None = None) -> None:
    """Create the event and dead-letter streams, or bring their subjects and max age up to date."""
    settings = settings or StreamSettings.from_env(os.environ)
    for name, subjects, retention, max_age in (
        (
            EVENT_STREAM,
            [f"{EVENT_SUBJECT_PREFIX}.>", f"{REPLAY_SUBJECT_PREFIX}.>"],
            settings.retention,
            settings.max_age_seconds,
        ),
        (DEAD_LETTER_STREAM, [f"{DEAD_LETTER_SUBJECT_PREFIX}.>"], api.RetentionPolicy.LIMITS, 0.0),
    ):
        config = api.StreamConfig(
            name=name,
            subjects=subjects,
            retention=retention,
            storage=api.StorageType.FILE,
            max_age=max_age,
            num_replicas=settings.replicas,
            # NATS wants the dedupe window within the max age.
            duplicate_window=min(DUPLICATE_WINDOW_SECONDS, max_age) if max_age else DUPLICATE_WINDOW_SECONDS,
        )
        try:
            info = await js.stream_info(name)
        except nats.js.errors.NotFoundError:
            try:
                await js.add_stream(config)
            except nats.js.errors.BadRequestError:
                await js.stream_info(name)  # another process created it just now
            continue
        if info.config.retention != retention:
            _log.warning(
                "stream %s keeps retention %s; NATS cannot change it to %s after creation",
                name,
                info.config.retention,
                retention,
            )
            config.retention = info.config.retention
        if sorted(info.config.subjects or []) != sorted(subjects) or info.config.max_age != max_age:
            await js.update_stream(config)


async def streams_exist(js: Any) -> bool:
    """Whether the event and dead-letter streams are there (a read every module may do)."""
    for name in (EVENT_STREAM, DEAD_LETTER_STREAM):
        try:
            await js.stream_info(name)
        except nats.js.errors.NotFoundError:
            return False
    return True


async def provision_mesh(js: Any) -> None:
    """Everything the coordinator prepares before any module starts: the streams and the
    tenancy buckets, which modules read but may not create."""
    await provisioned("creating the event streams", lambda: ensure_streams(js))
    for bucket in (MODULES_BUCKET, FLAGS_BUCKET, CONFIG_BUCKET):
        await open_bucket(js, bucket)


@dataclass(frozen=True)
class ConsumerSettings:
    """A durable consumer of the event stream, as a handler needs it."""

    name: str
    patterns: Sequence[str]
    ack_wait_seconds: float
    max_ack_pending: int

    @property
    def filters(self) -> list[str]:
        """The handler's event subjects, and its own replay subject."""
        return [*(pattern_subject(pattern) for pattern in self.patterns), replay_subject(self.name)]


async def find_consumer(js: Any, consumer: ConsumerSettings) -> bool | None:
    """True when the consumer exists with the right filters, False when it exists with others,
    None when it does not exist."""
    try:
        info: api.ConsumerInfo = await js.consumer_info(EVENT_STREAM, consumer.name)
    except nats.js.errors.NotFoundError:
        return None
    return sorted(info.config.filter_subjects or []) == sorted(consumer.filters)


async def ensure_consumer(js: Any, consumer: ConsumerSettings, events_since: datetime | None) -> None:
    """Create a durable consumer, or bring its filters up to date (keeping its start position).

    Args:
        js: JetStream, with the right to create consumers.
        consumer: What the handler reads, and how.
        events_since: Where a new consumer starts (the mesh's start, so that events published
            before the module came up are still handled); None: only events from now on.
    """
    try:
        info: api.ConsumerInfo | None = await js.consumer_info(EVENT_STREAM, consumer.name)
    except nats.js.errors.NotFoundError:
        info = None
    if info is not None and sorted(info.config.filter_subjects or []) == sorted(consumer.filters):
        return
    config = api.ConsumerConfig(
        durable_name=consumer.name,
        name=consumer.name,
        ack_policy=api.AckPolicy.EXPLICIT,
        max_deliver=-1,  # dead-lettering is ours, so nothing is ever dropped silently
        ack_wait=consumer.ack_wait_seconds,
        filter_subjects=consumer.filters,
        max_ack_pending=consumer.max_ack_pending,
    )
    if info is not None:
        config.deliver_policy = info.config.deliver_policy
        config.opt_start_time = info.config.opt_start_time
    elif events_since is not None:
        config.deliver_policy = api.DeliverPolicy.BY_START_TIME
        config.opt_start_time = events_since
    else:
        config.deliver_policy = api.DeliverPolicy.NEW
    await js.add_consumer(EVENT_STREAM, config=config)


async def open_bucket(js: Any, name: str, *, ttl: float | None = None, history: int = BUCKET_HISTORY) -> Any:
    """A key-value bucket, created when missing (concurrent creators are fine), waiting for
    a JetStream that is not ready yet."""
    return await provisioned(f"opening the bucket {name}", lambda: _open_bucket(js, name, ttl, history))


async def _open_bucket(js: Any, name: str, ttl: float | None, history: int) -> Any:
    try:
        return await js.key_value(name)
    except (nats.js.errors.BucketNotFoundError, nats.js.errors.NotFoundError):
        pass
    try:
        config = api.KeyValueConfig(bucket=name, history=history, ttl=ttl, replicas=jetstream_replicas(os.environ))
        return await js.create_key_value(config)
    except nats.js.errors.BadRequestError:
        return await js.key_value(name)


def stamp(actor: str, **fields: Any) -> bytes:
    """A tenancy value: the fields plus who changed it and when (the audit trail)."""
    return json.dumps({**fields, "changed_by": actor or "unknown", "changed_at": time.time()}).encode()
