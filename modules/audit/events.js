// The module on NATS: its connection with the identity Initialize gives it (user and
// password, a token, or a credentials file; none with a NATS that asks for none), replies in
// `_INBOX.audit` (the only inbox its NATS user may subscribe to), and its one durable consumer
// on MESH_EVENTS. In a mesh the coordinator creates that consumer from what Describe reports
// (`describedConsumers`) before Initialize, because a module's NATS identity may read its
// consumers but not create them; as in the Python SDK, the module looks it up first and
// creates it only when it is missing (a module run alone).
"use strict";

const fs = require("node:fs");
const { connect, credsAuthenticator } = require("@nats-io/transport-node");
const { jetstreamManager, AckPolicy, DeliverPolicy, JetStreamApiError, JetStreamApiCodes } = require("@nats-io/jetstream");
const { MeshError } = require("./errors");

const EVENT_STREAM = "MESH_EVENTS";

// A durable consumer of one handler, as the Python SDK's ConsumerSettings describes it.
class ConsumerSettings {
  constructor({ name, patterns, ackWaitSeconds, maxAckPending }) {
    Object.assign(this, { name, patterns, ackWaitSeconds, maxAckPending });
  }

  // The handler's event subjects, and its own replay subject (mesh/protocol/names.py).
  get filters() {
    return [...this.patterns.map((p) => (p === ">" ? "mesh.evt.>" : `mesh.evt.*.${p}`)), `mesh.replay.${this.name}`];
  }

  // The mesh.v1.EventConsumer that Describe reports.
  toProto() {
    return {
      name: this.name,
      patterns: [...this.patterns],
      ack_wait: { seconds: this.ackWaitSeconds, nanos: 0 },
      max_ack_pending: this.maxAckPending,
    };
  }
}

function inboxPrefix(module) {
  return `_INBOX.${module}`;
}

// One try at connecting, as the Python SDK's connect_timeout.
const CONNECT_TIMEOUT_MS = 5000;

// The nats.js connect() options for a mesh.v1.NatsSettings.
function connectOptions(module, nats) {
  const options = {
    servers: [...(nats.servers || [])],
    name: `mesh-module-${module}`,
    maxReconnectAttempts: -1,
    inboxPrefix: inboxPrefix(module),
    timeout: CONNECT_TIMEOUT_MS,
  };
  if (nats.token) options.token = nats.token;
  if (nats.user) Object.assign(options, { user: nats.user, pass: nats.password || "" });
  if (nats.credentials_file) {
    options.authenticator = credsAuthenticator(new Uint8Array(fs.readFileSync(nats.credentials_file)));
  }
  return options;
}

// How long the first connection is tried again before Initialize fails, and the pause between
// two tries. The embedded nats-server drops a connection still in its handshake when it
// reloads its users ("Authorization Violation" or a timeout), as it does for each module the
// coordinator admits while others start; nats.js retries only after a first success (its
// waitOnFirstConnect would retry forever, also a wrong address), so the first one is retried
// here, for a bounded time, as nats-py does for the Python SDK.
const FIRST_CONNECT_WITHIN_MS = 20000;
const FIRST_CONNECT_PAUSE_MS = 200;

async function connectNats(module, nats, { withinMs = FIRST_CONNECT_WITHIN_MS } = {}) {
  if (!(nats.servers || []).length) throw new Error(`the ${module} module needs NATS servers at Initialize`);
  const deadline = Date.now() + withinMs;
  let tries = 0;
  for (;;) {
    tries += 1;
    try {
      return await connect(connectOptions(module, nats));
    } catch (error) {
      if (Date.now() + FIRST_CONNECT_PAUSE_MS >= deadline) {
        throw new MeshError(
          "MODULE_UNAVAILABLE",
          `module ${module} cannot reach NATS at ${nats.servers.join(", ")}: ${error.message} ` +
            `(${tries} tries in ${Math.round(withinMs / 1000)} s); check the NATS settings passed to Initialize`,
          { module },
        );
      }
      await new Promise((resolve) => setTimeout(resolve, FIRST_CONNECT_PAUSE_MS));
    }
  }
}

const sameFilters = (a, b) => JSON.stringify([...a].sort()) === JSON.stringify([...b].sort());

// Make sure `consumer` is there with its filters: found as the coordinator created it, or
// created (or its filters brought up to date, keeping its start position) when it is not.
// `eventsSince` ({seconds}) is where a new consumer starts; none: only events from now on.
async function prepareConsumer(nc, module, consumer, eventsSince) {
  const jsm = await jetstreamManager(nc, { checkAPI: false });
  let info = null;
  try {
    info = await jsm.consumers.info(EVENT_STREAM, consumer.name);
  } catch (error) {
    if (!(error instanceof JetStreamApiError && error.code === JetStreamApiCodes.ConsumerNotFound)) {
      throw new MeshError(
        "MODULE_UNAVAILABLE",
        `module ${module} cannot look up its consumer ${consumer.name} on ${EVENT_STREAM}: ${error.message}`,
        { module, consumer: consumer.name },
      );
    }
  }
  const found = info && (info.config.filter_subjects || [info.config.filter_subject].filter(Boolean));
  if (found && sameFilters(found, consumer.filters)) return;
  const config = {
    durable_name: consumer.name,
    name: consumer.name,
    ack_policy: AckPolicy.Explicit,
    max_deliver: -1,
    ack_wait: consumer.ackWaitSeconds * 1e9,
    filter_subjects: consumer.filters,
    max_ack_pending: consumer.maxAckPending,
  };
  if (info) Object.assign(config, { deliver_policy: info.config.deliver_policy, opt_start_time: info.config.opt_start_time });
  else if (eventsSince && Number(eventsSince.seconds)) {
    Object.assign(config, {
      deliver_policy: DeliverPolicy.StartTime,
      opt_start_time: new Date(Number(eventsSince.seconds) * 1000).toISOString(),
    });
  } else config.deliver_policy = DeliverPolicy.New;
  try {
    await jsm.consumers.add(EVENT_STREAM, config);
  } catch (error) {
    throw new MeshError(
      "MODULE_UNAVAILABLE",
      `module ${module} may not ${info ? "update" : "create"} its consumer ${consumer.name} on ${EVENT_STREAM} ` +
        `(${error.message}); in a mesh the coordinator creates it from what Describe reports, so restart the ` +
        "module through the coordinator (mesh restart) to have it created again",
      { module, consumer: consumer.name },
    );
  }
}

module.exports = { ConsumerSettings, connectNats, connectOptions, prepareConsumer, inboxPrefix, EVENT_STREAM };
