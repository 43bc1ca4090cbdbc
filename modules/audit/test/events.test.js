"use strict";

const test = require("node:test");
const assert = require("node:assert");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { ConsumerSettings, connectOptions } = require("../events");

test("NATS: the identity Initialize gives, and replies in the module's own inbox", () => {
  const anonymous = connectOptions("audit", { servers: ["nats://127.0.0.1:4222"] });
  assert.strictEqual(anonymous.inboxPrefix, "_INBOX.audit");
  assert.ok(!("user" in anonymous) && !("token" in anonymous) && !("authenticator" in anonymous));
  const user = connectOptions("audit", { servers: ["nats://n:4222"], user: "audit", password: "secret" });
  assert.deepStrictEqual([user.user, user.pass], ["audit", "secret"]);
  assert.strictEqual(connectOptions("audit", { servers: ["nats://n:4222"], token: "t0k" }).token, "t0k");
  const folder = fs.mkdtempSync(path.join(os.tmpdir(), "audit-creds-"));
  const credentials = path.join(folder, "audit.creds");
  fs.writeFileSync(credentials, "-----BEGIN NATS USER JWT-----\nx\n------END NATS USER JWT------\n");
  try {
    const options = connectOptions("audit", { servers: ["nats://n:4222"], credentials_file: credentials });
    assert.strictEqual(typeof options.authenticator, "function");
  } finally {
    fs.rmSync(folder, { recursive: true, force: true });
  }
});

test("the consumer as Describe reports it, and the subjects it reads", () => {
  const consumer = new ConsumerSettings({ name: "audit--record", patterns: ["order.created", ">"], ackWaitSeconds: 30, maxAckPending: 16 });
  assert.deepStrictEqual(consumer.toProto(), {
    name: "audit--record",
    patterns: ["order.created", ">"],
    ack_wait: { seconds: 30, nanos: 0 },
    max_ack_pending: 16,
  });
  assert.deepStrictEqual(consumer.filters, ["mesh.evt.*.order.created", "mesh.evt.>", "mesh.replay.audit--record"]);
});
