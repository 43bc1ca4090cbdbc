"""The channel behind `ctx.client`: one per dependency, presenting the module's current
certificate.

A gRPC channel's TLS credentials are fixed when it is made, and it presents them again at
every reconnect; once the coordinator has renewed the module's certificate (by rewriting its
credentials files) and the old one has expired, a reconnect with the old channel would fail.
Modules keep the stubs `ctx.client` gave them for the whole initialization, so the stubs
cannot be swapped: the channel under them is. Each call looks at the key file (one `stat`)
and, once it was rewritten, dials a new channel with the renewed credentials; the old one
finishes its calls in flight and is closed.

The same swap follows a dependency to a new address (`retarget`, at a Reload that changes only
dependency endpoints): the stubs already handed out call the new address from their next call on.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import grpc

from mesh.protocol.pki import KEY_FILE
from mesh.protocol.transport import Transport

RETIRE_GRACE_SECONDS = 60.0
"""How long a replaced channel may finish the calls it has in flight before it is closed."""

RETRY_UNAVAILABLE = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{}],
                "retryPolicy": {
                    "maxAttempts": 5,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)
"""gRPC's own retry policy for calls to a dependency: UNAVAILABLE is what a draining module
answers before its handler runs, and what a connection refused by a process being replaced
gives, so the call is tried again (about 1.5 s in all) instead of failing the caller. gRPC
retries only calls whose response has not begun; a call cut off by a crash after its handler
ran but before it answered can therefore arrive twice, as at-least-once delivery allows
(drained stops never cut calls off)."""


class RenewingChannel(grpc.aio.Channel):
    """A channel to `address` that re-dials once the transport's credentials were renewed, or
    once it is pointed at another address.

    Args:
        transport: How the module dials (its credentials folder, or plaintext).
        address: The "host:port" to reach.
        interceptors: Client interceptors for every channel it dials.
    """

    def __init__(self, transport: Transport, address: str, *, interceptors: Sequence[Any] = ()) -> None:
        self._transport = transport
        self._address = address
        self._interceptors = list(interceptors)
        self._stamp = (0, 0)
        self._stamp = self._key_stamp()
        self._channel = self._dial()
        self._retiring: dict[grpc.aio.Channel, asyncio.Task[None]] = {}

    def current(self) -> grpc.aio.Channel:
        """The channel to use now: a new one once the credentials were renewed."""
        if self._transport.secure:
            stamp = self._key_stamp()
            if stamp != self._stamp:
                self._stamp = stamp
                self._redial()
        return self._channel

    @property
    def address(self) -> str:
        """The "host:port" new calls go to."""
        return self._address

    def retarget(self, address: str) -> None:
        """Send new calls to `address`; calls in flight finish on the old channel, which is
        closed once they have (or after RETIRE_GRACE_SECONDS)."""
        if address != self._address:
            self._address = address
            self._redial()

    def _redial(self) -> None:
        """A new channel for new calls; the old one is retired in the background."""
        old, self._channel = self._channel, self._dial()
        task = asyncio.get_running_loop().create_task(old.close(RETIRE_GRACE_SECONDS))
        self._retiring[old] = task
        task.add_done_callback(lambda _: self._retiring.pop(old, None))

    def _dial(self) -> grpc.aio.Channel:
        options = [("grpc.service_config", RETRY_UNAVAILABLE), ("grpc.enable_retries", 1)]
        return self._transport.channel(self._address, interceptors=self._interceptors, options=options)

    def _key_stamp(self) -> tuple[int, int]:
        """Changes when the key file is replaced; `Credentials.write` replaces it last, so the
        certificate beside it is the renewed one by then."""
        if self._transport.folder is None:
            return (0, 0)
        try:
            stat = os.stat(self._transport.folder / KEY_FILE)
        except OSError:
            return self._stamp  # mid-rewrite: keep the channel we have
        return (stat.st_ino, stat.st_mtime_ns)

    # --- grpc.aio.Channel ---------------------------------------------------------------
    # Each multicallable looks up the current channel at each call, so a stub made once
    # keeps working across renewals.

    # Generated stubs also pass `_registered_method`; whatever they pass goes through as is.
    def unary_unary(self, method: str, *args: Any, **options: Any) -> Any:
        return _Redialing(self, lambda channel: channel.unary_unary(method, *args, **options), follows_moves=True)

    def unary_stream(self, method: str, *args: Any, **options: Any) -> Any:
        return _Redialing(self, lambda channel: channel.unary_stream(method, *args, **options))

    def stream_unary(self, method: str, *args: Any, **options: Any) -> Any:
        return _Redialing(self, lambda channel: channel.stream_unary(method, *args, **options))

    def stream_stream(self, method: str, *args: Any, **options: Any) -> Any:
        return _Redialing(self, lambda channel: channel.stream_stream(method, *args, **options))

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self.current().get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self.current().wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await self.current().channel_ready()

    async def close(self, grace: float | None = None) -> None:
        """Close the current channel and any replaced one still finishing its calls."""
        for old, task in list(self._retiring.items()):
            task.cancel()
            await old.close(None)
        await self._channel.close(grace)

    async def __aenter__(self) -> RenewingChannel:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        await self.close(None)


class _Redialing:
    """A multicallable that calls through the channel current at the time of the call.

    `follows_moves`: a unary call refused UNAVAILABLE on a channel that was replaced meanwhile
    is made once more on the current one (see `_FollowingCall`).
    """

    def __init__(
        self, owner: RenewingChannel, make: Callable[[grpc.aio.Channel], Any], *, follows_moves: bool = False
    ) -> None:
        self._owner = owner
        self._make = make
        self._follows_moves = follows_moves
        self._bound_to: grpc.aio.Channel | None = None
        self._callable: Any = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        channel = self._owner.current()
        call = self.callable_on(channel)(*args, **kwargs)
        return _FollowingCall(self, channel, call, args, kwargs) if self._follows_moves else call

    def callable_on(self, channel: grpc.aio.Channel) -> Any:
        if channel is not self._bound_to:
            self._callable = self._make(channel)
            self._bound_to = channel
        return self._callable

    @property
    def owner(self) -> RenewingChannel:
        return self._owner


_FOLLOWED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
"""How the old process of a moved dependency ends a call it will not serve: refused while it
drains (UNAVAILABLE), or still queued when its server shut down (CANCELLED, by the server: a
cancellation by this side is a CancelledError, never this)."""


class _FollowingCall:
    """A unary call that follows its dependency to a new address.

    A call sent just before a restart moved the dependency can reach the old process after it
    began to drain, which refuses it with UNAVAILABLE (gRPC's retries go to the same old
    address, so they are refused too), or cancels it as its server shuts down. Such a call,
    ended so on a channel that has since been replaced, is made once more on the current
    channel, at the new process. Everything else a
    call offers (metadata, code, cancel) is the current attempt's.
    """

    def __init__(self, multicallable: _Redialing, channel: grpc.aio.Channel, call: Any, args: Any, kwargs: Any) -> None:
        self._multicallable = multicallable
        self._channel = channel
        self._call = call
        self._args = args
        self._kwargs = kwargs

    def __await__(self) -> Any:
        return self._result().__await__()

    async def _result(self) -> Any:
        try:
            return await self._call
        except grpc.aio.AioRpcError as error:
            current = self._multicallable.owner.current()
            if error.code() not in _FOLLOWED or current is self._channel:
                raise
            self._channel = current
            self._call = self._multicallable.callable_on(current)(*self._args, **self._kwargs)
            return await self._call

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)
