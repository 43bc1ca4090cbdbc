// Messages the module cannot handle, as the Python SDK treats them (sdk/events/_delivery.py,
// mesh/protocol/deadletters.py): a message that is no valid event, or that disagrees with the
// subject it travels on, or whose data is not a JSON object, is moved to the dead-letter
// stream once with the reason, and its deliveries end (term). Nothing is retried forever and
// nothing is dropped silently; `mesh dlq` reads what this writes.
"use strict";

const { headers: natsHeaders } = require("@nats-io/transport-node");

const REQUIRED_HEADERS = ["ce-id", "ce-type", "ce-source", "ce-specversion"];
const EVENT_PREFIX = "mesh.evt.";
const REPLAY_PREFIX = "mesh.replay.";
const NO_TENANT = "_";
const ORIGIN_SUBJECT_HEADER = "mesh-origin-subject";
const MESSAGE_ID_HEADER = "Nats-Msg-Id";
const DLQ_PREFIX = "mesh-dlq-";
const TRUNCATED_HEADER = `${DLQ_PREFIX}truncated`;
const REASON_LIMIT = 4000;
const HEADER_VALUE_LIMIT = 1000;
// JetStream stores at most 64 KiB of headers with a message (error 10097).
const MAX_STORED_HEADER_BYTES = 64 * 1024;
const HEADER_OVERHEAD_BYTES = 32;
// Deliveries of a message whose handling keeps failing (NATS refusing the publish of
// audit.recorded, say) before it is dead-lettered, as the Python SDK's Durable default.
const MAX_DELIVERIES = 5;

const matches = (pattern, type) => pattern === ">" || pattern === type;

// The headers of a message as a plain object (the first value of each).
function headersOf(message) {
  const found = {};
  if (!message.headers) return found;
  for (const [key, values] of message.headers) found[key] = values[0] ?? "";
  return found;
}

// The tenant ("" for none) and type a `mesh.evt.<tenant>.<type>` subject says, or null.
function eventSubjectParts(subject) {
  if (!subject || !subject.startsWith(EVENT_PREFIX)) return null;
  const rest = subject.slice(EVENT_PREFIX.length);
  const dot = rest.indexOf(".");
  if (dot <= 0 || dot === rest.length - 1) return null;
  const tenant = rest.slice(0, dot);
  return { tenant: tenant === NO_TENANT ? "" : tenant, type: rest.slice(dot + 1) };
}

// Why `message` cannot be handled by a handler of `patterns`, or null when it can: the checks
// of mesh/protocol/cloudevents.py (required attributes, agreement with the subject, or for a
// replay with the subject its dead letter was first delivered on) and a JSON object as data.
function unreadable(message, patterns) {
  const headers = headersOf(message);
  const missing = REQUIRED_HEADERS.filter((name) => !headers[name]);
  if (missing.length) return `not a valid event: missing header(s) ${missing.join(", ")}`;
  let subject = message.subject;
  if (subject.startsWith(REPLAY_PREFIX)) {
    subject = headers[ORIGIN_SUBJECT_HEADER];
    if (!subject) return `a replay that names no event subject it was first delivered on (${ORIGIN_SUBJECT_HEADER})`;
  }
  const parts = eventSubjectParts(subject);
  if (!parts) return `${excerpt(subject)} is no event subject (mesh.evt.<tenant>.<type>)`;
  if (!patterns.some((pattern) => matches(pattern, parts.type))) {
    return `the handler subscribes to ${patterns.join(", ")}, not to ${excerpt(parts.type)}`;
  }
  const tenant = headers["ce-tenant"] || "";
  if (tenant !== parts.tenant) {
    return `event disagrees with its subject ${excerpt(subject)}: ce-tenant says ${excerpt(tenant)}`;
  }
  if (headers["ce-type"] !== parts.type) {
    return `event disagrees with its subject ${excerpt(subject)}: ce-type says ${excerpt(headers["ce-type"])}`;
  }
  let data;
  try {
    data = JSON.parse(Buffer.from(message.data || []).toString("utf8"));
  } catch (error) {
    return `payload does not validate: not JSON (${excerpt(error.message)})`;
  }
  if (data === null || typeof data !== "object" || Array.isArray(data)) return "payload does not validate: not a JSON object";
  return null;
}

function excerpt(text, limit = 60) {
  const value = String(text ?? "");
  return value.length <= limit ? JSON.stringify(value) : `${JSON.stringify(value.slice(0, limit))}… (${value.length} characters)`;
}

// The bytes a message counts against max_payload (as mesh/protocol/nats_limits.py counts them).
function messageSize(bodyLength, headers) {
  let size = bodyLength + HEADER_OVERHEAD_BYTES;
  for (const [key, value] of Object.entries(headers)) size += Buffer.byteLength(key) + Buffer.byteLength(value) + 4;
  return size;
}

// The dead letter's headers and body: the original headers (but the message id, and with the
// subject it was first delivered on) and the mesh-dlq-* ones; cut to fit max_payload (a larger
// publish closes the connection) and JetStream's 64 KiB of headers, as
// mesh/protocol/deadletters.py `bounded` does.
function deadLetter(message, reason, { module, handler, consumer, maxPayload }) {
  const original = headersOf(message);
  delete original[MESSAGE_ID_HEADER];
  if (!message.subject.startsWith(REPLAY_PREFIX)) original[ORIGIN_SUBJECT_HEADER] = message.subject;
  const info = message.info || {};
  let headers = {
    ...original,
    [`${DLQ_PREFIX}reason`]: String(reason).slice(0, REASON_LIMIT),
    [`${DLQ_PREFIX}module`]: module,
    [`${DLQ_PREFIX}handler`]: handler,
    [`${DLQ_PREFIX}consumer`]: consumer,
    [`${DLQ_PREFIX}deliveries`]: String(info.deliveryCount || 1),
    [`${DLQ_PREFIX}subject`]: message.subject,
    [`${DLQ_PREFIX}time`]: new Date().toISOString(),
    [MESSAGE_ID_HEADER]: `dlq-${consumer}-${info.streamSequence || 0}`,
  };
  let body = Buffer.from(message.data || []);
  const fits = (h, length) => messageSize(length, h) <= maxPayload && messageSize(0, h) <= MAX_STORED_HEADER_BYTES;
  if (!fits(headers, body.length)) {
    const own = (key) => key.startsWith(DLQ_PREFIX) || key === MESSAGE_ID_HEADER;
    const cut = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k, own(k) ? v : v.slice(0, HEADER_VALUE_LIMIT)]));
    cut[TRUNCATED_HEADER] = String(body.length);
    headers = fits(cut, 0) ? cut : Object.fromEntries(Object.entries(cut).filter(([k]) => own(k)));
    body = body.subarray(0, Math.max(maxPayload - messageSize(0, headers), 0));
  }
  return { subject: `mesh.dlq.${consumer}`, headers, body };
}

// Publishes the dead letter of `message` (see deadLetter) to JetStream.
async function publishDeadLetter(js, message, reason, options) {
  const letter = deadLetter(message, reason, options);
  const headers = natsHeaders();
  for (const [key, value] of Object.entries(letter.headers)) if (key !== MESSAGE_ID_HEADER) headers.set(key, value);
  await js.publish(letter.subject, letter.body, { msgID: letter.headers[MESSAGE_ID_HEADER], headers });
}

module.exports = { unreadable, deadLetter, publishDeadLetter, eventSubjectParts, headersOf, MAX_DELIVERIES, MESSAGE_ID_HEADER };
