"""SDK parts that need no server: the state machine rules, latency quantiles, servicer
discovery and the error mapping."""

from __future__ import annotations

import grpc
import pytest

from greeter.v1 import greeter_pb2_grpc
from sdk import MeshError, Module
from sdk._metrics import LatencyHistogram
from sdk._module import served_services
from sdk._state import Call, State, Verdict, illegal_message, verdict


@pytest.mark.parametrize(
    ("call", "state", "expected"),
    [
        (Call.INITIALIZE, State.REGISTERED, Verdict.RUN),
        (Call.INITIALIZE, State.FAILED, Verdict.RUN),
        (Call.INITIALIZE, State.INITIALIZED, Verdict.ALREADY),
        (Call.INITIALIZE, State.RUNNING, Verdict.ILLEGAL),
        (Call.START, State.INITIALIZED, Verdict.RUN),
        (Call.START, State.RUNNING, Verdict.ALREADY),
        (Call.START, State.REGISTERED, Verdict.ILLEGAL),
        (Call.STOP, State.RUNNING, Verdict.RUN),
        (Call.STOP, State.REGISTERED, Verdict.RUN),
        (Call.STOP, State.STOPPED, Verdict.ALREADY),
        (Call.STOP, State.SKIPPED, Verdict.ILLEGAL),
        (Call.RELOAD, State.RUNNING, Verdict.RUN),
        (Call.RELOAD, State.STOPPED, Verdict.ILLEGAL),
    ],
)
def test_transition_rules(call, state, expected):
    assert verdict(call, state) is expected


def test_an_illegal_call_without_advice_lists_the_legal_states():
    message = illegal_message("orders", Call.STOP, State.SKIPPED)
    assert (
        message
        == "module orders is SKIPPED: Stop is not legal now; Stop is legal in REGISTERED, INITIALIZED, RUNNING, FAILED"
    )


def test_latency_quantiles_come_from_the_buckets():
    histogram = LatencyHistogram()
    for milliseconds in [0.3] * 98 + [40, 4000]:
        histogram.observe(milliseconds)
    assert histogram.quantile(0.5) == 0.5
    assert histogram.quantile(0.99) == 50
    assert LatencyHistogram().quantile(0.99) == 0.0


def test_served_services_come_from_the_generated_servicer_bases():
    class Greeter(Module, greeter_pb2_grpc.GreeterServicer):
        pass

    class Plain(Module):
        pass

    assert [s.full_name for s in served_services(Greeter)] == ["greeter.v1.Greeter"]
    assert served_services(Greeter)[0].register is greeter_pb2_grpc.add_GreeterServicer_to_server
    assert served_services(Plain) == []


def test_each_reason_maps_to_one_status():
    assert MeshError("MODULE_NOT_FOUND", "x").status == grpc.StatusCode.NOT_FOUND
    assert MeshError("MODULE_DISABLED_FOR_TENANT", "x").status == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(ValueError, match="unknown mesh error reason"):
        MeshError("SOMETHING_ELSE", "x")
