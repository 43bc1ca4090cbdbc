"use strict";

const test = require("node:test");
const assert = require("node:assert");
const { headers: natsHeaders } = require("@nats-io/transport-node");
const { unreadable, deadLetter } = require("../deadletters");

const PATTERNS = ["order.created", "transaction.completed"];

function message(subject, attributes, data = '{"order_id": 1}', info = { deliveryCount: 1, streamSequence: 7 }) {
  const headers = natsHeaders();
  for (const [key, value] of Object.entries(attributes)) headers.set(key, value);
  return { subject, headers, data: Buffer.from(data), info };
}

const valid = { "ce-id": "e1", "ce-type": "order.created", "ce-source": "mesh://orders", "ce-specversion": "1.0", "ce-tenant": "acme" };

test("a valid event for the handler is readable", () => {
  assert.strictEqual(unreadable(message("mesh.evt.acme.order.created", valid), PATTERNS), null);
  const noTenant = { ...valid };
  delete noTenant["ce-tenant"];
  assert.strictEqual(unreadable(message("mesh.evt._.order.created", noTenant), PATTERNS), null);
});

test("what is no valid event says why", () => {
  const subject = "mesh.evt.acme.order.created";
  assert.match(unreadable({ subject, headers: undefined, data: Buffer.from("{}") }, PATTERNS), /missing header\(s\) ce-id/);
  assert.match(unreadable(message(subject, { ...valid, "ce-tenant": "a b" }), PATTERNS), /ce-tenant says "a b"/);
  assert.match(unreadable(message(subject, { ...valid, "ce-type": "order.deleted" }), PATTERNS), /ce-type says/);
  assert.match(unreadable(message(subject, valid, "\u0000\u00ff junk"), PATTERNS), /not JSON/);
  assert.match(unreadable(message(subject, valid, "[1, 2]"), PATTERNS), /not a JSON object/);
  assert.match(unreadable(message("mesh.replay.audit--record", valid), PATTERNS), /names no event subject/);
  const deep = "[".repeat(100000) + "]".repeat(100000);
  assert.match(unreadable(message(subject, valid, deep), PATTERNS), /not a JSON object/);
});

test("a dead letter keeps the message, says why, and fits max_payload", () => {
  const original = message("mesh.evt.acme.order.created", { ...valid, "Nats-Msg-Id": "e1" });
  const options = { module: "audit", handler: "record", consumer: "audit--record", maxPayload: 1024 * 1024 };
  const letter = deadLetter(original, "not JSON", options);
  assert.strictEqual(letter.subject, "mesh.dlq.audit--record");
  assert.strictEqual(letter.headers["Nats-Msg-Id"], "dlq-audit--record-7");
  assert.strictEqual(letter.headers["mesh-dlq-reason"], "not JSON");
  assert.strictEqual(letter.headers["mesh-origin-subject"], "mesh.evt.acme.order.created");
  assert.strictEqual(letter.body.toString(), '{"order_id": 1}');
  const huge = message("mesh.evt.acme.order.created", valid, "x".repeat(5000));
  const cut = deadLetter(huge, "r".repeat(1000), { ...options, maxPayload: 4096 });
  assert.strictEqual(cut.headers["mesh-dlq-truncated"], "5000");
  assert.ok(cut.body.length > 0 && cut.body.length < 4096 - 1000);
});

test("a dead letter keeps within JetStream's 64 KiB of headers", () => {
  const options = { module: "audit", handler: "record", consumer: "audit--record", maxPayload: 1024 * 1024 };
  const letter = deadLetter(message("mesh.evt._.order.created", { ...valid, "ce-subject": "h".repeat(65300) }), "no", options);
  assert.strictEqual(letter.headers["ce-subject"].length, 1000);
  assert.strictEqual(letter.headers["mesh-dlq-truncated"], "15");
  assert.strictEqual(letter.body.toString(), '{"order_id": 1}');
});
