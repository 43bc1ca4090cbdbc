"""The tenancy API of the coordinator (mesh.v1.Tenancy): module enablement per tenant with
the dependency rules, feature flags per tenant, and layered configuration validated
against each module's config schema before it is stored.

State lives in NATS JetStream key-value buckets (see sdk/_tenancy.py for the layout); every
module watches its keys, so a change reaches every replica at once. Every change is also
published as an event on `mesh.sys.tenant.<tenant>.<what>`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import grpc
import jsonschema
import nats.js.errors
import referencing.exceptions
from google.protobuf import struct_pb2, timestamp_pb2

from mesh.control import graph
from mesh.control.registry import ModuleRecord, Registry
from mesh.protocol.errors import MeshError, answer, excerpt
from mesh.protocol.layers import config_from_struct, deep_merge
from mesh.protocol.names import CONFIG_BUCKET, FLAGS_BUCKET, MODULES_BUCKET, check_id
from mesh.protocol.states import State
from mesh.protocol.streams import open_bucket, stamp
from mesh.v1 import tenancy_pb2, tenancy_pb2_grpc

LAYER = {
    "default": tenancy_pb2.CONFIG_LAYER_MODULE_DEFAULT,
    "mesh": tenancy_pb2.CONFIG_LAYER_MESH,
    "tenant": tenancy_pb2.CONFIG_LAYER_TENANT,
    "company": tenancy_pb2.CONFIG_LAYER_COMPANY,
}


def _timestamp(seconds: float | None) -> timestamp_pb2.Timestamp | None:
    if not seconds:
        return None
    stamp_ = timestamp_pb2.Timestamp()
    stamp_.FromNanoseconds(int(seconds * 1e9))
    return stamp_


class TenancyStore:
    """Reads and writes the tenancy buckets (no rules: those are the servicer's)."""

    def __init__(self, js: Any) -> None:
        self._js = js
        self._buckets: dict[str, Any] = {}

    async def _bucket(self, name: str) -> Any:
        if name not in self._buckets:
            self._buckets[name] = await open_bucket(self._js, name)
        return self._buckets[name]

    async def _read(self, bucket: str, key: str) -> dict[str, Any] | None:
        try:
            entry = await (await self._bucket(bucket)).get(key)
        except nats.js.errors.KeyNotFoundError:
            return None
        if entry is None or not entry.value:
            return None
        value: dict[str, Any] = json.loads(entry.value)
        return value

    async def module_state(self, tenant: str, module: str) -> dict[str, Any] | None:
        return await self._read(MODULES_BUCKET, f"{tenant}.{module}")

    async def is_enabled(self, tenant: str, module: str) -> bool:
        state = await self.module_state(tenant, module)
        return bool(state and state.get("enabled"))

    async def set_enabled(self, tenant: str, module: str, enabled: bool, actor: str) -> None:
        await (await self._bucket(MODULES_BUCKET)).put(f"{tenant}.{module}", stamp(actor, enabled=enabled))

    async def flags(self, tenant: str) -> dict[str, dict[str, Any]]:
        """The tenant's flags, each flag's last value (deleted ones left out).

        Read from the bucket stream's subjects, then each key, rather than with a key-value
        watch: nats-py's watcher can say "no more values" before it has handed over one just
        written (it compares the consumer's pending count with what its callback has taken),
        so a flag set a moment before was now and then missing from `mesh flags get`.
        """
        bucket = await self._bucket(FLAGS_BUCKET)
        prefix = f"$KV.{FLAGS_BUCKET}."
        info = await self._js.stream_info(f"KV_{FLAGS_BUCKET}", subjects_filter=f"{prefix}{tenant}.>")
        found = {}
        for subject in sorted(info.state.subjects or {}):
            key = subject.removeprefix(prefix)
            try:
                entry = await bucket.get(key)
            except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):  # deleted
                continue
            if entry.value:
                found[key.partition(".")[2]] = json.loads(entry.value)
        return found

    async def set_flag(self, tenant: str, flag: str, enabled: bool, actor: str) -> dict[str, Any]:
        body = stamp(actor, enabled=enabled)
        await (await self._bucket(FLAGS_BUCKET)).put(f"{tenant}.{flag}", body)
        stored: dict[str, Any] = json.loads(body)
        return stored

    async def override(self, module: str, tenant: str, company: str = "") -> dict[str, Any] | None:
        key = f"{module}.{tenant}" + (f".{company}" if company else "")
        return await self._read(CONFIG_BUCKET, key)

    async def set_override(self, module: str, tenant: str, company: str, config: Mapping[str, Any], actor: str) -> None:
        key = f"{module}.{tenant}" + (f".{company}" if company else "")
        await (await self._bucket(CONFIG_BUCKET)).put(key, stamp(actor, config=dict(config)))


MAX_ACTOR_CHARS = 256
"""An actor names who made a change (kept in every audit entry): a name, not a document."""
MAX_CONFIG_SCHEMA_BYTES = 256 * 1024


def config_schema(text: str, module: str) -> dict[str, Any]:
    """A module's `config_schema_json`, parsed and checked to be a JSON Schema object.

    Refused at registration, so that configuring the module later cannot fail on it.

    Args:
        text: The schema as the module reported it (Describe or RegisterModule).
        module: The module's name, for the error.

    Raises:
        MeshError: INVALID_MANIFEST, saying what is wrong with it.
    """
    problem = ""
    schema: Any = None
    if len(text.encode("utf-8")) > MAX_CONFIG_SCHEMA_BYTES:
        problem = f"is {len(text)} chars; the most is {MAX_CONFIG_SCHEMA_BYTES // 1024} KiB"
    else:
        try:
            schema = json.loads(text)
        except ValueError as error:
            problem = f"is not JSON ({error})"
        except RecursionError:
            problem = "is nested too deeply"
    if not problem and not isinstance(schema, dict):
        problem = f"is a JSON {type(schema).__name__}, not an object"
    if not problem:
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as error:
            problem = f"is not a JSON Schema: {excerpt(error.message, 120)} at '{_schema_path(error)}'"
        except RecursionError:
            problem = "is nested too deeply"
    if problem:
        raise MeshError(
            "INVALID_MANIFEST",
            f"the config_schema_json of module {excerpt(module)} {problem}; report the JSON Schema of the "
            "module's config model (e.g. pydantic's model_json_schema()), or none",
            metadata={"module": module},
        )
    return dict(schema)


def _schema_path(error: jsonschema.SchemaError) -> str:
    return "/".join(str(part) for part in error.path) or "(root)"


def check_actor(actor: str) -> None:
    """Refuse an actor no audit entry should hold (INVALID_TENANT)."""
    if len(actor) > MAX_ACTOR_CHARS or not actor.isprintable():
        raise MeshError(
            "INVALID_TENANT",
            f"actor {excerpt(actor)} is not valid: use at most {MAX_ACTOR_CHARS} printable characters",
        )


def _defaults(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The defaults a pydantic JSON Schema states for its top-level properties."""
    properties = schema.get("properties", {})
    if not isinstance(properties, Mapping):
        return {}
    return {
        name: prop["default"] for name, prop in properties.items() if isinstance(prop, Mapping) and "default" in prop
    }


def _leaves(config: Mapping[str, Any], prefix: str = "") -> list[str]:
    paths = []
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            paths.extend(_leaves(value, f"{path}."))
        else:
            paths.append(path)
    return paths


class TenancyServicer(tenancy_pb2_grpc.TenancyServicer):
    """mesh.v1.Tenancy over the registry (the graph) and the store (the state)."""

    def __init__(
        self,
        registry: Registry,
        store: TenancyStore,
        mesh_config: Callable[[str], dict[str, Any]],
        publish: Callable[[str, dict[str, Any]], Any],
    ) -> None:
        self._registry = registry
        self._store = store
        self._mesh_config = mesh_config
        self._publish = publish

    # --- helpers --------------------------------------------------------------------

    def _record(self, name: str) -> ModuleRecord:
        return self._registry.require(name)

    def _required(self) -> dict[str, list[str]]:
        manifests = {name: r.manifest for name, r in self._registry.records.items() if r.state is not State.SKIPPED}
        return graph.required_dependencies(manifests)

    async def _tenant_module(self, tenant: str, module: str) -> tenancy_pb2.TenantModule:
        state = await self._store.module_state(tenant, module) or {}
        return tenancy_pb2.TenantModule(
            module=module,
            enabled=bool(state.get("enabled")),
            changed_by=state.get("changed_by", ""),
            changed_at=_timestamp(state.get("changed_at")),
        )

    async def _announce(self, tenant: str, what: str, data: dict[str, Any]) -> None:
        await self._publish(f"mesh.sys.tenant.{tenant}.{what}", {"tenant": tenant, **data})

    # --- enablement -----------------------------------------------------------------

    async def enable(self, tenant: str, module: str, with_dependencies: bool, actor: str) -> list[str]:
        check_id(tenant, "tenant")
        check_actor(actor)
        self._record(module)
        required = self._required()
        closure = [*graph.transitive(module, required)]
        missing = [name for name in closure if not await self._store.is_enabled(tenant, name)]
        if missing and not with_dependencies:
            raise MeshError(
                "MODULE_DEPENDENCY_MISSING",
                f"module {module} needs {', '.join(missing)} enabled for tenant {tenant} first; enable "
                f"{'them' if len(missing) > 1 else 'it'}, or ask for the whole closure (with_dependencies, "
                "mesh tenant enable --with-dependencies)",
                metadata={"module": module, "tenant": tenant, "missing": ",".join(missing)},
            )
        order = graph.initialization_order({n: self._registry.records[n].manifest for n in [*missing, module]})
        changed = []
        for name in order:
            if name == module and await self._store.is_enabled(tenant, module):
                continue
            await self._store.set_enabled(tenant, name, True, actor)
            await self._announce(tenant, "module.enabled", {"module": name, "actor": actor})
            changed.append(name)
        return changed

    async def disable(self, tenant: str, module: str, cascade: bool, actor: str) -> list[str]:
        check_id(tenant, "tenant")
        check_actor(actor)
        self._record(module)
        required = self._required()
        dependents_map: dict[str, list[str]] = {name: [] for name in required}
        for name, dependencies in required.items():
            for dependency in dependencies:
                dependents_map.setdefault(dependency, []).append(name)
        users = [
            name for name in graph.transitive(module, dependents_map) if await self._store.is_enabled(tenant, name)
        ]
        if users and not cascade:
            raise MeshError(
                "MODULE_HAS_DEPENDENTS",
                f"module {module} cannot be disabled for tenant {tenant} while {', '.join(users)} "
                f"{'need' if len(users) > 1 else 'needs'} it; disable them first, or cascade "
                "(mesh tenant disable --cascade)",
                metadata={"module": module, "tenant": tenant, "dependents": ",".join(users)},
            )
        order = graph.initialization_order({n: self._registry.records[n].manifest for n in [*users, module]})
        changed = []
        for name in reversed(order):
            if not await self._store.is_enabled(tenant, name):
                continue
            await self._store.set_enabled(tenant, name, False, actor)
            await self._announce(tenant, "module.disabled", {"module": name, "actor": actor})
            changed.append(name)
        return changed

    # --- configuration --------------------------------------------------------------

    def _schema(self, module: str) -> dict[str, Any]:
        record = self._record(module)
        text = record.manifest_proto.config_schema_json if record.manifest_proto else ""
        if not text:
            raise MeshError(
                "MODULE_UNAVAILABLE",
                f"module {module} has not reported its config schema (it has not run in this mesh); "
                "start it before configuring it",
                metadata={"module": module},
            )
        return config_schema(text, module)

    async def layers(self, module: str, tenant: str, company: str) -> list[tuple[str, dict[str, Any]]]:
        """The configuration layers, lowest first: defaults, mesh, tenant, company."""
        if tenant:
            check_id(tenant, "tenant")
        if company:
            check_id(company, "company")
        layers = [("default", _defaults(self._schema(module))), ("mesh", self._mesh_config(module))]
        if tenant:
            layers.append(("tenant", ((await self._store.override(module, tenant)) or {}).get("config", {})))
            if company:
                stored = (await self._store.override(module, tenant, company)) or {}
                layers.append(("company", stored.get("config", {})))
        return layers

    def validate(self, module: str, config: Mapping[str, Any]) -> None:
        """Validate an effective configuration against the module's schema; errors name the field path."""
        schema = dict(self._schema(module))
        # As the SDK does: a misspelt top-level key is an error unless the model allows extras.
        schema.setdefault("additionalProperties", False)
        try:
            errors = sorted(
                jsonschema.Draft202012Validator(schema).iter_errors(dict(config)), key=lambda e: list(e.path)
            )
        except (referencing.exceptions.Unresolvable, RecursionError) as error:  # a $ref nobody can follow
            raise MeshError(
                "INVALID_MANIFEST",
                f"the config schema of module {module} cannot be used ({type(error).__name__}); the module "
                "must report a self-contained JSON Schema",
                metadata={"module": module},
            ) from None
        if errors:
            first = errors[0]
            path = ".".join(str(p) for p in first.absolute_path) or "(root)"
            if first.validator == "additionalProperties":
                extra = sorted(set(config) - set(schema.get("properties", {})))
                path = extra[0] if extra else path
            raise MeshError(
                "INVALID_CONFIG",
                f"configuration of module {module} is invalid at {excerpt(path, 80)}: {excerpt(first.message, 160)}; "
                "nothing was stored",
                metadata={"module": module, "field": path},
            )

    async def set_config(
        self, module: str, tenant: str, company: str, config: Mapping[str, Any], actor: str
    ) -> dict[str, Any]:
        check_id(tenant, "tenant")
        check_actor(actor)
        layers = await self.layers(module, tenant, company)
        level = "company" if company else "tenant"
        layers = [(name, dict(config) if name == level else value) for name, value in layers]
        if not any(name == level for name, _ in layers):
            layers.append((level, dict(config)))
        effective: dict[str, Any] = {}
        for _, value in layers:
            effective = deep_merge(effective, value)
        self.validate(module, effective)
        await self._store.set_override(module, tenant, company, config, actor)
        await self._announce(tenant, "config.changed", {"module": module, "company": company, "actor": actor})
        return effective

    async def effective(self, module: str, tenant: str, company: str) -> tuple[dict[str, Any], dict[str, str]]:
        effective: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for name, value in await self.layers(module, tenant, company):
            effective = deep_merge(effective, value)
            for path in _leaves(value):
                sources[path] = name
        return effective, {path: sources[path] for path in _leaves(effective) if path in sources}

    # --- the gRPC calls --------------------------------------------------------------

    async def EnableModule(
        self, request: tenancy_pb2.EnableModuleRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tenancy_pb2.EnableModuleResponse:
        changed = await answer(
            context, self.enable(request.tenant, request.module, request.with_dependencies, request.actor)
        )
        return tenancy_pb2.EnableModuleResponse(changed=[await self._tenant_module(request.tenant, n) for n in changed])

    async def DisableModule(
        self, request: tenancy_pb2.DisableModuleRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tenancy_pb2.DisableModuleResponse:
        changed = await answer(context, self.disable(request.tenant, request.module, request.cascade, request.actor))
        return tenancy_pb2.DisableModuleResponse(
            changed=[await self._tenant_module(request.tenant, n) for n in changed]
        )

    async def ListTenantModules(
        self, request: tenancy_pb2.ListTenantModulesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tenancy_pb2.ListTenantModulesResponse:
        await answer(context, _checked(request.tenant))
        names = [n for n, r in self._registry.records.items() if r.state is not State.SKIPPED]
        return tenancy_pb2.ListTenantModulesResponse(
            modules=[await self._tenant_module(request.tenant, n) for n in names]
        )

    async def SetFeatureFlag(
        self, request: tenancy_pb2.SetFeatureFlagRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tenancy_pb2.SetFeatureFlagResponse:
        async def set_flag() -> dict[str, Any]:
            check_id(request.tenant, "tenant")
            check_id(request.flag, "flag")
            check_actor(request.actor)
            stored = await self._store.set_flag(request.tenant, request.flag, request.enabled, request.actor)
            await self._announce(request.tenant, "flag.changed", {"flag": request.flag, "enabled": request.enabled})
            return stored

        stored = await answer(context, set_flag())
        return tenancy_pb2.SetFeatureFlagResponse(flag=_flag(request.flag, stored))

    async def GetFeatureFlags(
        self, request: tenancy_pb2.GetFeatureFlagsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tenancy_pb2.GetFeatureFlagsResponse:
        await answer(context, _checked(request.tenant))
        flags = await self._store.flags(request.tenant)
        return tenancy_pb2.GetFeatureFlagsResponse(flags=[_flag(name, value) for name, value in sorted(flags.items())])

    async def SetConfig(
        self, request: tenancy_pb2.SetConfigRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tenancy_pb2.SetConfigResponse:
        async def set_config() -> dict[str, Any]:
            config = config_from_struct(request.config, f"the configuration of module {excerpt(request.module)}")
            return await self.set_config(request.module, request.tenant, request.company, config, request.actor)

        effective = await answer(context, set_config)
        return tenancy_pb2.SetConfigResponse(effective=_struct(effective))

    async def GetConfig(
        self, request: tenancy_pb2.GetConfigRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tenancy_pb2.GetConfigResponse:
        async def get() -> dict[str, Any]:
            self._record(request.module)
            check_id(request.tenant, "tenant")
            if request.company:
                check_id(request.company, "company")
            return (await self._store.override(request.module, request.tenant, request.company)) or {}

        stored = await answer(context, get())
        return tenancy_pb2.GetConfigResponse(
            config=_struct(stored.get("config", {})),
            changed_by=stored.get("changed_by", ""),
            changed_at=_timestamp(stored.get("changed_at")),
        )

    async def GetEffectiveConfig(
        self, request: tenancy_pb2.GetEffectiveConfigRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tenancy_pb2.GetEffectiveConfigResponse:
        effective, sources = await answer(context, self.effective(request.module, request.tenant, request.company))
        return tenancy_pb2.GetEffectiveConfigResponse(
            config=_struct(effective),
            sources=[tenancy_pb2.ConfigValueSource(path=p, layer=LAYER[layer]) for p, layer in sorted(sources.items())],
        )


async def _checked(tenant: str) -> None:
    check_id(tenant, "tenant")


def _flag(name: str, value: Mapping[str, Any]) -> tenancy_pb2.FeatureFlag:
    return tenancy_pb2.FeatureFlag(
        name=name,
        enabled=bool(value.get("enabled")),
        changed_by=value.get("changed_by", ""),
        changed_at=_timestamp(value.get("changed_at")),
    )


def _struct(data: Mapping[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(dict(data))
    return struct
