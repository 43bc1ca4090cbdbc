"""Tenancy as a module sees it: which tenants it serves, their feature flags and their
configuration, kept in memory from watches on NATS JetStream key-value buckets — so every
replica learns a change at once, with no cache TTL — and a key-value cache of its own.

Buckets (created idempotently; their history is the audit trail):

    mesh_tenant_modules   <tenant>.<module>            {"enabled", "changed_by", "changed_at"}
    mesh_tenant_flags     <tenant>.<flag>              {"enabled", "changed_by", "changed_at"}
    mesh_config           <module>.<tenant>[.<company>] {"config", "changed_by", "changed_at"}
    mesh_cache_<module>   the module's own cache (ctx.cache)

A module serves a tenant only once it is enabled for that tenant.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import re
import struct
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import nats.errors
import nats.js.errors
from pydantic import BaseModel, ValidationError

from mesh.protocol.errors import MeshError
from mesh.protocol.layers import deep_merge
from mesh.protocol.names import CONFIG_BUCKET, FLAGS_BUCKET, MODULES_BUCKET, TENANT_METADATA
from mesh.protocol.nats_limits import check_kv_key, excerpt
from mesh.protocol.streams import open_bucket
from mesh.protocol.tokens import AUTHORIZATION_METADATA

_log = logging.getLogger("sdk.tenancy")


@dataclass(frozen=True)
class CallTenant:
    """The tenant a served call acts for, as the module server's gate established it (from a
    mesh identity's x-tenant-id, or from the caller's token), and the caller's authorization
    metadata to forward to dependencies."""

    tenant: str
    authorization: str = ""


current_call: contextvars.ContextVar[CallTenant | None] = contextvars.ContextVar("mesh_call_tenant", default=None)
"""Set by the gate of a module's own service call. grpc.aio runs each call in a task of its own,
so the value lasts exactly the call (and the tasks it starts)."""


def tenant_of(context: Any) -> str:
    """The tenant of a gRPC call, "" when it has none: the one the server's gate proved, else
    (outside a module server) its x-tenant-id metadata."""
    call = current_call.get()
    if call is not None:
        return call.tenant
    for key, value in context.invocation_metadata() or ():
        if key == TENANT_METADATA:
            return str(value)
    return ""


def tenant_metadata(tenant: str) -> list[tuple[str, str]]:
    """Call metadata that carries `tenant` on to another module ([] for no tenant), with the
    current call's authorization (its caller's token) when it has one."""
    metadata = [(TENANT_METADATA, tenant)] if tenant else []
    call = current_call.get()
    if call is not None and call.authorization:
        metadata.append((AUTHORIZATION_METADATA, call.authorization))
    return metadata


ConfigT = TypeVar("ConfigT", bound=BaseModel)


class TenantView(Generic[ConfigT]):
    """What one module instance knows of tenants, always current (watched, not polled).

    Generic in the module's config model, so `config_for` returns that model's type.
    """

    def __init__(self, js: Any, module: str, base_config: Mapping[str, Any], config_model: type[ConfigT]) -> None:
        self._js = js
        self._module = module
        self._base_config = dict(base_config)
        self._config_model = config_model
        self.enabled: dict[str, bool] = {}
        self.flags: dict[tuple[str, str], bool] = {}
        self.changes = 0
        """Counts every change of `enabled` or `flags`: an answer worked out from them holds
        while this stays the same (the module server's gate remembers its admissions so)."""
        self.overrides: dict[tuple[str, str], dict[str, Any]] = {}
        self._config_cache: dict[tuple[str, str], ConfigT] = {}
        self._watchers: list[Any] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.on_enabled: Callable[[str], Awaitable[None]] | None = None
        self.on_disabled: Callable[[str], Awaitable[None]] | None = None

    async def open(self) -> None:
        """Load the current state and keep watching it."""
        modules = await open_bucket(self._js, MODULES_BUCKET)
        flags = await open_bucket(self._js, FLAGS_BUCKET)
        config = await open_bucket(self._js, CONFIG_BUCKET)
        for bucket, keys, apply in (
            (modules, f"*.{self._module}", self._apply_module),
            (flags, ">", self._apply_flag),
            (config, f"{self._module}.>", self._apply_config),
        ):
            watcher = await bucket.watch(keys)
            self._watchers.append(watcher)
            async for entry in watcher:  # the current values, then None
                if entry is None:
                    break
                await apply(entry, initial=True)
            self._tasks.append(asyncio.create_task(self._follow(watcher, apply), name=f"tenancy:{keys}"))

    async def _follow(self, watcher: Any, apply: Callable[..., Awaitable[None]]) -> None:
        while True:
            try:
                entry = await watcher.updates(timeout=None)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a reconnect: the watcher resumes by itself
                _log.debug("tenancy watch: %s", error)
                await asyncio.sleep(0.5)
                continue
            if entry is not None:
                await apply(entry, initial=False)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for watcher in self._watchers:
            try:
                await watcher.stop()
            except Exception as error:  # closing must never stop the rest of Stop
                _log.debug("stopping a watcher: %s", error)

    @staticmethod
    def _value(entry: Any) -> dict[str, Any] | None:
        if entry.operation in ("DEL", "PURGE") or not entry.value:
            return None
        try:
            value: dict[str, Any] = json.loads(entry.value)
            return value
        except ValueError:
            _log.warning("ignoring a malformed tenancy value at %s", entry.key)
            return None

    async def _apply_module(self, entry: Any, *, initial: bool) -> None:
        tenant = entry.key.split(".", 1)[0]
        value = self._value(entry)
        now_enabled = bool(value and value.get("enabled"))
        was_enabled = self.enabled.get(tenant, False)
        self.enabled[tenant] = now_enabled
        self.changes += 1
        if initial or now_enabled == was_enabled:
            return
        hook = self.on_enabled if now_enabled else self.on_disabled
        if hook is not None:
            try:
                await hook(tenant)
            except Exception:  # a hook's failure is the module's to report; the view stays right
                _log.exception("module %s: tenant hook for %s failed", self._module, tenant)

    async def _apply_flag(self, entry: Any, *, initial: bool) -> None:
        tenant, _, flag = entry.key.partition(".")
        value = self._value(entry)
        self.flags[(tenant, flag)] = bool(value and value.get("enabled"))
        self.changes += 1

    async def _apply_config(self, entry: Any, *, initial: bool) -> None:
        parts = entry.key.split(".")
        tenant, company = parts[1], parts[2] if len(parts) > 2 else ""
        value = self._value(entry)
        if value is None:
            self.overrides.pop((tenant, company), None)
        else:
            self.overrides[(tenant, company)] = dict(value.get("config") or {})
        self._config_cache.clear()

    # --- answers ------------------------------------------------------------------

    def is_enabled(self, tenant: str) -> bool:
        return self.enabled.get(tenant, False)

    def enabled_tenants(self) -> list[str]:
        return sorted(tenant for tenant, enabled in self.enabled.items() if enabled)

    def flag(self, tenant: str, flag: str) -> bool:
        return self.flags.get((tenant, flag), False)

    def config_for(self, tenant: str, company: str = "") -> ConfigT:
        """The effective configuration: the module's own (Initialize), then tenant, then company."""
        key = (tenant, company)
        cached = self._config_cache.get(key)
        if cached is not None:
            return cached
        merged = deep_merge(self._base_config, self.overrides.get((tenant, ""), {}))
        if company:
            merged = deep_merge(merged, self.overrides.get((tenant, company), {}))
        try:
            config = self._config_model.model_validate(merged)
        except ValidationError as error:
            raise MeshError(
                "INVALID_CONFIG",
                f"the configuration of module {self._module} for tenant {tenant}"
                + (f", company {company}" if company else "")
                + f" does not validate: {error}",
                metadata={"module": self._module, "tenant": tenant},
            ) from None
        self._config_cache[key] = config
        return config


class ModuleCache:
    """`ctx.cache`: get / set with a time to live / delete, in the module's own key-value
    bucket (shared by its replicas). Its hit rate is the metric `cache_hit_rate` (0-100).

    Expiry is kept in the value (NATS key-value has no per-key TTL on overwrite); an
    expired entry is a miss and is deleted. The bucket's own max age bounds what is kept.
    A key or value NATS would refuse by closing the connection (a key longer than its
    control line, a value over max_payload) raises MeshError INVALID_EVENT (status
    INVALID_ARGUMENT) before anything is sent; in an event handler that dead-letters the event.
    """

    _EXPIRY = struct.Struct(">d")

    def __init__(self, bucket: Any) -> None:
        self._bucket = bucket
        self.hits = 0
        self.misses = 0

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return 100.0 * self.hits / total if total else 0.0

    async def get(self, key: str) -> bytes | None:
        try:
            entry = await self._bucket.get(_cache_key(key))
        except nats.js.errors.KeyNotFoundError:
            entry = None
        if entry is None or entry.value is None or len(entry.value) < self._EXPIRY.size:
            self.misses += 1
            return None
        (expires,) = self._EXPIRY.unpack_from(entry.value)
        if expires and expires < time.time():
            self.misses += 1
            await self.delete(key)
            return None
        self.hits += 1
        data: bytes = entry.value[self._EXPIRY.size :]
        return data

    async def set(self, key: str, value: bytes, *, ttl: float | None = None) -> None:
        expires = time.time() + ttl if ttl else 0.0
        stored_key = _cache_key(key)
        try:
            await self._bucket.put(stored_key, self._EXPIRY.pack(expires) + bytes(value))
        except nats.errors.MaxPayloadError:  # nats-py refuses it before sending: the connection stays
            raise MeshError(
                "INVALID_EVENT",
                f"the cache value of {excerpt(key)} is {len(value)} bytes, more than the NATS server's "
                "max_payload; cache a smaller value",
                metadata={"value_bytes": str(len(value))},
            ) from None

    async def delete(self, key: str) -> None:
        try:
            await self._bucket.delete(_cache_key(key))
        except nats.js.errors.KeyNotFoundError:
            pass


def _cache_key(key: str) -> str:
    """Any string as a valid key-value key (hex when it holds other characters).

    Raises:
        MeshError: The key, as stored, is too long for NATS (see `check_kv_key`).
    """
    stored = key if re.fullmatch(r"[-/_=.a-zA-Z0-9]+", key) and not key.startswith(".") else "x." + key.encode().hex()
    check_kv_key(stored, "cache key")
    return stored
