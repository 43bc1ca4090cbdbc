// The lifecycle state machine of mesh.v1.Lifecycle (the same rules as the Python SDK's
// mesh/protocol/states.py): which call is legal in which state.
"use strict";

const State = Object.freeze({
  REGISTERED: "REGISTERED",
  INITIALIZING: "INITIALIZING",
  INITIALIZED: "INITIALIZED",
  STARTING: "STARTING",
  RUNNING: "RUNNING",
  STOPPING: "STOPPING",
  STOPPED: "STOPPED",
  FAILED: "FAILED",
});

// call -> state -> "run" | "already"; anything else is illegal.
const RULES = {
  Initialize: { REGISTERED: "run", FAILED: "run", INITIALIZED: "already" },
  Start: { INITIALIZED: "run", RUNNING: "already" },
  Stop: { REGISTERED: "run", INITIALIZED: "run", RUNNING: "run", FAILED: "run", STOPPED: "already" },
  Reload: { INITIALIZED: "run", RUNNING: "run", FAILED: "run" },
};

function verdict(call, state) {
  return RULES[call][state] || "illegal";
}

function illegalMessage(module, call, state) {
  const legal = Object.entries(RULES[call]).filter(([, v]) => v === "run").map(([s]) => s);
  return `module ${module} is ${state}: ${call} is not legal now; ${call} is legal in ${legal.join(", ")}`;
}

module.exports = { State, verdict, illegalMessage };
