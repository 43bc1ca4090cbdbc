"""One module served on its own grpc.aio server: Lifecycle, standard health, reflection,
and the module's own services behind the metrics-and-state interceptor, over mTLS (or
plaintext on loopback when the transport is insecure).

Whose word a call's tenant is depends on who calls: mesh processes (the coordinator, modules
forwarding a call) are trusted for x-tenant-id; anyone else (operators: people and tools from
outside the mesh) proves it with a bearer token. Plaintext has no identities: x-tenant-id is
trusted from everyone there."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from mesh.protocol.errors import MeshError
from mesh.protocol.guarded_handlers import Check
from mesh.protocol.identity import Anyone, CoordinatorOnly, Identity, Kind, Rules, identity_of, refusal, rule_for
from mesh.protocol.manifest import ManifestError
from mesh.protocol.names import TENANT_METADATA, check_id
from mesh.protocol.pki import CredentialsError
from mesh.protocol.states import State
from mesh.protocol.telemetry import tracing
from mesh.protocol.tokens import AUTHORIZATION_METADATA, HOW_TO_GET, TenantClaims, TokenVerifier, bearer_token
from mesh.protocol.transport import Transport
from mesh.v1 import lifecycle_pb2, lifecycle_pb2_grpc
from sdk._loader import LoadedModule
from sdk._metrics import ModuleMetricsRecorder
from sdk._module import required_flags, served_services
from sdk._tenancy import CallTenant, current_call
from sdk.events import check_declared_events, handler_bindings
from sdk.runtime._admissions import Admissions
from sdk.runtime._gating import GatedServer, GateFor, tenant_metadata
from sdk.runtime._lifecycle import LifecycleServicer
from sdk.runtime._runtime import ModuleRuntime

LIFECYCLE_SERVICE = lifecycle_pb2.DESCRIPTOR.services_by_name["Lifecycle"].full_name
CONTROL_SERVICES = frozenset(
    {LIFECYCLE_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME, "grpc.reflection.v1.ServerReflection"}
)
MODULE_RULES: Rules = {f"/{LIFECYCLE_SERVICE}/": CoordinatorOnly.COORDINATOR}
"""Who may call a module: its Lifecycle only the coordinator; everything else (health,
reflection, the module's own services) any mesh identity."""

_log = logging.getLogger("sdk")


class ModuleServer:
    """Serves one module instance.

    Args:
        loaded: The module's manifest and class.
        transport: How it listens and dials: mTLS with its credentials, or plaintext.
        host: The interface to bind, e.g. "127.0.0.1" or "0.0.0.0".
        port: The port to bind; 0 picks a free one.
        advertise_host: The host to report in the address when `host` is a wildcard.
        state_dir: Where the module keeps state unless Initialize names a folder.
    """

    def __init__(
        self,
        loaded: LoadedModule,
        *,
        transport: Transport,
        host: str = "127.0.0.1",
        port: int = 0,
        advertise_host: str | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self.loaded = loaded
        self._host = host
        self._port = port
        self._advertise_host = advertise_host
        self.transport = transport
        manifest = loaded.manifest
        self.services = served_services(loaded.module_class)
        self._check_declared_services()
        self.handlers = handler_bindings(loaded.module_class)
        check_declared_events(loaded.module_class, self.handlers, manifest, str(loaded.manifest_path))
        self.recorder = ModuleMetricsRecorder(manifest.name, CONTROL_SERVICES)
        self.module = loaded.module_class()
        self.runtime = ModuleRuntime(
            self.module,
            manifest,
            loaded.manifest_path,
            self.recorder,
            default_state_dir=state_dir or loaded.directory.parent.parent / ".mesh" / "state" / manifest.name,
            transport=transport,
            handlers=self.handlers,
        )
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]  # grpc-stubs 1.53 predates aio
        self.runtime.on_change(self._mirror_health)
        self._server: grpc.aio.Server | None = None
        self._health_watch: asyncio.Task[None] | None = None
        self.port = 0

    @property
    def address(self) -> str:
        """The reachable "host:port" this module serves on (set once started)."""
        return self.runtime.address

    def _check_declared_services(self) -> None:
        declared = set(self.loaded.manifest.services)
        served = {service.full_name for service in self.services}
        if declared and declared != served:
            raise ManifestError(
                [
                    f"{self.loaded.manifest_path}: field 'services' lists {sorted(declared)} but "
                    f"{self.loaded.module_class.__name__} serves {sorted(served)}; make them match "
                    "(or leave 'services' out to take them from the code)"
                ]
            )

    async def start(self) -> str:
        """Bind and start serving; returns the address.

        Raises:
            OSError: The address cannot be bound.
            InsecureBindRefused: Plaintext asked for on a non-loopback address.
        """
        own = {service.full_name for service in self.services}
        tokens = TokenVerifier.for_module(self.transport.folder, os.environ) if self.transport.secure else None
        # No interceptor: the gated handlers make the SERVER spans too (mesh.protocol.server_spans).
        # With gRPC's default so_reuseport (1) a second server can silently share a port in use.
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        gated = GatedServer(
            server,
            self.recorder,
            _gate(self.runtime, own, required_flags(self.loaded.module_class, self.services), tokens=tokens),
            in_flight=self.runtime.calls,
            counted_services=frozenset(own),
            # Telemetry configured by the environment is set up before the server starts;
            # a module told to trace only at Initialize makes client and event spans.
            trace_calls=tracing(),
        )
        schema = json.dumps(self.loaded.module_class.config_model.model_json_schema(), sort_keys=True)
        self.lifecycle = LifecycleServicer(self.runtime, schema)
        # Every servicer registers through `gated`, never `server`: that is what puts the gate in front.
        lifecycle_pb2_grpc.add_LifecycleServicer_to_server(self.lifecycle, gated)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, gated)
        for service in self.services:
            service.register(self.module, gated)
        # What reflection.enable_server_reflection does for a grpc.aio.Server (it tells one by
        # its class, which `gated` is not).
        names = [LIFECYCLE_SERVICE, health.SERVICE_NAME, reflection.SERVICE_NAME, *sorted(own)]
        aio_reflection = reflection.aio.ReflectionServicer(names)  # type: ignore[attr-defined]  # not in its stubs
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(aio_reflection, gated)
        target = f"[{self._host}]:{self._port}" if ":" in self._host else f"{self._host}:{self._port}"
        try:
            self.port = self.transport.add_port(server, target)
        except CredentialsError:
            raise  # a RuntimeError too, but no bind failure: plaintext refused, or credentials unreadable
        except RuntimeError as error:
            raise OSError(f"module {self.loaded.manifest.name} cannot bind {target}: {error}") from None
        if self.port == 0:
            raise OSError(f"module {self.loaded.manifest.name} cannot bind {target}; is the port in use?")
        await server.start()
        self._server = server
        self.runtime.address = _address(self._advertise_host or self._host, self.port)
        await self.health.set(LIFECYCLE_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        await self._mirror_health(self.runtime.state, self.runtime.serving)
        self._health_watch = asyncio.create_task(self.runtime.watch_health(health_interval()), name="health-watch")
        _log.info("module %s %s serving on %s", self.loaded.manifest.name, self.loaded.manifest.version, self.address)
        return self.address

    async def _mirror_health(self, state: State, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", *(service.full_name for service in self.services)):
            await self.health.set(name, status)

    async def shutdown(self, grace_seconds: float | None = None) -> bool:
        """Stop the module (if it is not stopped yet), then the server.

        Returns:
            True when the module's stop ran past its grace period.
        """
        forced = False
        if self.runtime.state is not State.STOPPED:
            try:
                forced = await self.runtime.stop(grace_seconds, "process shutting down")
            except MeshError as error:
                _log.warning("module %s: %s", self.loaded.manifest.name, error.message)
        await self.close()
        return forced

    async def close(self) -> None:
        """Stop serving at once (in-flight calls get a moment to finish)."""
        if self._health_watch is not None:
            self._health_watch.cancel()
            self._health_watch = None
        if self._server is None:
            return
        await self.health.enter_graceful_shutdown()
        await self._server.stop(grace=1.0)
        self._server = None

    async def wait_for_termination(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()


def _gate(
    runtime: ModuleRuntime,
    own_services: set[str],
    flags: dict[str, str],
    *,
    tokens: TokenVerifier | None,
) -> GateFor:
    """The one gate of every call: the caller's identity against MODULE_RULES (with mTLS,
    where `tokens` verifies operators' bearer tokens; plaintext has neither), then, in front
    of the module's own services, open only while RUNNING and only to tenants the module is
    enabled for; the call's tenant is then `current_call`.

    What depends only on the method (its rule, whether it is the module's own, its flag) is
    worked out once per method, as its handler is wrapped. The caller's certificate is read
    only where the answer depends on it: the server takes no connection without a certificate
    of the mesh's CA (the TLS handshake requires one), which is all that "any mesh identity"
    asks, so only a rule that names who may call (the coordinator, for Lifecycle) and a tenant
    claimed without a token that proves it need the name in it. Reading it is a call into
    grpc's C core, otherwise made on every call."""
    name = runtime.manifest.name

    def gate_for(method: str) -> Check:
        rule = rule_for(MODULE_RULES, method) or Anyone.AUTHENTICATED
        needs_identity = tokens is not None and rule is not Anyone.AUTHENTICATED
        service = method.lstrip("/").partition("/")[0]
        flag = flags.get(method)

        def identity_refusal(context: grpc.aio.ServicerContext[Any, Any]) -> MeshError | None:
            return refusal(identity_of(context), method, MODULE_RULES, Anyone.AUTHENTICATED)

        if service not in own_services:
            return identity_refusal if needs_identity else _open

        admissions = Admissions()

        def gate(context: grpc.aio.ServicerContext[Any, Any]) -> MeshError | None:
            if needs_identity:
                refused = identity_refusal(context)
                if refused is not None:
                    return refused
            if runtime.state is not State.RUNNING:
                return MeshError(
                    "MODULE_UNAVAILABLE",
                    f"module {name} is {runtime.state.name}; it serves {service} only while RUNNING"
                    + (_DRAINING if runtime.state is State.STOPPING or runtime.state_reason == "reload" else ""),
                    metadata={"module": name, "state": runtime.state.name},
                )
            metadata = tenant_metadata(context)
            view = runtime.tenants
            call = admissions.admitted(metadata, view)
            if call is None:
                claimed, authorization = metadata
                try:
                    call = proven_tenant(
                        {TENANT_METADATA: claimed, AUTHORIZATION_METADATA: authorization},
                        lambda: identity_of(context),
                        tokens,
                    )
                except MeshError as error:
                    return error
                refused = tenant_refusal(runtime, method, call.tenant, flag)
                if refused is not None:
                    return refused
                admissions.remember(metadata, call, view, tokens)
            current_call.set(call)
            return None

        return gate

    return gate_for


def _open(context: grpc.aio.ServicerContext[Any, Any]) -> None:
    """The check of health and reflection calls: with mTLS the handshake has asked for a
    certificate of the mesh's CA already; in plaintext anyone may make them."""
    return None


_DRAINING = "; it finishes the calls in flight and takes no new ones (retry: it is stopping or reloading)"
"""Why a call is refused while the module drains: the call never ran, so a retry is safe."""


def proven_tenant(
    metadata: Mapping[str, str], caller: Callable[[], Identity | None], tokens: TokenVerifier | None
) -> CallTenant:
    """The tenant a call acts for: x-tenant-id from a mesh process (or from anyone, in plaintext),
    else the tenant of the caller's bearer token (an x-tenant-id beside it must agree).

    Args:
        metadata: The call's tenant metadata (TENANT_METADATA, AUTHORIZATION_METADATA).
        caller: The caller's identity, asked for only when the answer depends on it.
        tokens: Verifies bearer tokens; None in plaintext.

    Raises:
        MeshError: UNAUTHENTICATED for a tenant claimed without a token, a token that does not
            verify, or a token of another tenant.
    """
    claimed = metadata.get(TENANT_METADATA, "")
    authorization = metadata.get(AUTHORIZATION_METADATA, "")
    if tokens is None or (not claimed and not authorization):
        return CallTenant(claimed, authorization)
    verified: TenantClaims | MeshError | None = None
    if authorization:
        try:
            verified = tokens.verify(bearer_token(authorization))
        except MeshError as error:
            verified = error
        if claimed and isinstance(verified, TenantClaims) and verified.tenant == claimed:
            return CallTenant(claimed, authorization)  # whoever calls: the token proves what it claims
    identity = caller()
    if identity is not None and identity.kind in (Kind.COORDINATOR, Kind.MODULE):
        return CallTenant(claimed, authorization)
    if verified is None:
        raise MeshError(
            "UNAUTHENTICATED",
            f"{identity} may not just claim tenant {claimed} with {TENANT_METADATA}: callers from outside "
            f"the mesh prove it with the metadata 'authorization: Bearer <token>'; {HOW_TO_GET}",
            metadata={"tenant": claimed},
        )
    if isinstance(verified, MeshError):
        raise verified
    if claimed and claimed != verified.tenant:
        raise MeshError(
            "UNAUTHENTICATED",
            f"{TENANT_METADATA} says tenant {claimed} but the bearer token is for tenant {verified.tenant}; "
            f"leave {TENANT_METADATA} out or send a token of {claimed}",
            metadata={"tenant": claimed, "token_tenant": verified.tenant},
        )
    return CallTenant(verified.tenant, authorization)


def tenant_refusal(runtime: ModuleRuntime, method: str, tenant: str, flag: str | None) -> MeshError | None:
    """Why a call of `tenant` may not reach `method`, or None when it may."""
    name = runtime.manifest.name
    if not tenant:
        if runtime.manifest.requires_tenant or flag:
            return MeshError(
                "TENANT_REQUIRED",
                f"module {name} serves only calls of a tenant: send the {TENANT_METADATA} metadata with {method}",
                metadata={"module": name},
            )
        return None
    try:
        check_id(tenant, "tenant")
    except MeshError as error:
        return error
    view = runtime.tenants
    if view is None:
        return MeshError(
            "MODULE_UNAVAILABLE",
            f"module {name} cannot check tenant {tenant}: it has no NATS connection for tenancy",
            metadata={"module": name, "tenant": tenant},
        )
    if not view.is_enabled(tenant):
        return MeshError(
            "MODULE_DISABLED_FOR_TENANT",
            f"module {name} is disabled for tenant {tenant}; enable it with: mesh tenant enable {tenant} {name}",
            metadata={"module": name, "tenant": tenant},
        )
    if flag and not view.flag(tenant, flag):
        return MeshError(
            "FEATURE_DISABLED",
            f"feature flag '{flag}' is off for tenant {tenant}, and {method} needs it; turn it on with: "
            f"mesh flags set {tenant} {flag} on",
            metadata={"module": name, "tenant": tenant, "flag": flag},
        )
    return None


def health_interval() -> float:
    """MESH_HEALTH_INTERVAL_SECONDS: how often a RUNNING module checks its own health (default 10)."""
    value = os.environ.get("MESH_HEALTH_INTERVAL_SECONDS", "10")
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if seconds <= 0:
        raise MeshError("INVALID_CONFIG", f"MESH_HEALTH_INTERVAL_SECONDS is {value!r}; expected seconds > 0")
    return seconds


def _address(host: str, port: int) -> str:
    if host in ("0.0.0.0", "", "::", "[::]"):
        # A wildcard is no address to reach; the host name is (set MESH_ADVERTISE_HOST
        # when other hosts know this one by another name).
        host = socket.gethostname()
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
