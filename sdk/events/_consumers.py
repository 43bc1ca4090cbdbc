"""JetStream provisioning of a module's durable consumers: one per (module, handler),
shared by the module's replicas, so that each event is handled once per module.

A consumer is created at Initialize, before the module starts, so that no event published
meanwhile is missed; when it exists already its start position is kept and only its
filters are brought up to date.
"""

from __future__ import annotations

from datetime import datetime

import nats.js.errors
from nats.js import JetStreamContext, api

from mesh.protocol.names import EVENT_STREAM, consumer_name, pattern_subject, replay_subject
from sdk.events._options import Durable


async def ensure_consumer(
    js: JetStreamContext,
    module_name: str,
    handler_name: str,
    pattern: str,
    durable: Durable,
    events_since: datetime | None,
) -> None:
    """Create the durable consumer of one handler, or update its filters.

    Args:
        js: The module's JetStream context.
        module_name: The module's name.
        handler_name: The handler method's name.
        pattern: The event type pattern the handler subscribes to.
        durable: The handler's delivery settings.
        events_since: Where a new consumer starts (the mesh's start, so that events published
            before this module came up are still handled); None: only events from now on.
    """
    name = consumer_name(module_name, handler_name)
    filters = [pattern_subject(pattern), replay_subject(name)]
    try:
        info: api.ConsumerInfo | None = await js.consumer_info(EVENT_STREAM, name)
    except nats.js.errors.NotFoundError:
        info = None
    if info is not None and sorted(info.config.filter_subjects or []) == sorted(filters):
        return
    config = api.ConsumerConfig(
        durable_name=name,
        name=name,
        ack_policy=api.AckPolicy.EXPLICIT,
        max_deliver=-1,  # dead-lettering is ours, so nothing is ever dropped silently
        ack_wait=durable.ack_wait,
        filter_subjects=filters,
        max_ack_pending=max(durable.concurrency * 4, 16),
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
