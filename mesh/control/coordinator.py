"""The coordinator: the composition root of the control plane. It builds the parts —
registry, lifecycle calls, supervisor, registration, sequencer, NATS, the tenancy store,
the API servicers — wires them, and offers the operations the CLI and the API use.

    coordinator = Coordinator(config)
    plan = coordinator.prepare()        # validation; nothing has started yet
    await coordinator.start()           # NATS, the API, the modules; raises StartupFailed
    await coordinator.wait()            # until Shutdown, a signal, ...
    await coordinator.stop("mesh down") # reverse order, grace, then kill

`hurry()` during `stop` (a second Ctrl-C) gives up the grace: what still runs is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import grpc

from mesh.control import graph
from mesh.control.api import CoordinatorServicer, check_listen, serve
from mesh.control.config import ConfigError, MeshConfig, ModuleOverrides, load_config
from mesh.control.credentials import MeshCredentials
from mesh.control.events_api import EventsServicer
from mesh.control.failures import StartupFailed, ValidationFailed
from mesh.control.lifecycle import ModuleLifecycle
from mesh.control.nats_identities import NatsIdentities
from mesh.control.nats_supervisor import NatsSupervisor
from mesh.control.registration import Registration
from mesh.control.registry import ModuleRecord, Registry, describe_origin, now
from mesh.control.reports import failure_report
from mesh.control.sequencer import Sequencer
from mesh.control.settings import MeshEndpoints, ModuleSettingsSource
from mesh.control.statedir import StateDir
from mesh.control.supervisor import Supervisor
from mesh.control.sysevents import LifecycleEvents
from mesh.control.system import NatsHealth, SystemHealth
from mesh.control.tasks import BackgroundTasks
from mesh.control.tenancy import TenancyServicer, TenancyStore
from mesh.control.validation import RemoteManifests, describe_remote_modules, validate
from mesh.protocol.errors import MeshError
from mesh.protocol.manifest import Manifest
from mesh.protocol.nats_server import EmbeddedNats
from mesh.protocol.states import State
from mesh.protocol.streams import provision_mesh
from mesh.v1 import module_pb2

__all__ = ["Coordinator", "StartupFailed", "StopSummary", "ValidationFailed"]


@dataclass(frozen=True)
class StopSummary:
    """What `Coordinator.stop` did."""

    modules: int
    """How many modules were stopped (modules that never ran are not counted)."""
    killed: int
    """How many of their processes were killed at once, after `hurry`."""


class Coordinator:
    """One mesh's control plane; implements `operations.MeshOperations` for the API."""

    def __init__(self, config: MeshConfig, *, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.env = dict(os.environ if env is None else env)
        self.registry = Registry()
        self.state_dir = StateDir(config.state_dir.resolve())
        self.credentials = MeshCredentials(self.state_dir.pki, self.env, insecure=config.insecure)
        transport = self.credentials.transport
        self.plan: graph.Plan | None = None
        self.shutdown_requested = asyncio.Event()
        self.shutdown_reason = ""
        self._endpoints = MeshEndpoints()
        self.nats_identities = NatsIdentities(
            self.state_dir.nats_access,
            embedded=not config.nats_url,
            credentials_dir=config.nats_credentials,
            enforced=not config.insecure,
        )
        self._settings = ModuleSettingsSource(
            config, self.registry, self.state_dir, self._endpoints, self.env, self.nats_identities.module_login
        )
        self._lifecycle = ModuleLifecycle(
            self.registry,
            self._settings.settings_for,
            transport,
            admit=self.nats_identities.admit,
            stop_grace_seconds=config.stop_grace_seconds,
        )
        self._tasks = BackgroundTasks()
        self._supervisor = Supervisor(
            self.registry,
            self._lifecycle,
            self.state_dir,
            self._tasks,
            transport,
            env=self.env,
            module_env=self.credentials.module_env,
            ready_timeout_seconds=config.ready_timeout_seconds,
        )
        self._registration = Registration(
            self.registry, self._lifecycle, self._tasks, ready_timeout_seconds=config.ready_timeout_seconds
        )
        self._sequencer = Sequencer(
            self.registry,
            self._lifecycle,
            self._supervisor,
            self._registration,
            admit_ahead=self.nats_identities.admit_ahead,
        )
        self._events = LifecycleEvents()
        self._embedded_nats: EmbeddedNats | None = None
        self.nats_supervisor: NatsSupervisor | None = None
        self._nats_watch: asyncio.Task[None] | None = None
        self._server: grpc.aio.Server | None = None

    @property
    def address(self) -> str:
        """Where the coordinator's API is reached ("host:port"), once started."""
        return self._endpoints.address

    @property
    def nats_url(self) -> str:
        """The mesh's NATS servers, once started."""
        return self._endpoints.nats_url

    # --- validation --------------------------------------------------------------------

    async def describe_remote_modules(self) -> dict[str, tuple[Manifest, str]]:
        """Ask each statically listed remote module for its manifest (before validation)."""
        if not self.config.remote:
            return {}
        self.credentials.issue_own()
        return await describe_remote_modules(self.config.remote, self.credentials.transport)

    def prepare(self, remote_manifests: RemoteManifests | None = None) -> graph.Plan:
        """Discover the modules and decide what runs; raises ValidationFailed.

        Args:
            remote_manifests: Modules running elsewhere: name -> (manifest, address).
        """
        validated = validate(self.config, self.env, remote_manifests or {})
        for record in validated.records:
            self.registry.add(record)
            if record.name in validated.plan.skipped:
                self.registry.update(record, State.SKIPPED, validated.plan.skipped[record.name])
        self.plan = validated.plan
        return validated.plan

    # --- start ---------------------------------------------------------------------------

    def claim(self) -> None:
        """Take the state folder and check the coordinator's port, before anything starts, so
        that a second `mesh up` of a running mesh is refused at once.

        Raises:
            StateDirLocked: another coordinator holds the state folder.
            OSError: the state folder cannot be made, or the port is taken.
        """
        self.state_dir.lock()
        try:
            check_listen(self.config.listen)
        except OSError:
            self.state_dir.unlock()
            raise

    async def start(self) -> None:
        """Take the state folder, start NATS and the API, then bring every module up.

        Raises:
            StartupFailed: a critical module failed (everything started is stopped again).
        """
        if self.plan is None:
            raise RuntimeError("call prepare() before start()")
        self.state_dir.lock()
        self.state_dir.make_folders()
        self._supervisor.start_zygote()  # imports while NATS and the API start
        self.credentials.issue_own()
        if not self.config.insecure:
            self._tasks.start(self.credentials.renew_forever(), name="renew certificates")
        self._start_nats()
        if self._embedded_nats is not None:
            # A task of its own, not a background task: it must outlive the modules' stop.
            self.nats_supervisor = NatsSupervisor(self._embedded_nats)
            self._nats_watch = asyncio.create_task(self.nats_supervisor.watch(), name="nats-server supervision")
        await self._events.connect(self.nats_url, self.nats_identities.coordinator_login().connect_options())
        jetstream = self._events.jetstream()
        await provision_mesh(jetstream)
        self._endpoints.events_since = now()
        self.nats_identities.attach(jetstream, self._endpoints.events_since.ToDatetime(tzinfo=UTC), self._embedded_nats)
        self.registry.listen(self._events.on_change)
        self._supervisor.restart_listeners.append(self._events.on_restart)
        for record in self.registry.records.values():
            if record.state is State.SKIPPED:
                self._events.on_change(record, State.REGISTERED)
        await self._serve_api()
        self.state_dir.write_info(
            address=self.address,
            nats_url=self.nats_url,
            tls=not self.config.insecure,
            credentials="" if self.config.insecure else str(self.credentials.admin_dir),
        )
        result = await self._sequencer.bring_up(
            self.plan, external=self.config.external_modules, coordinator_address=self.address
        )
        if result.aborted_by is not None:
            lines = self._sequencer.abort_report(result)
            await self.stop("start-up aborted")
            raise StartupFailed(lines)
        self._supervisor.watch_liveness()

    def _start_nats(self) -> None:
        if self.config.nats_url:
            self._endpoints.nats_url = self.config.nats_url
            return
        # Started from the main thread, so that Linux can end it with this process.
        self._embedded_nats = EmbeddedNats(
            data_dir=self.state_dir.nats,
            log_file=self.state_dir.logs / "nats-server.log",
            die_with_parent=True,
            extra_args=self.nats_identities.server_args(),
        )
        self._endpoints.nats_url = self._embedded_nats.start()

    async def _serve_api(self) -> None:
        config = self.config
        transport = self.credentials.transport
        health = SystemHealth(
            self.registry,
            transport,
            timeout=config.health_timeout_seconds,
            cache_seconds=config.health_cache_seconds,
            infrastructure=NatsHealth(self._events.connection(), self.nats_supervisor),
        )
        tenancy = TenancyServicer(
            self.registry, TenancyStore(self._events.jetstream()), config.module_config, self._events.publish_json
        )
        self._server, self._endpoints.address = await serve(
            config.listen,
            CoordinatorServicer(self, health, transport, metrics_timeout_seconds=config.health_timeout_seconds),
            transport,
            tenancy=tenancy,
            events=EventsServicer(self._events.connection),
        )

    def failure_reports(self) -> list[list[str]]:
        """For each module that failed by its own error, the lines that explain it (see
        `reports.failure_report`); modules that only did not run for another's failure have
        their reason in their state already."""
        return [failure_report(record) for record in self.registry.records.values() if record.error is not None]

    # --- operations on one module (mesh.v1.Coordinator) -----------------------------------

    def record_of(self, name: str) -> ModuleRecord:
        """The record of `name`; raises MeshError MODULE_NOT_FOUND."""
        return self.registry.require(name)

    async def reload_module(self, name: str, extra_config: Mapping[str, Any] | None = None) -> ModuleRecord:
        """Re-initialize one module in place with freshly resolved configuration: the mesh
        configuration file is read again, and `extra_config` goes on top."""
        record = self.record_of(name)
        _require_reachable(record)
        if self.config.config_file is not None:
            try:
                fresh = load_config(self.config.config_file, env=self.env)
            except ConfigError as error:
                raise MeshError("INVALID_CONFIG", str(error), metadata={"module": name}) from None
            self.config.modules[name] = fresh.modules.get(name, ModuleOverrides())
        await self._lifecycle.reload(record, extra_config)
        return record

    async def restart_module(self, name: str) -> ModuleRecord:
        """Replace one module's process (new code), then initialize and start it."""
        record = self.record_of(name)
        if record.origin != module_pb2.MODULE_ORIGIN_LOCAL:
            raise MeshError(
                "MODULE_UNAVAILABLE",
                f"module '{name}' runs outside this coordinator ({describe_origin(record)}); restart it where it runs",
                metadata={"module": name},
            )
        _require_not_skipped(record)
        await self._supervisor.replace_process(record)
        return record

    async def register_module(
        self, address: str, manifest: Manifest, manifest_proto: module_pb2.Manifest, instance_id: str
    ) -> ModuleRecord:
        """Add a module started outside the coordinator, then bring it up in the background."""
        return await self._registration.register(address, manifest, manifest_proto, instance_id)

    async def deregister_module(self, name: str, instance_id: str, force: bool) -> ModuleRecord:
        """Remove a registered module (only that instance, when `instance_id` is set)."""
        return self._registration.deregister(name, instance_id, force)

    # --- stop ----------------------------------------------------------------------------

    def request_shutdown(self, reason: str) -> None:
        """Ask `wait` to return (the Shutdown call)."""
        self.shutdown_reason = reason
        self.shutdown_requested.set()

    async def wait(self) -> None:
        """Until a shutdown is asked for (Shutdown call, signal)."""
        await self.shutdown_requested.wait()

    def hurry(self) -> None:
        """Have the `stop` under way end now: no more grace, every module process still
        running is killed (what a second Ctrl-C asks for)."""
        self._supervisor.hurry()

    async def stop(self, reason: str) -> StopSummary:
        """Stop every module in reverse dependency order, then the API and NATS."""
        await self._supervisor.stop_supervising()
        await self._tasks.cancel_all()
        stopped = await self._sequencer.stop_all(reason)
        await self._supervisor.close_zygote()
        if self._server is not None:
            await self._server.stop(grace=1.0)
            self._server = None
        await self._events.close()
        if self._nats_watch is not None:
            self._nats_watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._nats_watch
            self._nats_watch = None
        if self._embedded_nats is not None:
            await asyncio.to_thread(self._embedded_nats.stop)
            self._embedded_nats = None
        self.state_dir.unlock()
        return StopSummary(modules=stopped, killed=self._supervisor.killed_in_hurry)


def _require_not_skipped(record: ModuleRecord) -> None:
    if record.state is State.SKIPPED:
        raise MeshError(
            "MODULE_SKIPPED",
            f"module '{record.name}' is skipped: {record.state_reason}",
            metadata={"module": record.name},
        )


def _require_reachable(record: ModuleRecord) -> None:
    _require_not_skipped(record)
    if not record.address:
        raise MeshError(
            "MODULE_UNAVAILABLE",
            f"module '{record.name}' has no address ({record.state.name}); restart it first",
            metadata={"module": record.name},
        )
