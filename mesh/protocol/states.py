"""The module lifecycle state machine, as pure data: which call is legal in which state.

Kept apart from the servicer so the rules read in one place and test without a server.
"""

from __future__ import annotations

import enum

from mesh.v1 import module_pb2


class State(enum.Enum):
    """A module's lifecycle state; values are the mesh.v1.ModuleState numbers."""

    REGISTERED = module_pb2.MODULE_STATE_REGISTERED
    INITIALIZING = module_pb2.MODULE_STATE_INITIALIZING
    INITIALIZED = module_pb2.MODULE_STATE_INITIALIZED
    STARTING = module_pb2.MODULE_STATE_STARTING
    RUNNING = module_pb2.MODULE_STATE_RUNNING
    STOPPING = module_pb2.MODULE_STATE_STOPPING
    STOPPED = module_pb2.MODULE_STATE_STOPPED
    FAILED = module_pb2.MODULE_STATE_FAILED
    SKIPPED = module_pb2.MODULE_STATE_SKIPPED


class Call(enum.Enum):
    """The lifecycle calls that change state."""

    INITIALIZE = "Initialize"
    START = "Start"
    STOP = "Stop"
    RELOAD = "Reload"


class Verdict(enum.Enum):
    """What a call does in a given state."""

    RUN = "run"  # perform the transition
    ALREADY = "already"  # the module is where the call would take it: answer, do nothing
    ILLEGAL = "illegal"  # FAILED_PRECONDITION


# Calls are serialized by the servicer, so the transient states (INITIALIZING, STARTING,
# STOPPING) are never seen here; they exist for observers (Describe, health, watchers).
_RULES: dict[Call, dict[State, Verdict]] = {
    Call.INITIALIZE: {
        State.REGISTERED: Verdict.RUN,
        State.FAILED: Verdict.RUN,
        State.INITIALIZED: Verdict.ALREADY,
    },
    Call.START: {
        State.INITIALIZED: Verdict.RUN,
        State.RUNNING: Verdict.ALREADY,
    },
    Call.STOP: {
        State.REGISTERED: Verdict.RUN,
        State.INITIALIZED: Verdict.RUN,
        State.RUNNING: Verdict.RUN,
        State.FAILED: Verdict.RUN,
        State.STOPPED: Verdict.ALREADY,
    },
    Call.RELOAD: {
        State.INITIALIZED: Verdict.RUN,
        State.RUNNING: Verdict.RUN,
        State.FAILED: Verdict.RUN,
    },
}

# What to do instead, for the message of an illegal call.
_ADVICE: dict[tuple[Call, State], str] = {
    (Call.INITIALIZE, State.RUNNING): "use Reload to re-initialize a running module",
    (Call.INITIALIZE, State.STOPPED): "a stopped module does not come back; start a new process",
    (Call.START, State.REGISTERED): "call Initialize first",
    (Call.START, State.FAILED): "call Initialize (or Reload) again once the cause is fixed",
    (Call.START, State.STOPPED): "a stopped module does not come back; start a new process",
    (Call.RELOAD, State.REGISTERED): "call Initialize first",
    (Call.RELOAD, State.STOPPED): "a stopped module does not come back; start a new process",
}


def verdict(call: Call, state: State) -> Verdict:
    """What `call` does when the module is in `state`."""
    return _RULES[call].get(state, Verdict.ILLEGAL)


def illegal_message(module: str, call: Call, state: State) -> str:
    """The FAILED_PRECONDITION message: what was asked, the current state, what to do."""
    legal = [s.name for s, v in _RULES[call].items() if v is Verdict.RUN]
    advice = _ADVICE.get((call, state), f"{call.value} is legal in {', '.join(legal)}")
    return f"module {module} is {state.name}: {call.value} is not legal now; {advice}"
