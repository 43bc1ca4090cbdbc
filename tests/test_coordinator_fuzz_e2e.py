"""Malformed calls to a real coordinator (real processes, mTLS, NATS): every answer is a
refusal of the caller's input with a short message, never UNKNOWN, INTERNAL or
RESOURCE_EXHAUSTED, and the mesh answers as before afterwards (issue #13: of 500 malformed
calls, 35 gave UNKNOWN and 53 RESOURCE_EXHAUSTED)."""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import grpc
import nodesemver
import pytest
from google.protobuf import struct_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mesh.v1 import (
    coordinator_pb2,
    coordinator_pb2_grpc,
    event_pb2,
    event_pb2_grpc,
    module_pb2,
    tenancy_pb2,
    tenancy_pb2_grpc,
)
from meshkit import MeshDir, RunningMesh

pytestmark = pytest.mark.e2e

ALLOWED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.PERMISSION_DENIED,
}
MAX_DETAILS = 1_000
MODULES = ("base", "billing")

FUZZ = settings(
    derandomize=True,
    database=None,
    deadline=None,
    # MESH_FUZZ_SCALE=10 runs ten times as many (a longer run than CI's, by hand)
    max_examples=50 * int(os.environ.get("MESH_FUZZ_SCALE", "1")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

huge = st.builds(lambda char: char * 100_000, st.sampled_from(["a", "\u00e9", "\u4e2d", "\n", ".", "-"]))
junk = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["", "_", "acme\n", "acme\r\n", "a.b", "*", ">", "base", "billing", "x" * 129, "1.0.0"]),
    huge,
)
json_values = st.recursive(
    st.one_of(st.floats(), st.text(max_size=10), st.booleans(), st.none()),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def not_semver(value: str) -> bool:
    """A generated manifest must not be valid by chance: a junk module would then join."""
    return nodesemver.valid(value, False) is None


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningMesh]:
    mesh = MeshDir(tmp_path_factory.mktemp("fuzz"))
    mesh.module("base")
    mesh.module("billing", cls="Billing", depends=["base"], subscribes=["greeting.sent"])
    with mesh.up() as up:
        up.wait_until_up()
        yield up


@pytest.fixture(scope="module")
def before(running: RunningMesh) -> tuple[Any, dict[str, int]]:
    return system_state(running)


def system_state(running: RunningMesh) -> tuple[Any, dict[str, int]]:
    health = running.call(
        lambda stub: stub.GetSystemHealth(coordinator_pb2.GetSystemHealthRequest(fresh=True), timeout=60)
    )
    return health.status, {name: status.state for name, status in running.modules().items()}


def answer(running: RunningMesh, call: Callable[[grpc.aio.Channel], Awaitable[Any]]) -> grpc.StatusCode:
    """The code of one call (OK when it succeeded); asserts the answer is a short refusal."""

    async def run() -> tuple[grpc.StatusCode, str]:
        async with running.channel() as channel:
            try:
                await call(channel)
            except grpc.aio.AioRpcError as error:
                return error.code(), error.details() or ""
            return grpc.StatusCode.OK, ""

    code, details = asyncio.run(run())
    assert code in ALLOWED, (code, details[:300])
    assert len(details) <= MAX_DETAILS, (code, len(details), details[:300])
    return code


def coordinator(channel: grpc.aio.Channel) -> coordinator_pb2_grpc.CoordinatorStub:
    return coordinator_pb2_grpc.CoordinatorStub(channel)


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(value)
    return message


# --- mesh.v1.Coordinator -----------------------------------------------------------------


@FUZZ
@given(
    address=junk,
    name=junk,
    version=junk.filter(not_semver),
    dependency=junk,
    event=junk,
    schema=junk,
    instance=junk,
)
def test_register_module_with_junk(
    running: RunningMesh, before: object, address, name, version, dependency, event, schema, instance
) -> None:
    manifest = module_pb2.Manifest(
        name=name,
        version=version,
        dependencies=[module_pb2.Dependency(name=dependency, version_constraint=dependency)],
        publishes=[event],
        subscribes=[event],
        config_schema_json=schema,
        labels={name: event},
        run=module_pb2.RunSpec(command=[address]),
    )
    request = coordinator_pb2.RegisterModuleRequest(address=address, manifest=manifest, instance_id=instance)
    assert answer(running, lambda channel: coordinator(channel).RegisterModule(request, timeout=30)) is not (
        grpc.StatusCode.OK
    )


@pytest.mark.parametrize(
    "schema", ["{", "[1, 2]", '"text"', '{"type": "no-such-type"}', '{"properties": 3}', "[" * 5_000, "x" * 300_000]
)
def test_a_config_schema_that_is_no_json_schema_is_refused_at_registration(
    running: RunningMesh, before: object, schema: str
) -> None:
    manifest = module_pb2.Manifest(
        name="visitor", version="1.0.0", config_schema_json=schema, run=module_pb2.RunSpec(entry="module:Module")
    )
    request = coordinator_pb2.RegisterModuleRequest(address="127.0.0.1:9", manifest=manifest)
    assert answer(running, lambda channel: coordinator(channel).RegisterModule(request, timeout=30)) is (
        grpc.StatusCode.INVALID_ARGUMENT
    )
    assert "visitor" not in running.modules()


@FUZZ
@given(name=junk, instance=junk, force=st.booleans())
def test_deregister_module_with_junk(running: RunningMesh, before: object, name, instance, force) -> None:
    request = coordinator_pb2.DeregisterModuleRequest(name=name, instance_id=instance, force=force)
    assert answer(running, lambda channel: coordinator(channel).DeregisterModule(request, timeout=30)) is not (
        grpc.StatusCode.OK
    )


@FUZZ
@given(name=junk.filter(lambda name: name not in MODULES), config=st.dictionaries(junk, json_values, max_size=3))
def test_restart_reload_and_get_of_junk_names(running: RunningMesh, before: object, name, config) -> None:
    for call in (
        lambda channel: coordinator(channel).RestartModule(coordinator_pb2.RestartModuleRequest(name=name), timeout=30),
        lambda channel: coordinator(channel).GetModule(coordinator_pb2.GetModuleRequest(name=name), timeout=30),
        lambda channel: coordinator(channel).ReloadModule(
            coordinator_pb2.ReloadModuleRequest(name=name, config=struct(config)), timeout=30
        ),
    ):
        assert answer(running, call) is not grpc.StatusCode.OK


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf])
def test_reload_with_nan_or_infinity_is_refused(running: RunningMesh, before: object, number: float) -> None:
    request = coordinator_pb2.ReloadModuleRequest(name="billing", config=struct({"invoice": {"digits": number}}))
    assert answer(running, lambda channel: coordinator(channel).ReloadModule(request, timeout=30)) is (
        grpc.StatusCode.INVALID_ARGUMENT
    )


# --- mesh.v1.Tenancy -----------------------------------------------------------------------


@FUZZ
@given(
    method=st.sampled_from(["EnableModule", "DisableModule", "SetFeatureFlag", "SetConfig", "GetConfig", "Effective"]),
    tenant=junk,
    module=junk,
    company=junk,
    actor=junk,
    config=st.dictionaries(st.sampled_from(["tax_rate", "currency", "x"]) | junk, json_values, max_size=3),
)
def test_tenancy_calls_with_junk(running: RunningMesh, before: object, method, tenant, module, company, actor, config):
    requests: dict[str, Any] = {
        "EnableModule": tenancy_pb2.EnableModuleRequest(tenant=tenant, module=module, actor=actor),
        "DisableModule": tenancy_pb2.DisableModuleRequest(tenant=tenant, module=module, actor=actor),
        "SetFeatureFlag": tenancy_pb2.SetFeatureFlagRequest(tenant=tenant, flag=module, actor=actor, enabled=True),
        "SetConfig": tenancy_pb2.SetConfigRequest(
            module=module, tenant=tenant, company=company, config=struct(config), actor=actor
        ),
        "GetConfig": tenancy_pb2.GetConfigRequest(module=module, tenant=tenant, company=company),
        "Effective": tenancy_pb2.GetEffectiveConfigRequest(module=module, tenant=tenant, company=company),
    }
    name = "GetEffectiveConfig" if method == "Effective" else method
    answer(running, lambda channel: getattr(tenancy_pb2_grpc.TenancyStub(channel), name)(requests[method], timeout=30))


@pytest.mark.parametrize("number", [math.nan, math.inf])
@pytest.mark.parametrize("tenant", ["acme", "acme\n"])
def test_set_config_with_nan_or_a_tenant_ending_in_a_line_break_is_refused(
    running: RunningMesh, before: object, number: float, tenant: str
) -> None:
    request = tenancy_pb2.SetConfigRequest(module="billing", tenant=tenant, config=struct({"tax_rate": number}))
    assert answer(running, lambda channel: tenancy_pb2_grpc.TenancyStub(channel).SetConfig(request, timeout=30)) is (
        grpc.StatusCode.INVALID_ARGUMENT
    )


# --- mesh.v1.Events ------------------------------------------------------------------------


@FUZZ
@given(
    type_=st.one_of(junk, st.sampled_from(["order.created", "a" * 3_000 + ".b"])),
    source=junk,
    tenant=junk,
    attribute=junk,
    extensions=st.dictionaries(junk, junk, max_size=3),
    seconds=st.sampled_from([0, -(2**62), 2**62, 253402300800]),
)
def test_publish_with_junk(running: RunningMesh, before: object, type_, source, tenant, attribute, extensions, seconds):
    event = event_pb2.Event(
        type=type_,
        source=source,
        tenant=tenant,
        subject=attribute,
        company=attribute,
        dataschema=attribute,
        traceparent=attribute,
        extensions=extensions,
    )
    if seconds:
        event.time.seconds = seconds
    request = event_pb2.PublishRequest(event=event)
    answer(running, lambda channel: event_pb2_grpc.EventsStub(channel).Publish(request, timeout=30))


@FUZZ
@given(seq=st.one_of(st.just(0), st.integers(min_value=0, max_value=2**64 - 1)), keep=st.booleans())
def test_replay_of_junk_dead_letters(running: RunningMesh, before: object, seq, keep) -> None:
    request = event_pb2.ReplayDeadLetterRequest(seq=seq, keep=keep)
    assert answer(
        running, lambda channel: event_pb2_grpc.EventsStub(channel).ReplayDeadLetter(request, timeout=30)
    ) is (grpc.StatusCode.NOT_FOUND)


# --- afterwards ----------------------------------------------------------------------------


def test_the_mesh_answers_as_before_the_fuzz(running: RunningMesh, before: tuple[Any, dict[str, int]]) -> None:
    """Last in this file: the health and the modules are what they were before any junk."""
    assert system_state(running) == before
