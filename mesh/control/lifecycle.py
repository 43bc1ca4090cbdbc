"""The one place where a call to a module's mesh.v1.Lifecycle and the change of its record's
state go together: the record says INITIALIZING while Initialize runs, INITIALIZED after it,
FAILED (with the error and the phase) when it fails, and so on for Start and Reload.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from opentelemetry import trace

from mesh.control.module_client import ModuleClient
from mesh.control.registry import ModuleRecord, Registry, now
from mesh.control.tenancy import config_schema
from mesh.protocol.errors import MeshError
from mesh.protocol.manifest import Manifest
from mesh.protocol.states import State
from mesh.protocol.transport import Transport
from mesh.v1 import lifecycle_pb2, module_pb2

T = TypeVar("T")

SettingsFor = Callable[[ModuleRecord, Mapping[str, Any] | None], lifecycle_pb2.ModuleSettings]
"""The settings a module gets at Initialize and Reload (extra configuration on top, or None)."""
Admit = Callable[[Manifest, Sequence[lifecycle_pb2.EventConsumer]], Awaitable[None]]
"""Gives a described module its NATS identity and creates its consumers, before Initialize."""

_log = logging.getLogger("mesh")
_tracer = trace.get_tracer("mesh.coordinator")


class ModuleLifecycle:
    """Drives one module at a time through Describe, Initialize, Start, Reload and Stop."""

    def __init__(
        self,
        registry: Registry,
        settings_for: SettingsFor,
        transport: Transport,
        *,
        admit: Admit,
        stop_grace_seconds: float,
    ) -> None:
        self._registry = registry
        self._admit = admit
        self._transport = transport
        self._settings_for = settings_for
        self._stop_grace_seconds = stop_grace_seconds

    def fail(self, record: ModuleRecord, phase: str, reason: str, message: str) -> None:
        """Mark `record` FAILED with an error naming the phase that failed."""
        error = module_pb2.ModuleError(reason=reason, message=message, phase=phase, time=now())
        self._registry.update(record, State.FAILED, message, error=error)

    async def _step(
        self,
        record: ModuleRecord,
        phase: str,
        during: State | None,
        call: Callable[[], Awaitable[T]],
        *,
        traced: bool = True,
    ) -> T:
        """Run one call with `record` in state `during`; a failure marks it FAILED in `phase`.

        A traced call gets a span of its own below the caller's (the start-up trace).
        """
        if during is not None:
            self._registry.update(record, during)
        try:
            if not traced:
                return await call()
            with _tracer.start_as_current_span(f"{phase} {record.name}", attributes={"mesh.module": record.name}):
                return await call()
        except MeshError as error:
            self.fail(record, phase, error.reason, error.message)
            raise

    async def describe(self, record: ModuleRecord) -> lifecycle_pb2.DescribeResponse:
        """Describe the module at `record.address` (its manifest, schema and consumers), as
        `bring_up` does first: `mesh up` describes every module before it brings up the first,
        to admit all their NATS users at once.

        Raises:
            MeshError: the call failed or the schema is invalid; the record is FAILED in "describe".
        """
        client = ModuleClient(record.name, record.address, self._transport)
        try:
            return await self._described(record, client)
        finally:
            await client.close()

    async def _described(self, record: ModuleRecord, client: ModuleClient) -> lifecycle_pb2.DescribeResponse:
        described = await self._step(record, "describe", None, client.describe, traced=False)
        record.manifest_proto = described.manifest
        if described.manifest.config_schema_json:  # refused now, not at its first tenant config
            await self._step(
                record, "describe", None, lambda: _checked_schema(described.manifest, record.name), traced=False
            )
        record.instance_id = described.status.instance_id or record.instance_id
        record.pid = described.status.pid or record.pid
        return described

    async def bring_up(self, record: ModuleRecord, described: lifecycle_pb2.DescribeResponse | None = None) -> None:
        """Describe (unless `described` is given), Initialize and Start the module at
        `record.address`, until it is RUNNING.

        Raises:
            MeshError: a call failed; the record is FAILED with the phase and the error.
        """
        client = ModuleClient(record.name, record.address, self._transport)
        try:
            if described is None:
                described = await self._described(record, client)
            consumers = described.consumers
            await self._step(record, "access", None, lambda: self._admit(record.manifest, consumers))
            settings = self._settings_for(record, None)
            await self._step(record, "initialize", State.INITIALIZING, lambda: client.initialize(settings))
            self._registry.update(record, State.INITIALIZED)
            await self._step(record, "start", State.STARTING, client.start)
            record.error = None
            self._registry.update(record, State.RUNNING)
        finally:
            await client.close()

    async def reload(self, record: ModuleRecord, extra_config: Mapping[str, Any] | None = None) -> None:
        """Reload one module with fresh settings.

        On failure its state is taken from the module itself: an invalid configuration
        changes nothing there, a failing hook leaves it FAILED.

        Raises:
            MeshError: the module refused or failed the reload.
        """
        client = ModuleClient(record.name, record.address, self._transport)
        previous = record.state
        self._registry.update(record, State.INITIALIZING, "reload")
        try:
            status = await client.reload(self._settings_for(record, extra_config))
            self._registry.update(record, State(status.state), "reloaded")
        except MeshError as error:
            try:
                state: int | None = (await client.describe()).status.state
            except MeshError:
                state = None
            if state is None or state == State.FAILED.value:
                self.fail(record, "reload", error.reason, error.message)
            else:
                self._registry.update(record, previous, f"reload refused: {error.message}")
            raise
        finally:
            await client.close()

    async def reload_dependents(self, record: ModuleRecord) -> None:
        """Tell the modules that depend on `record` its new address; their failures are only logged."""
        for name in record.dependents:
            dependent = self._registry.get(name)
            if dependent is None or dependent.state not in (State.RUNNING, State.INITIALIZED) or not dependent.address:
                continue
            try:
                await self.reload(dependent)
                _log.info("module %s reloaded with the new address of %s", name, record.name)
            except MeshError as error:
                _log.warning("module %s: reload with the new address of %s failed: %s", name, record.name, error)

    async def retarget_dependents(self, record: ModuleRecord) -> None:
        """Tell the modules that depend on `record` its new address, while they keep serving.

        The settings differ from their current ones only in this endpoint, and a module takes
        such a Reload in place (its client channels switch; no hook runs, nothing closes), so
        their state is not shown as reloading. Failures are only logged: the old address
        still answers until it has drained.
        """
        for name in record.dependents:
            dependent = self._registry.get(name)
            if dependent is None or dependent.state is not State.RUNNING or not dependent.address:
                continue
            client = ModuleClient(dependent.name, dependent.address, self._transport)
            try:
                await client.reload(self._settings_for(dependent, None))
                _log.info("module %s now calls %s at %s", name, record.name, record.address)
            except MeshError as error:
                _log.warning("module %s: the new address of %s was not taken: %s", name, record.name, error)
            finally:
                await client.close()

    async def ask_to_stop(self, name: str, address: str, reason: str) -> None:
        """The Stop call with the mesh's grace period; a failure is logged, never raised,
        because the process is ended after it either way."""
        client = ModuleClient(name, address, self._transport)
        try:
            reply = await client.stop(self._stop_grace_seconds, reason)
            if reply.forced:
                _log.warning("module %s: stop ran past its %.0f s grace", name, self._stop_grace_seconds)
        except MeshError as error:
            _log.warning("module %s: Stop failed: %s", name, error.message)
        finally:
            await client.close()


async def _checked_schema(manifest: module_pb2.Manifest, name: str) -> None:
    """The module's config_schema_json checked to be a JSON Schema (a step of bring-up)."""
    config_schema(manifest.config_schema_json, name)
