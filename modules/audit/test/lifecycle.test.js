"use strict";

const test = require("node:test");
const assert = require("node:assert");
const { verdict, illegalMessage } = require("../lifecycle");

test("calls are legal, idempotent or illegal by state", () => {
  assert.strictEqual(verdict("Initialize", "REGISTERED"), "run");
  assert.strictEqual(verdict("Initialize", "INITIALIZED"), "already");
  assert.strictEqual(verdict("Start", "REGISTERED"), "illegal");
  assert.strictEqual(verdict("Stop", "STOPPED"), "already");
  assert.strictEqual(verdict("Reload", "STOPPED"), "illegal");
});

test("an illegal call names the state and the legal ones", () => {
  assert.strictEqual(
    illegalMessage("audit", "Start", "STOPPED"),
    "module audit is STOPPED: Start is not legal now; Start is legal in INITIALIZED",
  );
});
