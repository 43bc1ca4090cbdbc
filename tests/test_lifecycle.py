"""The module lifecycle over real gRPC (mTLS): every legal and illegal transition, idempotency,
health mirroring the state, failing hooks, config errors, grace periods, metrics, and who
may call a module."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from conftest import PROJECT
from greeter.v1 import greeter_pb2, greeter_pb2_grpc
from mesh.protocol.pki import CertificateAuthority
from mesh.v1 import lifecycle_pb2, lifecycle_pb2_grpc
from sdk import Health, HealthStatus, MeshError, State, error_info
from sdk.testing import eventually

CALL_SECONDS = 30  # an upper bound for a refused call to be refused, never a speed assertion
PROBE = PROJECT / "tests" / "fixtures" / "modules" / "probe"
GREETER = PROJECT / "modules" / "greeter"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
async def greeter(module_harness):
    async with module_harness(GREETER) as harness:
        yield harness


@pytest.fixture
def probe(module_harness, greeter):
    """Builds a probe harness (not started unless asked) depending on the running greeter."""

    def build(**options):
        options.setdefault("start", False)
        return module_harness(PROBE, dependencies={"greeter": greeter.address}, **options)

    return build


async def health_of(harness, service: str = "") -> int:
    reply = await harness.health.Check(health_pb2.HealthCheckRequest(service=service))
    return reply.status


async def described_state(harness) -> int:
    return (await harness.lifecycle.Describe(lifecycle_pb2.DescribeRequest())).status.state


async def expect_error(call, code: grpc.StatusCode, reason: str) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    assert raised.value.code() == code, raised.value.details()
    info = error_info(raised.value)
    assert info is not None and info.reason == reason and info.domain == "mesh.v1"
    return raised.value


async def test_the_happy_path_and_health_mirroring_every_state(probe):
    async with probe() as harness:
        assert await described_state(harness) == State.REGISTERED.value
        assert await health_of(harness) == NOT_SERVING

        reply = await harness.initialize()
        assert reply.status.state == State.INITIALIZED.value
        assert await health_of(harness) == NOT_SERVING

        reply = await harness.start()
        assert reply.status.state == State.RUNNING.value
        assert reply.status.address == harness.address
        assert await health_of(harness) == SERVING
        assert await health_of(harness, "mesh.v1.Lifecycle") == SERVING

        stopped = await harness.stop()
        assert stopped.status.state == State.STOPPED.value and not stopped.forced
        assert await health_of(harness) == NOT_SERVING
        assert harness.module.calls == ["initialize:probe", "start", "stop"]


async def test_calls_are_idempotent(probe):
    async with probe() as harness:
        await harness.initialize()
        await harness.initialize()  # same settings: nothing happens
        await harness.start()
        await harness.start()
        await harness.stop()
        again = await harness.stop()
        assert again.status.state == State.STOPPED.value
        assert harness.module.calls == ["initialize:probe", "start", "stop"]


@pytest.mark.parametrize(
    ("prepare", "call", "state", "advice"),
    [
        ([], "start", "REGISTERED", "call Initialize first"),
        ([], "reload", "REGISTERED", "call Initialize first"),
        (["initialize", "start"], "initialize", "RUNNING", "use Reload"),
        (["initialize", "stop"], "initialize", "STOPPED", "start a new process"),
        (["initialize", "stop"], "start", "STOPPED", "start a new process"),
        (["initialize", "stop"], "reload", "STOPPED", "start a new process"),
    ],
)
async def test_illegal_transitions_name_the_state(probe, prepare, call, state, advice):
    async with probe() as harness:
        for step in prepare:
            await getattr(harness, step)()
        error = await expect_error(getattr(harness, call)(), grpc.StatusCode.FAILED_PRECONDITION, "ILLEGAL_TRANSITION")
        assert f"module probe is {state}" in error.details()
        assert advice in error.details()
        assert await described_state(harness) == State[state].value


async def test_initialize_with_other_settings_asks_for_reload(probe):
    async with probe() as harness:
        await harness.initialize({"label": "one"})
        error = await expect_error(
            harness.initialize({"label": "two"}), grpc.StatusCode.FAILED_PRECONDITION, "ILLEGAL_TRANSITION"
        )
        assert "use Reload" in error.details()


async def test_reload_reinitializes_in_place_and_returns_to_running(probe):
    async with probe() as harness:
        await harness.initialize({"label": "one"})
        await harness.start()
        reply = await harness.reload({"label": "two"})
        assert reply.status.state == State.RUNNING.value
        assert harness.module.calls == ["initialize:one", "start", "stop", "initialize:two", "start"]
        assert await health_of(harness) == SERVING


async def test_a_failing_initialize_hook_fails_the_module_visibly_and_can_be_retried(probe):
    async with probe() as harness:
        error = await expect_error(
            harness.initialize({"fail_in": "initialize"}), grpc.StatusCode.INTERNAL, "HOOK_FAILED"
        )
        assert "initialize hook of module probe raised RuntimeError: disk full" in error.details()

        described = await harness.lifecycle.Describe(lifecycle_pb2.DescribeRequest())
        assert described.status.state == State.FAILED.value
        assert described.status.error.reason == "HOOK_FAILED"
        assert described.status.error.phase == "initialize"
        assert "disk full" in described.status.error.message
        health = (await harness.lifecycle.GetHealth(lifecycle_pb2.GetHealthRequest())).health
        assert health.status == HealthStatus.UNHEALTHY.value
        assert "disk full" in health.message
        assert await health_of(harness) == NOT_SERVING
        await expect_error(harness.start(), grpc.StatusCode.FAILED_PRECONDITION, "ILLEGAL_TRANSITION")

        retried = await harness.initialize({})
        assert retried.status.state == State.INITIALIZED.value
        assert not retried.status.HasField("error")


async def test_a_failing_start_hook_fails_the_module(probe):
    async with probe() as harness:
        await harness.initialize({"fail_in": "start"})
        error = await expect_error(harness.start(), grpc.StatusCode.INTERNAL, "HOOK_FAILED")
        assert "port taken" in error.details()
        assert await described_state(harness) == State.FAILED.value
        assert await health_of(harness) == NOT_SERVING


async def test_a_failing_stop_hook_still_stops(probe):
    async with probe() as harness:
        await harness.initialize({"fail_in": "stop"})
        await harness.start()
        reply = await harness.stop()
        assert reply.status.state == State.STOPPED.value


async def test_stop_honours_its_grace_then_cancels(probe):
    async with probe() as harness:
        await harness.initialize({"stop_seconds": 60, "workers": 2})
        await harness.start()
        reply = await harness.stop(grace_seconds=0.2)
        assert reply.forced
        assert reply.status.state == State.STOPPED.value
        assert harness.module.cancelled_workers == 2


async def test_background_workers_are_counted_and_cancelled_at_stop(probe):
    async with probe() as harness:
        await harness.initialize({"workers": 3})
        await harness.start()
        metrics = (await harness.lifecycle.GetMetrics(lifecycle_pb2.GetMetricsRequest())).metrics
        assert metrics.active_workers == 3
        assert metrics.custom["cache_hit_rate"] == 92.5
        reply = await harness.stop()
        assert not reply.forced
        assert harness.module.cancelled_workers == 3
        metrics = (await harness.lifecycle.GetMetrics(lifecycle_pb2.GetMetricsRequest())).metrics
        assert metrics.active_workers == 0


async def test_an_invalid_config_names_the_field_and_changes_nothing(probe):
    async with probe() as harness:
        error = await expect_error(
            harness.initialize({"workers": -1}), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_CONFIG"
        )
        assert "field 'workers'" in error.details()
        assert error_info(error).metadata["field"] == "workers"
        assert await described_state(harness) == State.REGISTERED.value

        error = await expect_error(
            harness.initialize({"colour": "red"}), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_CONFIG"
        )
        assert "field 'colour'" in error.details()


async def test_an_unhealthy_verdict_turns_standard_health_not_serving(probe):
    async with probe(start=True) as harness:
        assert await health_of(harness) == SERVING
        harness.module.health_verdict = Health(HealthStatus.UNHEALTHY, message="database gone")
        health = (await harness.lifecycle.GetHealth(lifecycle_pb2.GetHealthRequest())).health
        assert health.status == HealthStatus.UNHEALTHY.value
        assert health.message == "database gone"
        assert await health_of(harness) == NOT_SERVING

        harness.module.health_verdict = Health(HealthStatus.DEGRADED)
        await harness.lifecycle.GetHealth(lifecycle_pb2.GetHealthRequest())
        assert await health_of(harness) == SERVING


async def test_clients_reach_declared_dependencies_only(probe, greeter):
    async with probe(start=True) as harness:
        ctx = harness.module.ctx
        stub = ctx.client("greeter", greeter_pb2_grpc.GreeterStub)
        reply = await stub.SayHello(greeter_pb2.SayHelloRequest(name="probe"))
        assert reply.message == "Hello, probe!"

        with pytest.raises(MeshError) as undeclared:
            ctx.client("inventory", greeter_pb2_grpc.GreeterStub)
        assert undeclared.value.reason == "UNDECLARED_DEPENDENCY"
        assert "'inventory'" in undeclared.value.message
        assert str(PROBE / "module.toml") in undeclared.value.message

        assert not ctx.has_dependency("audit-log")
        with pytest.raises(MeshError) as optional:
            ctx.client("audit-log", greeter_pb2_grpc.GreeterStub)
        assert optional.value.reason == "MODULE_UNAVAILABLE"


async def test_own_services_answer_only_while_running(module_harness):
    async with module_harness(GREETER, start=False) as harness:
        greeter = harness.stub(greeter_pb2_grpc.GreeterStub)
        await harness.initialize()
        error = await expect_error(
            greeter.SayHello(greeter_pb2.SayHelloRequest(name="Ada")),
            grpc.StatusCode.UNAVAILABLE,
            "MODULE_UNAVAILABLE",
        )
        assert "module greeter is INITIALIZED" in error.details()
        await harness.start()
        assert (await greeter.SayHello(greeter_pb2.SayHelloRequest(name="Ada"))).count == 1
        assert await health_of(harness, "greeter.v1.Greeter") == SERVING


async def test_request_metrics_count_calls_errors_and_custom_metrics(module_harness):
    async with module_harness(GREETER) as harness:
        greeter = harness.stub(greeter_pb2_grpc.GreeterStub)
        for name in ("Ada", "Ada", "Grace"):
            await greeter.SayHello(greeter_pb2.SayHelloRequest(name=name))
        with pytest.raises(grpc.aio.AioRpcError):
            await greeter.SayHello(greeter_pb2.SayHelloRequest(name=""))
        metrics = (await harness.lifecycle.GetMetrics(lifecycle_pb2.GetMetricsRequest())).metrics

    assert metrics.name == "greeter"
    assert metrics.request_count == 4  # the module's own calls; control calls are not counted here
    assert metrics.error_count == 1
    say_hello = next(m for m in metrics.methods if m.method == "/greeter.v1.Greeter/SayHello")
    assert (say_hello.request_count, say_hello.error_count) == (4, 1)
    assert say_hello.p99_latency_ms >= say_hello.p50_latency_ms > 0
    assert any(m.method == "/mesh.v1.Lifecycle/Initialize" for m in metrics.methods)
    assert metrics.custom["people_greeted"] == 2
    assert metrics.custom["greetings_total"] == 3


async def test_describe_carries_the_manifest_and_the_config_schema(module_harness):
    async with module_harness(GREETER) as harness:
        described = await harness.lifecycle.Describe(lifecycle_pb2.DescribeRequest())
    assert described.manifest.name == "greeter"
    assert described.manifest.services == ["greeter.v1.Greeter"]
    assert '"greeting"' in described.manifest.config_schema_json
    assert described.status.version == "1.0.0"
    assert described.status.instance_id


async def test_a_running_module_checks_its_own_health_for_the_probes(probe, monkeypatch):
    monkeypatch.setenv("MESH_HEALTH_INTERVAL_SECONDS", "0.05")
    async with probe(start=True) as harness:
        assert await health_of(harness) == SERVING
        harness.module.health_verdict = Health(HealthStatus.UNHEALTHY, message="disk gone")

        async def not_serving() -> bool:
            return await health_of(harness) == NOT_SERVING

        # no GetHealth call: the periodic check must notice by itself
        await eventually(not_serving, "the periodic health check to report NOT_SERVING")


# --- who may call a module ---------------------------------------------------------------


async def test_only_the_coordinator_may_call_a_modules_lifecycle(module_harness):
    async with module_harness(GREETER) as harness:
        as_module = harness.channel_as("module:orders")
        error = await expect_error(
            lifecycle_pb2_grpc.LifecycleStub(as_module).Stop(lifecycle_pb2.StopRequest(reason="takeover")),
            grpc.StatusCode.PERMISSION_DENIED,
            "ACCESS_DENIED",
        )
        assert "module:orders may not call /mesh.v1.Lifecycle/Stop: it needs the coordinator" in error.details()
        assert harness.state is State.RUNNING

        # any mesh identity may use the module's own services and health
        reply = await greeter_pb2_grpc.GreeterStub(as_module).SayHello(greeter_pb2.SayHelloRequest(name="Ada"))
        assert reply.message == "Hello, Ada!"
        viewer = harness.channel_as("operator:viewer:ada")
        assert (await health_pb2_grpc.HealthStub(viewer).Check(health_pb2.HealthCheckRequest())).status == SERVING

        metrics = (await harness.lifecycle.GetMetrics(lifecycle_pb2.GetMetricsRequest())).metrics
    refused = next(m for m in metrics.methods if m.method == "/mesh.v1.Lifecycle/Stop")
    assert (refused.request_count, refused.error_count) == (1, 1)


async def test_plaintext_and_certificate_less_calls_never_reach_a_module(module_harness):
    async with module_harness(GREETER) as harness:
        strangers = CertificateAuthority.create().issue("mesh-coordinator")
        channels = [
            grpc.aio.insecure_channel(harness.address),
            grpc.aio.secure_channel(
                harness.address, grpc.ssl_channel_credentials(root_certificates=harness.authority.ca_pem)
            ),
            grpc.aio.secure_channel(
                harness.address,
                grpc.ssl_channel_credentials(
                    root_certificates=harness.authority.ca_pem,
                    private_key=strangers.key_pem,
                    certificate_chain=strangers.cert_pem,
                ),
            ),
        ]
        try:
            for channel in channels:
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await lifecycle_pb2_grpc.LifecycleStub(channel).Stop(
                        lifecycle_pb2.StopRequest(), timeout=CALL_SECONDS
                    )
                assert raised.value.code() == grpc.StatusCode.UNAVAILABLE, raised.value.details()
        finally:
            for channel in channels:
                await channel.close(None)
        assert harness.state is State.RUNNING


async def test_dependency_clients_present_the_renewed_certificate(probe, mesh_ca):
    async with probe(start=True) as harness:
        folder = harness.server.transport.folder
        # a certificate the dependency does not trust, then the renewal from the mesh's CA
        CertificateAuthority.create().issue("module:probe").write(folder)
        stub = harness.module.ctx.client("greeter", greeter_pb2_grpc.GreeterStub)
        await expect_unavailable(stub.SayHello(greeter_pb2.SayHelloRequest(name="probe"), timeout=CALL_SECONDS))
        mesh_ca.issue("module:probe").write(folder)
        reply = await stub.SayHello(greeter_pb2.SayHelloRequest(name="probe"), timeout=CALL_SECONDS)
        assert reply.message == "Hello, probe!"


async def expect_unavailable(call) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE, raised.value.details()
