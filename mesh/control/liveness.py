"""Liveness: a module that no longer answers health is found and handed to whoever acts.

A process can be alive and still serve nobody: stopped (SIGSTOP), hung, its event loop
blocked. Its exit is never seen, so the supervisor's crash path never runs. Every RUNNING
module is asked the standard grpc.health.v1 Check (answered by grpc itself on the module's
event loop, never by the module's own health hook, which may be slow on purpose); a module
that misses several checks in a row is reported once, like Kubernetes' liveness probe
(period, timeout, failure threshold).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mesh.control.registry import ModuleRecord, Registry
from mesh.protocol.errors import MeshError
from mesh.protocol.states import State
from mesh.protocol.transport import Transport
from mesh.v1 import module_pb2

_log = logging.getLogger("mesh")

Unresponsive = Callable[[ModuleRecord, str], Awaitable[None]]
"""Told of a module that missed its checks, with a sentence saying how long it has not answered."""


@dataclass(frozen=True)
class LivenessSettings:
    """How a module's liveness is checked (the defaults tolerate a loaded 2-core machine:
    a module must be silent for about 20 s before anything is done to it)."""

    interval_seconds: float = 5.0
    timeout_seconds: float = 5.0
    misses: int = 3

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> LivenessSettings:
        """MESH_LIVENESS_INTERVAL_SECONDS, MESH_LIVENESS_TIMEOUT_SECONDS, MESH_LIVENESS_MISSES.

        Raises:
            MeshError: INVALID_CONFIG for a value that is not a positive number.
        """
        defaults = cls()
        return cls(
            interval_seconds=_positive(env, "MESH_LIVENESS_INTERVAL_SECONDS", defaults.interval_seconds),
            timeout_seconds=_positive(env, "MESH_LIVENESS_TIMEOUT_SECONDS", defaults.timeout_seconds),
            misses=int(_positive(env, "MESH_LIVENESS_MISSES", defaults.misses, whole=True)),
        )


def _positive(env: Mapping[str, str], name: str, default: float, *, whole: bool = False) -> float:
    text = env.get(name, "")
    if not text:
        return default
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        value = 0
    if not value > 0 or value == float("inf"):
        kind = "a whole number" if whole else "seconds"
        raise MeshError("INVALID_CONFIG", f"{name} is {text!r}; expected {kind} > 0 (default {default:g})")
    return value


class LivenessWatch:
    """Checks every RUNNING module with an address, and every FAILED registration (one whose
    process may be long gone), and reports those that stopped answering."""

    def __init__(
        self, registry: Registry, transport: Transport, settings: LivenessSettings, unresponsive: Unresponsive
    ) -> None:
        self._registry = registry
        self._transport = transport
        self._settings = settings
        self._unresponsive = unresponsive
        self._missed: dict[tuple[str, str], int] = {}
        """Checks missed in a row, by (module, address): a new process starts with none."""

    async def run(self) -> None:
        """Check forever, every interval (cancel to end)."""
        while True:
            await self.check_once()
            await asyncio.sleep(self._settings.interval_seconds)

    async def check_once(self) -> None:
        """One round: every RUNNING module checked at once; those past the threshold reported."""
        watched = [record for record in self._registry.records.values() if _watched(record)]
        answers = await asyncio.gather(*(self._answers(record.address) for record in watched))
        current = {(record.name, record.address) for record in watched}
        self._missed = {key: count for key, count in self._missed.items() if key in current}
        for record, answered in zip(watched, answers, strict=True):
            key = (record.name, record.address)
            if answered:
                self._missed.pop(key, None)
                continue
            self._missed[key] = self._missed.get(key, 0) + 1
            if self._missed[key] == self._settings.misses:
                silent = self._settings.misses * self._settings.interval_seconds
                reason = (
                    f"does not answer health at {record.address} ({self._settings.misses} checks in a row, "
                    f"about {silent:.0f} s): hung, stopped or overloaded"
                )
                _log.warning("module %s %s", record.name, reason)
                try:
                    await self._unresponsive(record, reason)
                except Exception:  # one module's trouble must not end the watch of the others
                    _log.exception("module %s: acting on its liveness failure failed", record.name)

    async def _answers(self, address: str) -> bool:
        """Whether the module at `address` answers grpc.health.v1 Check in time (any status:
        a NOT_SERVING answer still proves the process and its event loop are alive)."""
        try:
            async with self._transport.channel(address) as channel:
                await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=self._settings.timeout_seconds
                )
            return True
        except grpc.aio.AioRpcError as error:
            return error.code() not in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.UNAVAILABLE)


def _watched(record: ModuleRecord) -> bool:
    if not record.address:
        return False
    if record.origin == module_pb2.MODULE_ORIGIN_REGISTERED:
        return record.state in (State.RUNNING, State.FAILED)
    return record.state is State.RUNNING
