"""One module's lifecycle: state, transitions, hooks, health and the status it reports.

The gRPC servicer (`_lifecycle.py`) only translates calls; everything a transition does
happens here, serialized by one lock so that concurrent calls cannot interleave.

Nothing is closed under a running call: a Stop (and a Reload that re-initializes) first leaves
RUNNING, which turns health NOT_SERVING and has the gate refuse new calls of the module's own
services with UNAVAILABLE, then waits, within its grace period, for the calls and event
handlers in flight; only then do the stop hook and the closing of resources run. A module
whose initialize hook failed is not stopped: its stop hook would find nothing to close.

(Over 400 lines: the transitions and the health verdicts read and set the same state under
the same lock, so they stay one class.)
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from google.protobuf import duration_pb2, json_format, timestamp_pb2
from pydantic import BaseModel

from mesh.protocol.errors import MeshError
from mesh.protocol.manifest import Manifest
from mesh.protocol.states import Call, State, Verdict, illegal_message, verdict
from mesh.protocol.telemetry import configure_telemetry, is_configured
from mesh.protocol.transport import Transport
from mesh.v1 import health_pb2, lifecycle_pb2, module_pb2
from sdk._context import Context
from sdk._metrics import ModuleMetricsRecorder
from sdk._module import ComponentHealth, Health, HealthStatus, Module
from sdk._tenancy import TenantView
from sdk.events import DeliveryObserver, HandlerBinding, event_consumers
from sdk.runtime._config import validated_config
from sdk.runtime._gating import InFlightCalls
from sdk.runtime._origin import located
from sdk.runtime._resources import ModuleResources
from sdk.runtime._retarget import endpoints_only

DEFAULT_STOP_GRACE_SECONDS = 30.0
FAILED_INITIALIZE_CLOSE_SECONDS = 5.0
"""How long the tasks a failed initialize hook spawned get to end once cancelled."""
HEALTH_HOOK_TIMEOUT_SECONDS = 5.0

_log = logging.getLogger("sdk")

StateListener = Callable[[State, bool], Awaitable[None]]
"""Called after every state change and health check with (state, serving)."""


class ModuleRuntime:
    """Drives one module instance through its lifecycle."""

    def __init__(
        self,
        module: Module,
        manifest: Manifest,
        manifest_path: Path,
        recorder: ModuleMetricsRecorder,
        *,
        default_state_dir: Path,
        transport: Transport,
        handlers: list[HandlerBinding] | None = None,
    ) -> None:
        self.module = module
        self.manifest = manifest
        self.manifest_path = manifest_path
        self.recorder = recorder
        self.instance_id = uuid.uuid4().hex
        self.address = ""
        self.state = State.REGISTERED
        self.state_reason = ""
        self.error: module_pb2.ModuleError | None = None
        self.context: Context[Any] | None = None
        """The author's view of the current initialization; None outside one."""
        self._resources: ModuleResources[Any] | None = None
        self.delivery_observers: list[DeliveryObserver] = []
        """Told of every event delivery, across Reloads (the test harness waits on them)."""
        self.default_state_dir = default_state_dir
        """Where the module keeps state when the settings name no folder."""
        self._transport = transport
        self._handlers = handlers or []
        self._settings: lifecycle_pb2.ModuleSettings | None = None
        self._state_changed_at = _now()
        self._started_at: timestamp_pb2.Timestamp | None = None
        self._running_since: float | None = None
        self._last_health: Health | None = None
        self._last_checked: timestamp_pb2.Timestamp | None = None
        self._lock = asyncio.Lock()
        self._listeners: list[StateListener] = []
        self.calls = InFlightCalls()
        """The running calls of the module's own services (the server's gate counts them)."""
        recorder.active_workers = lambda: self._resources.active_workers if self._resources else 0

    def on_change(self, listener: StateListener) -> None:
        """Call `listener` after every state change and health verdict."""
        self._listeners.append(listener)

    @property
    def tenants(self) -> TenantView[Any] | None:
        """The tenant view of the current initialization (None without one, or without NATS)."""
        return self._resources.tenants if self._resources else None

    @property
    def serving(self) -> bool:
        """Whether grpc.health.v1 should answer SERVING: RUNNING and not UNHEALTHY."""
        unhealthy = self._last_health is not None and self._last_health.status is HealthStatus.UNHEALTHY
        return self.state is State.RUNNING and not unhealthy

    # --- transitions --------------------------------------------------------------

    async def initialize(self, settings: lifecycle_pb2.ModuleSettings) -> None:
        async with self._lock:
            if self._check(Call.INITIALIZE) is Verdict.ALREADY:
                if _same(settings, self._settings):
                    return
                raise MeshError(
                    "ILLEGAL_TRANSITION",
                    f"module {self.manifest.name} is already INITIALIZED with other settings; "
                    "use Reload to re-initialize it with new ones",
                    metadata={"module": self.manifest.name, "state": self.state.name},
                )
            config = self._validated_config(settings)
            await self._set_state(State.INITIALIZING)
            await self._run_initialize(config, settings)

    async def start(self) -> None:
        async with self._lock:
            if self._check(Call.START) is Verdict.ALREADY:
                return
            await self._set_state(State.STARTING)
            await self._run_hook("start", self.module.start())
            await self._start_events()
            self._started_at = _now()
            self._running_since = time.monotonic()
            self._last_health = None
            await self._set_state(State.RUNNING)

    async def stop(self, grace_seconds: float | None, reason: str = "") -> bool:
        """Stop the module; returns True when the grace period ran out and work was cancelled."""
        grace = DEFAULT_STOP_GRACE_SECONDS if grace_seconds is None else grace_seconds
        async with self._lock:
            if self._check(Call.STOP) is Verdict.ALREADY:
                return False
            _log.info("module %s stopping%s", self.manifest.name, f" ({reason})" if reason else "")
            await self._set_state(State.STOPPING)
            forced = await self._teardown(grace)
            self._running_since = None
            await self._set_state(State.STOPPED, reason)
            return forced

    async def reload(self, settings: lifecycle_pb2.ModuleSettings) -> None:
        """Re-initialize with new settings; when only dependencies' addresses changed, follow them.

        A re-initialization drains first, like a Stop (new calls get UNAVAILABLE, those in flight
        finish), rather than opening the new resources before closing the old: the hooks act on
        the one module instance, whose `initialize` replaces what `stop` would close, so the old
        generation cannot be stopped once the new one exists.
        """
        async with self._lock:
            self._check(Call.RELOAD)
            resources = self._resources
            if (
                resources is not None
                and self.state in (State.INITIALIZED, State.RUNNING)
                and endpoints_only(settings, self._settings)
            ):
                resources.retarget(settings.dependencies)
                self._settings = settings
                _log.info("module %s: dependencies moved; nothing re-initialized", self.manifest.name)
                return
            was_running = self.state is State.RUNNING
            config = self._validated_config(settings)  # invalid config: nothing changes
            await self._set_state(State.INITIALIZING, "reload")
            await self._teardown(DEFAULT_STOP_GRACE_SECONDS)
            await self._run_initialize(config, settings)
            if was_running:
                await self._set_state(State.STARTING, "reload")
                await self._run_hook("start", self.module.start())
                await self._start_events()
                self._running_since = self._running_since or time.monotonic()
                await self._set_state(State.RUNNING, "reload")

    async def _start_events(self) -> None:
        if self._resources is not None:
            await self._resources.events.start()

    def _check(self, call: Call) -> Verdict:
        found = verdict(call, self.state)
        if found is Verdict.ILLEGAL:
            raise MeshError(
                "ILLEGAL_TRANSITION",
                illegal_message(self.manifest.name, call, self.state),
                metadata={"module": self.manifest.name, "state": self.state.name, "call": call.value},
            )
        return found

    def _validated_config(self, settings: lifecycle_pb2.ModuleSettings) -> BaseModel:
        """The module's config model from the settings; INVALID_CONFIG names the field."""
        return validated_config(self.module.config_model, _config_data(settings), self.manifest.name)

    async def _run_initialize(self, config: BaseModel, settings: lifecycle_pb2.ModuleSettings) -> None:
        if not is_configured() and settings.telemetry.otel_env:
            configure_telemetry(
                service_name=self.manifest.name,
                service_version=self.manifest.version,
                instance_id=self.instance_id,
                module=self.manifest.name,
                extra_env=dict(settings.telemetry.otel_env),
            )
        try:
            resources: ModuleResources[Any] = await ModuleResources.open(
                module=self.module,
                manifest=self.manifest,
                manifest_path=self.manifest_path,
                settings=settings,
                config_model=self.module.config_model,
                base_config=_config_data(settings),
                handlers=self._handlers,
                recorder=self.recorder,
                observers=self.delivery_observers,
                transport=self._transport,
            )
        except MeshError as error:
            await self._fail("initialize", error.reason, error.message)
            raise
        except Exception as error:  # NATS refused the streams or consumers
            message = f"module {self.manifest.name} could not set up its event consumers: {error!r}"
            await self._fail("initialize", "MODULE_UNAVAILABLE", message)
            raise MeshError("MODULE_UNAVAILABLE", message, metadata={"module": self.manifest.name}) from error
        state_dir = Path(settings.state_dir) if settings.state_dir else self.default_state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        self._resources = resources
        self.context = Context(
            manifest=self.manifest,
            manifest_path=self.manifest_path,
            config=config,
            state_dir=state_dir,
            resources=resources,
            recorder=self.recorder,
        )
        try:
            await self._run_hook("initialize", self.module.initialize(self.context))
        except MeshError:
            # A module that did not initialize is not stopped: its stop hook would find
            # nothing of what initialize sets up. What the SDK opened for it is closed.
            self._resources, self.context = None, None
            await resources.close(FAILED_INITIALIZE_CLOSE_SECONDS)
            raise
        self._settings = settings
        self.error = None
        await self._set_state(State.INITIALIZED)

    async def _run_hook(self, phase: str, hook: Awaitable[None]) -> None:
        """Await a hook; if it raises, the module is FAILED and the caller gets the error."""
        began = time.monotonic()
        try:
            await hook
            self.recorder.record_lifecycle(phase, time.monotonic() - began)
        except MeshError as error:
            await self._fail(phase, error.reason, error.message)
            raise
        except Exception as error:
            message = (
                f"the {phase} hook of module {self.manifest.name} raised {type(error).__name__}: {error}"
                f"{located(error, self.manifest_path.parent)}"
            )
            _log.exception(message)
            await self._fail(phase, "HOOK_FAILED", message)
            raise MeshError("HOOK_FAILED", message, metadata={"module": self.manifest.name, "phase": phase}) from error

    async def _fail(self, phase: str, reason: str, message: str) -> None:
        self.error = module_pb2.ModuleError(reason=reason, message=message, phase=phase, time=_now())
        self._running_since = None
        await self._set_state(State.FAILED, message)

    async def _teardown(self, grace: float) -> bool:
        """Drain, run the stop hook, then close the context, all within `grace` seconds."""
        resources = self._resources
        if resources is None:
            return False
        deadline = time.monotonic() + grace
        if self.context is not None:
            self.context.stopping.set()  # streams that follow end now, rather than at the grace
        forced = await self._drain(resources, grace)
        self._resources, self.context = None, None
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), 0.0)):
                await self.module.stop()
        except TimeoutError:
            forced = True
            _log.warning("module %s: stop hook ran past its %.1f s grace; cancelled", self.manifest.name, grace)
        except Exception:
            # An error while stopping is reported, never allowed to block the stop.
            _log.exception("module %s: stop hook raised", self.manifest.name)
        return await resources.close(deadline - time.monotonic()) or forced

    async def _drain(self, resources: ModuleResources[Any], grace: float) -> bool:
        """Wait for the calls and event handlers in flight (no new ones come: the module has
        left RUNNING); returns True when some were still running after `grace` seconds."""
        calls_done, handlers_forced = await asyncio.gather(self.calls.wait_idle(grace), resources.events.drain(grace))
        if not calls_done:
            _log.warning("module %s: %d call(s) still running past the grace", self.manifest.name, self.calls.count)
        return handlers_forced or not calls_done

    async def _set_state(self, state: State, reason: str = "") -> None:
        self.state = state
        self.state_reason = reason
        self._state_changed_at = _now()
        await self._notify()

    async def _notify(self) -> None:
        for listener in self._listeners:
            await listener(self.state, self.serving)

    # --- health and status --------------------------------------------------------

    async def watch_health(self, interval_seconds: float) -> None:
        """Run the health hook every `interval_seconds` while RUNNING, so that the standard
        grpc.health.v1 status (what probes read) follows the module's own verdict."""
        while True:
            await asyncio.sleep(interval_seconds)
            if self.state is State.RUNNING:
                await self.check_health()

    async def check_health(self) -> health_pb2.ModuleHealth:
        """Run the module's health hook when it is RUNNING; otherwise derive health from state."""
        if self.state is State.RUNNING:
            self._last_health = await self._run_health_hook()
            self._last_checked = _now()
            await self._notify()
            verdict_ = self._last_health
        else:
            verdict_ = self._health_of_state()
        uptime = duration_pb2.Duration()
        if self._running_since is not None and self.state is State.RUNNING:
            uptime.FromNanoseconds(int((time.monotonic() - self._running_since) * 1e9))
        return health_pb2.ModuleHealth(
            name=self.manifest.name,
            status=verdict_.status.value,
            state=self.state.value,
            components=[_component_proto(c) for c in verdict_.components],
            last_checked=self._last_checked,
            uptime=uptime,
            message=verdict_.message,
        )

    async def _run_health_hook(self) -> Health:
        try:
            async with asyncio.timeout(HEALTH_HOOK_TIMEOUT_SECONDS):
                verdict_ = await self.module.health()
        except TimeoutError:
            return Health(
                HealthStatus.UNHEALTHY, message=f"health hook took longer than {HEALTH_HOOK_TIMEOUT_SECONDS} s"
            )
        except Exception as error:
            _log.exception("module %s: health hook raised", self.manifest.name)
            return Health(HealthStatus.UNHEALTHY, message=f"health hook raised {type(error).__name__}: {error}")
        if not isinstance(verdict_, Health):
            return Health(
                HealthStatus.UNHEALTHY, message=f"health hook returned {type(verdict_).__name__}, expected sdk.Health"
            )
        extra = self._runtime_components()
        if not extra:
            return verdict_
        worst = max(verdict_.status, *(component.status for component in extra))
        return Health(worst, verdict_.components + extra, verdict_.message)

    def _runtime_components(self) -> tuple[ComponentHealth, ...]:
        """What the SDK itself knows beside the module's hook: its failed background tasks, its
        outboxes (events waiting too long to be relayed) and its NATS connection."""
        failed = self._resources.failed_tasks if self._resources else {}
        tasks = tuple(
            ComponentHealth(name, HealthStatus.DEGRADED, message=f"background task failed: {error!r}")
            for name, error in failed.items()
        )
        outboxes = self.context.outbox_health() if self.context else ()
        nats = self._resources.nats_component() if self._resources else None
        return tasks + outboxes + ((nats,) if nats is not None else ())

    def _health_of_state(self) -> Health:
        if self.state is State.FAILED:
            message = self.error.message if self.error else "the module failed"
            return Health(HealthStatus.UNHEALTHY, message=message)
        if self.state in (State.STOPPING, State.STOPPED, State.SKIPPED):
            return Health(HealthStatus.UNHEALTHY, message=f"the module is {self.state.name}")
        return Health(HealthStatus.DEGRADED, message=f"the module is {self.state.name}, not RUNNING yet")

    def consumers(self) -> list[lifecycle_pb2.EventConsumer]:
        """The durable consumers of the module's handlers, which the coordinator creates."""
        return event_consumers(self.manifest.name, self._handlers)

    def status(self) -> module_pb2.ModuleStatus:
        """The module's status as mesh.v1 reports it."""
        return module_pb2.ModuleStatus(
            name=self.manifest.name,
            version=self.manifest.version,
            state=self.state.value,
            address=self.address,
            dependencies=self.manifest.to_proto().dependencies,
            description=self.manifest.description,
            state_reason=self.state_reason,
            error=self.error,
            state_changed_at=self._state_changed_at,
            started_at=self._started_at,
            instance_id=self.instance_id,
            pid=os.getpid(),
        )


def _config_data(settings: lifecycle_pb2.ModuleSettings) -> dict[str, Any]:
    """The configuration the coordinator resolved for the module, as plain data."""
    return json_format.MessageToDict(settings.config) if settings.HasField("config") else {}


def _same(a: lifecycle_pb2.ModuleSettings, b: lifecycle_pb2.ModuleSettings | None) -> bool:
    return b is not None and a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True)


def _component_proto(component: ComponentHealth) -> health_pb2.ComponentHealth:
    latency = duration_pb2.Duration()
    latency.FromNanoseconds(int(component.latency_ms * 1e6))
    return health_pb2.ComponentHealth(
        name=component.name, status=component.status.value, latency=latency, message=component.message
    )


def _now() -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp
