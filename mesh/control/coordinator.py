"""The coordinator: discover modules, validate the graph, spawn the processes, bring the
modules up in dependency order, supervise them, and stop them in reverse order.

    coordinator = Coordinator(config)
    plan = coordinator.prepare()        # validation; nothing has started yet
    await coordinator.start()           # NATS, the API, the modules; raises StartupFailed
    await coordinator.wait()            # until Shutdown, a signal, ...
    await coordinator.stop("mesh down") # reverse order, grace, then kill
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import grpc
from google.protobuf import struct_pb2, timestamp_pb2
from opentelemetry import metrics, trace

from mesh.control import graph
from mesh.control.config import ConfigError, MeshConfig, ModuleOverrides, load_config
from mesh.control.discovery import DiscoveryError, discover
from mesh.control.events_api import EventsServicer
from mesh.control.module_client import ModuleClient
from mesh.control.ordering import run_in_order
from mesh.control.process import ProcessStartError, current_environment, module_command, spawn
from mesh.control.registry import ModuleRecord, Registry, now
from mesh.control.restart import RestartBudget
from mesh.control.statedir import StateDir
from mesh.control.sysevents import LifecycleEvents
from mesh.control.tenancy import TenancyServicer, TenancyStore
from mesh.protocol.errors import MeshError
from mesh.protocol.manifest import Manifest, manifest_from_proto
from mesh.protocol.nats_server import EmbeddedNats
from mesh.protocol.states import State
from mesh.protocol.streams import ensure_streams
from mesh.v1 import lifecycle_pb2, module_pb2

_log = logging.getLogger("mesh")
_tracer = trace.get_tracer("mesh.coordinator")
_restarts = metrics.get_meter("mesh.coordinator").create_counter(
    "mesh.module.restarts", description="module processes replaced, after a crash or on request"
)

PROCESS_END_GRACE_SECONDS = 5.0
"""After a module answered Stop (or failed to), how long its process may take to exit."""


class ValidationFailed(Exception):
    """The mesh cannot start: bad manifests or graph. `lines` holds one line per problem."""

    def __init__(self, lines: list[str], reason: str) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines
        self.reason = reason


class StartupFailed(Exception):
    """A critical module failed; everything that had started was stopped again."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


class Coordinator:
    """One mesh's control plane."""

    def __init__(self, config: MeshConfig, *, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.env = dict(os.environ if env is None else env)
        self.registry = Registry()
        self.state_dir = StateDir(config.state_dir.resolve())
        self.plan: graph.Plan | None = None
        self.address = ""
        self.nats_url = ""
        self.shutdown_requested = asyncio.Event()
        self.shutdown_reason = ""
        self._embedded_nats: EmbeddedNats | None = None
        self._events = LifecycleEvents()
        self._events_since: timestamp_pb2.Timestamp | None = None
        self.tenancy: TenancyServicer | None = None
        self.events_api: EventsServicer | None = None
        self._server: grpc.aio.Server | None = None
        self._spawning: dict[str, asyncio.Task[None]] = {}
        self._registered: dict[str, asyncio.Event] = {}  # external modules: set when one registers
        self._background: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self.restart_listeners: list[Callable[[ModuleRecord], None]] = []
        """Called after a crashed or replaced module runs again (e.g. the NATS lifecycle events)."""

    # --- 1-2: discover and validate ------------------------------------------------

    def prepare(self, remote_manifests: Mapping[str, tuple[Manifest, str]] | None = None) -> graph.Plan:
        """Discover the modules and decide what runs; raises ValidationFailed.

        Args:
            remote_manifests: Modules running elsewhere: name -> (manifest, address).
        """
        try:
            discovered = discover(self.config.modules_dir)
        except DiscoveryError as error:
            raise ValidationFailed(error.lines, "INVALID_MANIFEST") from None
        manifests = {name: module.manifest for name, module in discovered.items()}
        lines: list[str] = []
        for name, (manifest, address) in (remote_manifests or {}).items():
            if name in manifests:
                lines.append(f"remote module '{name}' at {address} has the name of {discovered[name].directory}")
            manifests[name] = manifest
        if lines:
            raise ValidationFailed(lines, "MODULE_ALREADY_REGISTERED")
        plan = graph.plan(manifests, env=self.env, flags=self.config.flags)
        if plan.problems:
            raise ValidationFailed([problem.message for problem in plan.problems], plan.problems[0].reason)
        dependents = graph.dependents_of(plan.modules)
        for name in plan.order:
            remote = (remote_manifests or {}).get(name)
            record = ModuleRecord(
                manifest=manifests[name],
                origin=module_pb2.MODULE_ORIGIN_STATIC if remote else module_pb2.MODULE_ORIGIN_LOCAL,
                directory=None if remote else discovered[name].directory,
                address=remote[1] if remote else "",
                critical=name in plan.critical,
                dependents=dependents[name],
                budget=RestartBudget(manifests[name].restart),
            )
            self.registry.add(record)
        for name, reason in sorted(plan.skipped.items()):
            record = ModuleRecord(
                manifest=manifests[name],
                origin=module_pb2.MODULE_ORIGIN_LOCAL,
                directory=discovered[name].directory if name in discovered else None,
            )
            self.registry.add(record)
            self.registry.update(record, State.SKIPPED, reason)
        self.plan = plan
        return plan

    async def describe_remote_modules(self) -> dict[str, tuple[Manifest, str]]:
        """Ask each statically listed remote module for its manifest (before validation)."""
        found: dict[str, tuple[Manifest, str]] = {}
        lines: list[str] = []
        for remote in self.config.remote:
            client = ModuleClient("remote", remote.address)
            try:
                described = await client.describe()
                manifest = manifest_from_proto(described.manifest, f"remote module at {remote.address}")
                found[manifest.name] = (manifest, remote.address)
            except MeshError as error:
                lines.append(f"remote module at {remote.address}: {error.message}")
            except ValueError as error:
                lines.append(str(error))
            finally:
                await client.close()
        if lines:
            raise ValidationFailed(lines, "MODULE_UNAVAILABLE")
        return found

    # --- 3-4: spawn, initialize, start -----------------------------------------------

    async def start(self) -> None:
        """Take the state folder, start NATS and the API, then bring every module up.

        Raises:
            StartupFailed: a critical module failed (everything started is stopped again).
        """
        if self.plan is None:
            raise RuntimeError("call prepare() before start()")
        self.state_dir.lock()
        self._start_nats()
        await self._events.connect(self.nats_url)
        await ensure_streams(self._events.jetstream())
        self._events_since = now()
        self.events_api = EventsServicer(self._events.connection)
        self.tenancy = TenancyServicer(
            self.registry, TenancyStore(self._events.jetstream()), self.config.module_config, self._events.publish_json
        )
        self.registry.listen(self._events.on_change)
        self.restart_listeners.append(self._events.on_restart)
        for record in self.registry.records.values():
            if record.state is State.SKIPPED:
                self._events.on_change(record, State.REGISTERED)
        from mesh.control.api import serve  # the API needs the coordinator; imported late to keep layers one-way

        self._server, self.address = await serve(self, self.config.listen)
        self.state_dir.write_info(address=self.address, nats_url=self.nats_url)
        local = [r for r in self.registry.records.values() if r.origin == module_pb2.MODULE_ORIGIN_LOCAL]
        for record in local:
            if record.state is State.SKIPPED:
                continue
            if self.config.external_modules:
                self._registered[record.name] = asyncio.Event()
            else:
                self._spawning[record.name] = asyncio.create_task(self._spawn(record), name=f"spawn:{record.name}")
        plan = self.plan
        # One trace for the whole start-up: a span per module initialize and start below it,
        # continued into each module's own server spans.
        with _tracer.start_as_current_span("mesh up", attributes={"mesh.modules": len(plan.order)}):
            result = await run_in_order(
                plan.order,
                waits_for={name: [d.name for d in plan.modules[name].dependencies] for name in plan.order},
                requires=graph.required_dependencies(plan.modules),
                action=self._bring_up,
                abort_on_failure_of=plan.critical,
            )
        if result.aborted_by is not None:
            failed = self.registry.records[result.aborted_by]
            lines = [f"start-up aborted: critical module '{failed.name}' failed: {_error_text(failed)}"]
            for name, why in sorted(result.not_run.items()):
                lines.append(f"  {name}: not started, {why}")
            await self.stop("start-up aborted")
            raise StartupFailed(lines)
        for name, reason in result.not_run.items():
            record = self.registry.records[name]
            self.registry.update(record, State.FAILED, reason)

    def _start_nats(self) -> None:
        if self.config.nats_url:
            self.nats_url = self.config.nats_url
            return
        # Started from the main thread, so that Linux can end it with this process.
        self._embedded_nats = EmbeddedNats(
            data_dir=self.state_dir.nats, log_file=self.state_dir.logs / "nats-server.log", die_with_parent=True
        )
        self.nats_url = self._embedded_nats.start()

    async def _spawn(self, record: ModuleRecord) -> None:
        assert record.directory is not None
        try:
            process = await spawn(
                record.manifest,
                record.directory,
                run_dir=self.state_dir.run,
                log_dir=self.state_dir.logs,
                state_dir=self.state_dir.state,
                env=current_environment() | self.env,
            )
        except ProcessStartError as error:
            self._fail(record, "spawn", "MODULE_LOAD_FAILED", str(error))
            raise
        record.process = process
        record.pid = process.pid
        record.expected_exit = False
        self._keep(asyncio.create_task(self._watch_exit(record, process), name=f"watch:{record.name}"))
        try:
            record.address = await process.wait_ready(self.config.ready_timeout_seconds)
        except ProcessStartError as error:
            self._fail(record, "spawn", "MODULE_LOAD_FAILED", str(error))
            await process.end(PROCESS_END_GRACE_SECONDS)
            raise
        record.instance_id = process.instance_id

    async def _bring_up(self, name: str) -> None:
        record = self.registry.records[name]
        spawning = self._spawning.pop(name, None)
        if spawning is not None:
            await spawning
        registered = self._registered.get(name)
        if registered is not None:
            await self._await_registration(record, registered)
        await self._initialize_and_start(record)

    async def _await_registration(self, record: ModuleRecord, registered: asyncio.Event) -> None:
        timeout = self.config.ready_timeout_seconds
        try:
            await asyncio.wait_for(registered.wait(), timeout=timeout)
        except TimeoutError:
            command = " ".join(module_command(record.manifest, record.directory)) if record.directory else "its command"
            message = (
                f"module {record.name} did not register within {timeout:.0f} s; start it with "
                f"MESH_COORDINATOR={self.address} ({command})"
            )
            self._fail(record, "register", "MODULE_UNAVAILABLE", message)
            raise MeshError("MODULE_UNAVAILABLE", message, metadata={"module": record.name}) from None

    async def _initialize_and_start(self, record: ModuleRecord) -> None:
        client = ModuleClient(record.name, record.address)
        try:
            phase = "describe"
            described = await client.describe()
            record.manifest_proto = described.manifest
            record.instance_id = described.status.instance_id or record.instance_id
            record.pid = described.status.pid or record.pid
            phase = "initialize"
            self.registry.update(record, State.INITIALIZING)
            with _tracer.start_as_current_span(f"initialize {record.name}", attributes={"mesh.module": record.name}):
                await client.initialize(self.settings_for(record))
            self.registry.update(record, State.INITIALIZED)
            phase = "start"
            self.registry.update(record, State.STARTING)
            with _tracer.start_as_current_span(f"start {record.name}", attributes={"mesh.module": record.name}):
                await client.start()
            record.error = None
            self.registry.update(record, State.RUNNING)
        except MeshError as error:
            self._fail(record, phase, error.reason, error.message)
            raise
        finally:
            await client.close()

    def settings_for(
        self, record: ModuleRecord, extra_config: Mapping[str, Any] | None = None
    ) -> lifecycle_pb2.ModuleSettings:
        """What a module gets at Initialize and Reload: config, dependency endpoints, NATS, telemetry."""
        config = struct_pb2.Struct()
        config.update(self.config.module_config(record.name) | dict(extra_config or {}))
        endpoints = []
        for dependency in record.manifest.dependencies:
            target = self.registry.get(dependency.name)
            available = target is not None and target.state is State.RUNNING and bool(target.address)
            endpoints.append(
                lifecycle_pb2.DependencyEndpoint(
                    name=dependency.name,
                    address=target.address if available and target else "",
                    version=target.manifest.version if target else "",
                    optional=dependency.optional,
                    available=available,
                )
            )
        return lifecycle_pb2.ModuleSettings(
            config=config,
            dependencies=endpoints,
            nats=lifecycle_pb2.NatsSettings(servers=self.nats_url.split(",") if self.nats_url else []),
            telemetry=lifecycle_pb2.TelemetrySettings(
                otel_env={key: value for key, value in self.env.items() if key.startswith("OTEL_")}
            ),
            coordinator_address=self.address,
            state_dir=str(self.state_dir.state / record.name) if record.directory else "",
            events_since=self._events_since,
        )

    def _fail(self, record: ModuleRecord, phase: str, reason: str, message: str) -> None:
        error = module_pb2.ModuleError(reason=reason, message=message, phase=phase, time=now())
        self.registry.update(record, State.FAILED, message, error=error)

    # --- 5: supervision ---------------------------------------------------------------

    async def _watch_exit(self, record: ModuleRecord, process: Any) -> None:
        """Supervise a module that has run: a process that never reached RUNNING is reported
        by the start-up path that waits for it instead."""
        code = await process.process.wait()
        if record.process is not process or record.expected_exit or self._stopping or record.started_at is None:
            return
        message = f"process {process.pid} exited with code {code}; see {process.log_path}"
        _log.warning("module %s: %s", record.name, message)
        self._fail(record, "process", "MODULE_UNAVAILABLE", message)
        self._keep(asyncio.create_task(self._supervise(record, code), name=f"restart:{record.name}"))

    async def _supervise(self, record: ModuleRecord, exit_code: int | None) -> None:
        """Restart a crashed module per its policy, until it runs or the budget is spent."""
        assert record.budget is not None
        while not self._stopping:
            decision = record.budget.decide(exit_code, time.monotonic())
            if not decision.restart:
                self.registry.update(record, State.FAILED, f"{record.state_reason}; not restarted: {decision.reason}")
                return
            _log.info("module %s: %s", record.name, decision.reason)
            await asyncio.sleep(decision.delay)
            if self._stopping:
                return
            record.budget.record(time.monotonic())
            try:
                await self._replace_process(record)
                return
            except (MeshError, ProcessStartError) as error:
                _log.warning("module %s: restart failed: %s", record.name, error)
                exit_code = record.process.returncode if record.process else None

    async def _replace_process(self, record: ModuleRecord) -> None:
        """A new process for `record`, initialized and started; dependents learn its address."""
        with _tracer.start_as_current_span(f"restart {record.name}", attributes={"mesh.module": record.name}):
            await self._replace_process_traced(record)
        _restarts.add(1, {"mesh.module": record.name})

    async def _replace_process_traced(self, record: ModuleRecord) -> None:
        old = record.process
        if old is not None and old.returncode is None:
            record.expected_exit = True
            self.registry.update(record, State.STOPPING, "restart")
            await self._stop_module_process(record, "restart")
            self.registry.update(record, State.STOPPED, "restart")
        record.restart_count += 1
        await self._spawn(record)
        await self._initialize_and_start(record)
        _log.info("module %s restarted at %s", record.name, record.address)
        for listener in self.restart_listeners:
            listener(record)
        await self._reload_dependents(record)

    async def _reload_dependents(self, record: ModuleRecord) -> None:
        for name in record.dependents:
            dependent = self.registry.get(name)
            if dependent is None or dependent.state not in (State.RUNNING, State.INITIALIZED) or not dependent.address:
                continue
            try:
                await self._reload(dependent, self.settings_for(dependent))
                _log.info("module %s reloaded with the new address of %s", name, record.name)
            except MeshError as error:
                _log.warning("module %s: reload with the new address of %s failed: %s", name, record.name, error)

    def _keep(self, task: asyncio.Task[Any]) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- operations on one module ------------------------------------------------------

    def record_of(self, name: str) -> ModuleRecord:
        return self.registry.require(name)

    async def reload_module(self, name: str, extra_config: Mapping[str, Any] | None = None) -> ModuleRecord:
        """Re-initialize one module in place with freshly resolved configuration: the mesh
        configuration file is read again, and `extra_config` goes on top."""
        record = self.record_of(name)
        self._require_reachable(record)
        if self.config.config_file is not None:
            try:
                fresh = load_config(self.config.config_file, env=self.env)
            except ConfigError as error:
                raise MeshError("INVALID_CONFIG", str(error), metadata={"module": name}) from None
            self.config.modules[name] = fresh.modules.get(name, ModuleOverrides())
        await self._reload(record, self.settings_for(record, extra_config))
        return record

    async def _reload(self, record: ModuleRecord, settings: lifecycle_pb2.ModuleSettings) -> None:
        """Reload one module; on failure, take its state from the module itself (an invalid
        config changes nothing there, a failing hook leaves it FAILED)."""
        client = ModuleClient(record.name, record.address)
        previous = record.state
        self.registry.update(record, State.INITIALIZING, "reload")
        try:
            status = await client.reload(settings)
            self.registry.update(record, State(status.state), "reloaded")
        except MeshError as error:
            try:
                status = (await client.describe()).status
            except MeshError:
                status = None
            if status is None or status.state == State.FAILED.value:
                self._fail(record, "reload", error.reason, error.message)
            else:
                self.registry.update(record, previous, f"reload refused: {error.message}")
            raise
        finally:
            await client.close()

    async def restart_module(self, name: str) -> ModuleRecord:
        """Replace one module's process (new code), then initialize and start it."""
        record = self.record_of(name)
        if record.origin != module_pb2.MODULE_ORIGIN_LOCAL:
            raise MeshError(
                "MODULE_UNAVAILABLE",
                f"module '{name}' runs outside this coordinator ({_origin(record)}); restart it where it runs",
                metadata={"module": name},
            )
        if record.state is State.SKIPPED:
            raise MeshError(
                "MODULE_SKIPPED", f"module '{name}' is skipped: {record.state_reason}", metadata={"module": name}
            )
        await self._replace_process(record)
        return record

    def _require_reachable(self, record: ModuleRecord) -> None:
        if record.state is State.SKIPPED:
            raise MeshError(
                "MODULE_SKIPPED",
                f"module '{record.name}' is skipped: {record.state_reason}",
                metadata={"module": record.name},
            )
        if not record.address:
            raise MeshError(
                "MODULE_UNAVAILABLE",
                f"module '{record.name}' has no address ({record.state.name}); restart it first",
                metadata={"module": record.name},
            )

    async def register_module(
        self, address: str, manifest: Manifest, manifest_proto: module_pb2.Manifest, instance_id: str
    ) -> ModuleRecord:
        """Add a module started outside the coordinator, then bring it up in the background."""
        existing = self.registry.get(manifest.name)
        if existing is not None and manifest.name in self._registered:
            return self._accept_expected(existing, address, manifest, manifest_proto, instance_id)
        if existing is not None and existing.origin != module_pb2.MODULE_ORIGIN_REGISTERED:
            raise MeshError(
                "MODULE_ALREADY_REGISTERED",
                f"module '{manifest.name}' is already in this mesh ({_origin(existing)}); "
                "registered modules need a name of their own",
                metadata={"module": manifest.name},
            )
        problems = []
        for dependency in manifest.dependencies:
            target = self.registry.get(dependency.name)
            if target is None or target.state is State.SKIPPED:
                if not dependency.optional:
                    problems.append(
                        (
                            "MODULE_DEPENDENCY_MISSING",
                            f"module '{manifest.name}' requires '{dependency.name}', which is not in this mesh",
                        )
                    )
            elif not graph.satisfies(target.manifest.version, dependency.version):
                problems.append(
                    (
                        "VERSION_CONSTRAINT_UNMET",
                        f"module '{manifest.name}' requires '{dependency.name}' {dependency.version}, "
                        f"but it is version {target.manifest.version}",
                    )
                )
        if problems:
            raise MeshError(problems[0][0], "; ".join(m for _, m in problems), metadata={"module": manifest.name})
        record = ModuleRecord(
            manifest=manifest,
            origin=module_pb2.MODULE_ORIGIN_REGISTERED,
            address=address,
            instance_id=instance_id,
            manifest_proto=manifest_proto,
        )
        self.registry.add(record)
        for dependency in manifest.dependencies:
            target = self.registry.get(dependency.name)
            if target is not None and manifest.name not in target.dependents:
                target.dependents.append(manifest.name)
                target.critical = target.critical or not dependency.optional
        self.registry.update(record, State.REGISTERED, f"registered from {address}")
        self._keep(asyncio.create_task(self._bring_up_registered(record), name=f"register:{record.name}"))
        return record

    def _accept_expected(
        self,
        record: ModuleRecord,
        address: str,
        manifest: Manifest,
        manifest_proto: module_pb2.Manifest,
        instance_id: str,
    ) -> ModuleRecord:
        """A module of the folder, run elsewhere (external mode), registering: the first time
        the ordered start-up brings it up; later (a new instance) it is brought up again at once."""
        if manifest.version != record.manifest.version:
            raise MeshError(
                "INVALID_MANIFEST",
                f"module '{manifest.name}' registered as version {manifest.version}, but {record.directory} "
                f"holds version {record.manifest.version}; deploy the same code everywhere",
                metadata={"module": manifest.name},
            )
        event = self._registered[manifest.name]
        again = event.is_set()
        record.address, record.instance_id, record.manifest_proto = address, instance_id, manifest_proto
        record.origin = module_pb2.MODULE_ORIGIN_REGISTERED
        self.registry.update(record, State.REGISTERED, f"registered from {address}")
        if again:
            self._keep(asyncio.create_task(self._bring_up_again(record), name=f"re-register:{record.name}"))
        event.set()
        return record

    async def _bring_up_again(self, record: ModuleRecord) -> None:
        with contextlib.suppress(MeshError):  # the failure is recorded on the module
            await self._initialize_and_start(record)
            record.restart_count += 1
            await self._reload_dependents(record)

    async def _bring_up_registered(self, record: ModuleRecord) -> None:
        with contextlib.suppress(MeshError):  # the failure is recorded on the module
            await self._initialize_and_start(record)

    async def deregister_module(self, name: str, instance_id: str, force: bool) -> ModuleRecord:
        record = self.record_of(name)
        if record.origin != module_pb2.MODULE_ORIGIN_REGISTERED:
            raise MeshError(
                "MODULE_NOT_FOUND",
                f"module '{name}' was not registered; only registered modules deregister",
                metadata={"module": name},
            )
        if instance_id and instance_id != record.instance_id:
            raise MeshError(
                "MODULE_NOT_FOUND",
                f"module '{name}' is registered as instance {record.instance_id}, not {instance_id}",
                metadata={"module": name},
            )
        users = [dependent for dependent in record.dependents if self._requires_running(dependent, name)]
        if users and not force:
            raise MeshError(
                "MODULE_HAS_DEPENDENTS",
                f"running modules require '{name}': {', '.join(users)}; stop them first or deregister with force",
                metadata={"module": name},
            )
        del self.registry.records[name]
        for other in self.registry.records.values():
            if name in other.dependents:
                other.dependents.remove(name)
        self.registry.update(record, State.STOPPED, "deregistered")
        return record

    def _requires_running(self, dependent: str, name: str) -> bool:
        """Whether module `dependent` runs and requires `name` (not merely optionally)."""
        record = self.registry.get(dependent)
        if record is None or record.state is not State.RUNNING:
            return False
        dependency = record.manifest.dependency(name)
        return dependency is not None and not dependency.optional

    # --- 6: stop ------------------------------------------------------------------------

    async def wait(self) -> None:
        """Until a shutdown is asked for (Shutdown call, signal)."""
        await self.shutdown_requested.wait()

    async def stop(self, reason: str) -> None:
        """Stop every module in reverse dependency order, then the API and NATS."""
        self._stopping = True
        for task in list(self._background) + list(self._spawning.values()):
            task.cancel()
        await asyncio.gather(*self._background, *self._spawning.values(), return_exceptions=True)
        records = self.registry.records
        names = [name for name, record in records.items() if record.state is not State.SKIPPED]
        dependents = {name: records[name].dependents for name in names}
        await run_in_order(names, waits_for=dependents, action=lambda name: self._stop_one(records[name], reason))
        if self._server is not None:
            await self._server.stop(grace=1.0)
            self._server = None
        await self._events.close()
        if self._embedded_nats is not None:
            await asyncio.to_thread(self._embedded_nats.stop)
            self._embedded_nats = None
        self.state_dir.unlock()

    async def _stop_one(self, record: ModuleRecord, reason: str) -> None:
        """Stop one module; never raises, so one module's trouble never blocks the others."""
        try:
            if record.state in (State.STOPPED, State.SKIPPED) and record.process is None:
                return
            record.expected_exit = True
            if record.address and record.state is not State.STOPPED:
                self.registry.update(record, State.STOPPING, reason)
            await self._stop_module_process(record, reason)
            self.registry.update(record, State.STOPPED, reason)
        except Exception:
            _log.exception("module %s: error while stopping", record.name)
            self.registry.update(record, State.STOPPED, f"{reason} (with errors; see the coordinator log)")

    async def _stop_module_process(self, record: ModuleRecord, reason: str) -> None:
        """Stop RPC with the grace period, then end the process (SIGTERM, then SIGKILL)."""
        process = record.process
        alive = process is None or process.returncode is None
        if record.address and alive:
            client = ModuleClient(record.name, record.address)
            try:
                reply = await client.stop(self.config.stop_grace_seconds, reason)
                if reply.forced:
                    _log.warning(
                        "module %s: stop ran past its %.0f s grace", record.name, self.config.stop_grace_seconds
                    )
            except MeshError as error:
                _log.warning("module %s: Stop failed: %s", record.name, error.message)
            finally:
                await client.close()
        if process is not None:
            process.close_stdin()
            code = await process.end(PROCESS_END_GRACE_SECONDS)
            _log.info("module %s: process %d exited with code %s", record.name, process.pid, code)


def _error_text(record: ModuleRecord) -> str:
    if record.error is not None and record.error.message:
        return f"{record.error.reason}: {record.error.message}"
    return record.state_reason or record.state.name


def _origin(record: ModuleRecord) -> str:
    return {
        module_pb2.MODULE_ORIGIN_STATIC: "a remote module of the mesh configuration",
        module_pb2.MODULE_ORIGIN_REGISTERED: f"registered from {record.address}",
    }.get(record.origin, f"spawned from {record.directory}")
