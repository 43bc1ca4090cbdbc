"""Tenants, flags and layered configuration with a real coordinator, real module processes
and a real nats-server: the enable/disable rules, the guard on calls and events, config
overrides seen by two replicas without a restart, and tenant hooks.

Hook semantics (the choice made): `on_tenant_enabled` / `on_tenant_disabled` run in every
running replica of the module, once for each change of that tenant's enablement the replica
observes; writing the same value again is no change and runs nothing.
"""

from __future__ import annotations

import asyncio
import json

import grpc
import nats
import pytest

from greeter.v1 import greeter_pb2, greeter_pb2_grpc
from mesh.v1 import lifecycle_pb2, tenancy_pb2, tenancy_pb2_grpc
from meshkit import MeshDir, RunningMesh
from processes import settings
from sdk import error_info

pytestmark = pytest.mark.e2e


def tenancy(running: RunningMesh, method: str, request):
    async def call():
        async with running.channel() as channel:
            return await getattr(tenancy_pb2_grpc.TenancyStub(channel), method)(request, timeout=30)

    return asyncio.run(call())


def refused(running: RunningMesh, method: str, request) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        tenancy(running, method, request)
    return raised.value


def say_hello(
    running: RunningMesh, address: str, name: str = "x", *, tenant: str = "", company: str = "", count: bool = False
):
    metadata = [(key, value) for key, value in (("x-tenant-id", tenant), ("x-company-id", company)) if value]

    async def call():
        # as a mesh process forwarding a call: its x-tenant-id is trusted (operators need a token)
        async with running.channel(address, as_coordinator=True) as channel:
            stub = greeter_pb2_grpc.GreeterStub(channel)
            if count:
                return await stub.GetGreetingCount(greeter_pb2.GetGreetingCountRequest(name=name), metadata=metadata)
            return await stub.SayHello(greeter_pb2.SayHelloRequest(name=name), metadata=metadata)

    return asyncio.run(call())


def call_error(function, *args, **kwargs) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        function(*args, **kwargs)
    return raised.value


def test_enable_and_disable_follow_the_dependencies_both_ways(tmp_path):
    mesh = MeshDir(tmp_path)
    mesh.module("base")
    mesh.module("mid", depends=["base"])
    mesh.module("top", depends=["mid"])
    with mesh.up() as running:
        running.wait_until_up()
        with running.subjects("mesh.sys.tenant.>") as seen:
            missing = refused(running, "EnableModule", tenancy_pb2.EnableModuleRequest(tenant="t1", module="top"))
            assert missing.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert error_info(missing).reason == "MODULE_DEPENDENCY_MISSING"
            assert "module top needs base, mid enabled for tenant t1 first" in missing.details()

            enabled = tenancy(
                running,
                "EnableModule",
                tenancy_pb2.EnableModuleRequest(tenant="t1", module="top", with_dependencies=True, actor="ada"),
            )
            assert [m.module for m in enabled.changed] == ["base", "mid", "top"]
            assert all(m.enabled and m.changed_by == "ada" for m in enabled.changed)

            dependents = refused(running, "DisableModule", tenancy_pb2.DisableModuleRequest(tenant="t1", module="base"))
            assert error_info(dependents).reason == "MODULE_HAS_DEPENDENTS"
            assert "while mid, top need it" in dependents.details()

            listed = tenancy(running, "ListTenantModules", tenancy_pb2.ListTenantModulesRequest(tenant="t1"))
            assert {m.module: m.enabled for m in listed.modules} == {"base": True, "mid": True, "top": True}

            disabled = tenancy(
                running, "DisableModule", tenancy_pb2.DisableModuleRequest(tenant="t1", module="base", cascade=True)
            )
            assert [m.module for m in disabled.changed] == ["top", "mid", "base"]
            # The coordinator sends its events in order on one connection: once this marker is
            # in, every event of the calls above is too.
            tenancy(running, "EnableModule", tenancy_pb2.EnableModuleRequest(tenant="sentinel", module="base"))
            marker = "mesh.sys.tenant.sentinel.module.enabled"
            running.wait_for(lambda: marker in seen, "the sentinel tenant's event")
        assert seen == ["mesh.sys.tenant.t1.module.enabled"] * 3 + ["mesh.sys.tenant.t1.module.disabled"] * 3 + [marker]

        cli = mesh.run_cli("tenant", "enable", "t2", "mid", "--coordinator", running.address)
        assert cli.returncode == 1 and "[MODULE_DEPENDENCY_MISSING]" in cli.stderr
        cli = mesh.run_cli("tenant", "enable", "t2", "mid", "--with-dependencies", "--coordinator", running.address)
        assert cli.returncode == 0 and "t2: base, mid" in cli.stdout
        unknown = mesh.run_cli("tenant", "enable", "t2", "ghost", "--coordinator", running.address)
        assert unknown.returncode == 2 and "no module 'ghost'" in unknown.stderr
        bad = mesh.run_cli("tenant", "list", "bad.tenant", "--coordinator", running.address)
        assert bad.returncode == 2 and "[INVALID_TENANT]" in bad.stderr


def test_a_flag_just_set_is_read_back_at_once(tmp_path):
    """Each flag set is in the very next GetFeatureFlags (read-your-writes: the flags were once
    read with a key-value watch that could end before handing over the newest value)."""
    mesh = MeshDir(tmp_path)
    mesh.module("base")
    with mesh.up() as running:
        running.wait_until_up()

        async def set_and_read() -> list[list[str]]:
            seen = []
            async with running.channel() as channel:
                stub = tenancy_pb2_grpc.TenancyStub(channel)
                for n in range(30):
                    flag = tenancy_pb2.SetFeatureFlagRequest(
                        tenant="fresh", flag=f"f-{n}", enabled=n % 2 == 0, actor="t"
                    )
                    await stub.SetFeatureFlag(flag, timeout=30)
                    answer = await stub.GetFeatureFlags(tenancy_pb2.GetFeatureFlagsRequest(tenant="fresh"), timeout=30)
                    seen.append(sorted(flag.name for flag in answer.flags))
            return seen

        seen = asyncio.run(set_and_read())
        assert seen == [sorted(f"f-{m}" for m in range(n + 1)) for n in range(30)]
        flags = tenancy(running, "GetFeatureFlags", tenancy_pb2.GetFeatureFlagsRequest(tenant="fresh")).flags
        assert {flag.name: flag.enabled for flag in flags} == {f"f-{n}": n % 2 == 0 for n in range(30)}


def test_the_guard_on_calls_flags_and_events(tmp_path):
    mesh = MeshDir(tmp_path)
    mesh.module("billing", cls="Billing", subscribes=["greeting.sent"], requires_tenant=True)
    with mesh.up() as running:
        modules = running.wait_until_up()
        address = modules["billing"].address
        tenancy(running, "EnableModule", tenancy_pb2.EnableModuleRequest(tenant="acme", module="billing"))

        no_tenant = call_error(say_hello, running, address)
        assert no_tenant.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(no_tenant).reason == "TENANT_REQUIRED"
        other = call_error(say_hello, running, address, tenant="other")
        assert other.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_info(other).reason == "MODULE_DISABLED_FOR_TENANT"
        assert "module billing is disabled for tenant other" in other.details()
        reply = running.wait_for(lambda: _try(say_hello, running, address, tenant="acme"), "acme to be served")
        assert reply.message.startswith("acme pays in USD")

        flag_off = call_error(say_hello, running, address, tenant="acme", count=True)
        assert error_info(flag_off).reason == "FEATURE_DISABLED"
        assert "feature flag 'advanced-reporting' is off for tenant acme" in flag_off.details()
        set_flag = mesh.run_cli("flags", "set", "acme", "advanced-reporting", "on", "--coordinator", running.address)
        assert set_flag.returncode == 0, set_flag.stderr
        counted = running.wait_for(
            lambda: _try(say_hello, running, address, tenant="acme", count=True), "the flag to arrive"
        )
        assert counted.count == 42
        flags = mesh.run_cli("flags", "get", "acme", "--coordinator", running.address)
        assert flags.stdout.split()[:2] == ["advanced-reporting", "on"]

        nats_url = json.loads((mesh.state / "coordinator.json").read_text())["nats_url"]

        async def publish(tenant: str, event_id: str) -> None:
            client = await nats.connect(nats_url, **running.nats_login())
            headers = {
                "ce-id": event_id,
                "ce-type": "greeting.sent",
                "ce-source": "test",
                "ce-specversion": "1.0",
                "ce-tenant": tenant,
                "Nats-Msg-Id": event_id,
            }
            await client.jetstream().publish(f"mesh.evt.{tenant}.greeting.sent", b'{"name": "x"}', headers=headers)
            await client.close()

        asyncio.run(publish("other", "for-other"))
        asyncio.run(publish("acme", "for-acme"))
        running.wait_for(lambda: ("billed", "acme") in mesh.records(), "the acme event to be billed")

        async def metrics():
            async with running.channel(address, as_coordinator=True) as channel:
                from mesh.v1 import lifecycle_pb2_grpc

                reply = await lifecycle_pb2_grpc.LifecycleStub(channel).GetMetrics(lifecycle_pb2.GetMetricsRequest())
                return reply.metrics

        counts = running.wait_for(lambda: (m := asyncio.run(metrics())).events.skipped == 1 and m, "one skipped event")
        assert ("billed", "other") not in mesh.records()
        assert counts.events.received == 1


def test_config_overrides_reach_two_replicas_without_restart_and_are_validated_first(tmp_path, spawn):
    mesh = MeshDir(tmp_path)
    mesh.module("billing", cls="Billing", subscribes=["greeting.sent"])
    with mesh.up() as running:
        modules = running.wait_until_up()
        replica = spawn(mesh.modules / "billing", env=mesh.environment(), pki=mesh.state / "pki")
        replica.bring_up(settings(nats=running.module_nats("billing")))
        replicas = [modules["billing"].address, replica.address]
        tenancy(running, "EnableModule", tenancy_pb2.EnableModuleRequest(tenant="acme", module="billing"))
        for address in replicas:
            running.wait_for(lambda a=address: _try(say_hello, running, a, tenant="acme"), "acme to be served")

        set_tenant = mesh.run_cli(
            "config", "set", "billing", "acme", '{"currency": "EUR"}', "--coordinator", running.address
        )
        assert set_tenant.returncode == 0, set_tenant.stderr
        set_company = mesh.run_cli(
            "config",
            "set",
            "billing",
            "acme",
            '{"invoice": {"prefix": "ACME-"}}',
            "--company",
            "c7",
            "--coordinator",
            running.address,
        )
        assert set_company.returncode == 0, set_company.stderr
        for address in replicas:
            running.wait_for(
                lambda a=address: (
                    "pays in EUR, invoices ACME-" in _try(say_hello, running, a, tenant="acme", company="c7").message
                ),
                "both replicas to see the overrides",
            )
            assert "pays in EUR, invoices INV" in say_hello(running, address, tenant="acme").message

        for override, path in (
            ('{"tax_rate": 2}', "tax_rate"),
            ('{"invoice": {"digits": 0}}', "invoice.digits"),
            ('{"curency": "GBP"}', "curency"),
        ):
            bad = mesh.run_cli("config", "set", "billing", "acme", override, "--coordinator", running.address)
            assert bad.returncode == 2, bad.stderr
            assert f"configuration of module billing is invalid at '{path}'" in bad.stderr
            assert "[INVALID_CONFIG]" in bad.stderr
        stored = tenancy(running, "GetConfig", tenancy_pb2.GetConfigRequest(module="billing", tenant="acme"))
        assert dict(stored.config) == {"currency": "EUR"}, "a rejected override was stored"

        effective = tenancy(
            running,
            "GetEffectiveConfig",
            tenancy_pb2.GetEffectiveConfigRequest(module="billing", tenant="acme", company="c7"),
        )
        sources = {source.path: source.layer for source in effective.sources}
        assert sources["currency"] == tenancy_pb2.CONFIG_LAYER_TENANT
        assert sources["invoice.prefix"] == tenancy_pb2.CONFIG_LAYER_COMPANY
        assert sources["tax_rate"] == tenancy_pb2.CONFIG_LAYER_MODULE_DEFAULT
        assert effective.config["invoice"]["prefix"] == "ACME-"
        shown = mesh.run_cli(
            "config", "effective", "billing", "acme", "--company", "c7", "--coordinator", running.address
        )
        assert "company" in shown.stdout and "ACME-" in shown.stdout
        assert replica.stop() == 0


def test_tenant_hooks_run_once_per_change_in_every_replica(tmp_path, spawn):
    mesh = MeshDir(tmp_path)
    mesh.module("billing", cls="Billing", subscribes=["greeting.sent"])
    with mesh.up() as running:
        modules = running.wait_until_up()
        replica = spawn(mesh.modules / "billing", env=mesh.environment(), pki=mesh.state / "pki")
        replica.bring_up(settings(nats=running.module_nats("billing")))
        pids = {modules["billing"].pid, replica.popen.pid}

        def hook_lines(kind: str) -> list[str]:
            return [name for event, name in mesh.records() if event == kind]

        enable = tenancy_pb2.EnableModuleRequest(tenant="acme", module="billing")
        tenancy(running, "EnableModule", enable)
        running.wait_for(lambda: len(hook_lines("enabled")) == 2, "both replicas to run on_tenant_enabled")
        tenancy(running, "EnableModule", enable)  # no change: no hook
        tenancy(running, "DisableModule", tenancy_pb2.DisableModuleRequest(tenant="acme", module="billing"))
        running.wait_for(lambda: len(hook_lines("disabled")) == 2, "both replicas to run on_tenant_disabled")
        assert sorted(hook_lines("enabled")) == sorted(f"acme@{pid}" for pid in pids)
        assert sorted(hook_lines("disabled")) == sorted(f"acme@{pid}" for pid in pids)
        assert replica.stop() == 0


def _try(function, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    except grpc.aio.AioRpcError:
        return None
