// The audit module, in Node.js: a mesh module in another language.
//
// It serves mesh.v1.Lifecycle (from proto/mesh/v1), the standard grpc.health.v1.Health
// (NOT_SERVING until RUNNING) and server reflection, binds MESH_LISTEN with mTLS from
// MESH_TLS_DIR (or plaintext on loopback with MESH_INSECURE=1; transport.js), takes
// Lifecycle calls only from the coordinator and audit.v1.Audit calls only for tenants proven
// and enabled (one gate: gate.js, access.js, guard.js, tokens.js, tenancy.js), reports its
// address in MESH_READY_FILE, registers with MESH_COORDINATOR when set, stops when its stdin
// closes (MESH_EXIT_WITH_PARENT=1) or on SIGTERM/SIGINT, and handles and publishes events in
// the same CloudEvents NATS binding as the Python SDK (ce- headers, JSON body, a durable
// JetStream consumer per handler on the MESH_EVENTS stream; events.js).
"use strict";

const crypto = require("node:crypto");
const fs = require("node:fs");
const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");
const { ReflectionService } = require("@grpc/reflection");
const { HealthImplementation, protoPath: healthProtoPath } = require("grpc-health-check");
const { headers: natsHeaders } = require("@nats-io/transport-node");
const { jetstream } = require("@nats-io/jetstream");
const { State, verdict, illegalMessage } = require("./lifecycle");
const { Transport } = require("./transport");
const { MeshError } = require("./errors");
const { ConsumerSettings, connectNats, prepareConsumer, EVENT_STREAM } = require("./events");
const { gateInterceptor } = require("./gate");
const { TENANT_METADATA } = require("./guard");
const { TenantView } = require("./tenancy");
const { unreadable, publishDeadLetter, MAX_DELIVERIES } = require("./deadletters");
const { TokenVerifier } = require("./tokens");

const MODULE_DIR = __dirname;
const NAME = "audit";
const VERSION = "1.0.0";
const SERVICE = "audit.v1.Audit";
const SUBSCRIBES = ["order.created", "transaction.completed"];
// Events are handled one at a time, so a few unacknowledged at once are plenty.
// The most entries kept in memory (the newest); older ones are dropped as new ones come.
const MAX_ENTRIES = 1000;
const CONSUMER = new ConsumerSettings({ name: `${NAME}--record`, patterns: SUBSCRIBES, ackWaitSeconds: 30, maxAckPending: 16 });
const INSTANCE_ID = crypto.randomUUID().replace(/-/g, "");
const log = (...parts) => process.stderr.write(`${new Date().toISOString()} audit: ${parts.join(" ")}\n`);

const packageDefinition = protoLoader.loadSync(
  ["mesh/v1/lifecycle.proto", "mesh/v1/coordinator.proto", "audit/v1/audit.proto", path.basename(healthProtoPath)],
  {
    // grpc.health.v1 too, so that reflection lists every service served
    includeDirs: [path.resolve(MODULE_DIR, "../../proto"), path.resolve(MODULE_DIR, ".."), path.dirname(healthProtoPath)],
    keepCase: true,
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  },
);
const proto = grpc.loadPackageDefinition(packageDefinition);

class AuditModule {
  constructor() {
    // What the gate reads: the name, the state, the services it guards, whether calls need a
    // tenant (module.toml has no requires_tenant), and the tenants enabled (once initialized).
    this.name = NAME;
    this.services = new Set([SERVICE]);
    this.requiresTenant = false;
    this.tenants = null;
    this.state = State.REGISTERED;
    this.stateReason = "";
    this.error = null;
    this.address = "";
    this.settings = null;
    this.entries = [];
    this.counts = { published: 0, received: 0, failed: 0, skipped: 0 };
    this.requests = 0;
    this.nc = null;
    this.consuming = null;
    this.startedAt = null;
    this.health = new HealthImplementation({ "": "NOT_SERVING", [SERVICE]: "NOT_SERVING", "mesh.v1.Lifecycle": "SERVING" });
    this.chain = Promise.resolve(); // lifecycle calls run one at a time
  }

  setState(state, reason = "") {
    this.state = state;
    this.stateReason = reason;
    const serving = state === State.RUNNING ? "SERVING" : "NOT_SERVING";
    this.health.setStatus("", serving);
    this.health.setStatus(SERVICE, serving);
  }

  status() {
    return {
      name: NAME,
      version: VERSION,
      state: `MODULE_STATE_${this.state}`,
      address: this.address,
      description: "An audit trail of orders and transfers (Node.js).",
      state_reason: this.stateReason,
      error: this.error,
      instance_id: INSTANCE_ID,
      pid: process.pid,
    };
  }

  manifest() {
    return {
      name: NAME,
      version: VERSION,
      description: "An audit trail of orders and transfers (Node.js).",
      display_name: "Audit",
      publishes: ["audit.recorded"],
      subscribes: SUBSCRIBES,
      services: [SERVICE],
      run: { command: ["node", "index.js"] },
    };
  }

  // Serializes lifecycle calls and turns illegal ones into FAILED_PRECONDITION.
  transition(call, work) {
    const run = this.chain.then(async () => {
      const outcome = verdict(call, this.state);
      if (outcome === "illegal") {
        throw new MeshError("ILLEGAL_TRANSITION", illegalMessage(NAME, call, this.state), { module: NAME, state: this.state });
      }
      if (outcome === "run") await work();
    });
    this.chain = run.catch(() => undefined);
    return run;
  }

  async initialize(settings) {
    this.setState(State.INITIALIZING);
    try {
      await this.connectNats(settings);
      this.settings = settings;
      this.error = null;
      this.setState(State.INITIALIZED);
    } catch (error) {
      this.fail("initialize", error);
      throw error;
    }
  }

  // NATS with the identity Initialize gives, the consumer (looked up; created only when
  // missing), and the tenants' enablement; what was opened is closed again on failure.
  async connectNats(settings) {
    this.nc = await connectNats(NAME, settings.nats || {});
    try {
      await prepareConsumer(this.nc, NAME, CONSUMER, settings.events_since);
      const tenants = new TenantView(NAME);
      await tenants.open(this.nc);
      this.tenants = tenants;
    } catch (error) {
      await this.disconnect();
      throw error;
    }
  }

  async disconnect() {
    if (this.consuming) await this.consuming.close().catch(() => undefined);
    if (this.tenants) this.tenants.close();
    if (this.nc) await this.nc.drain().catch(() => undefined);
    this.consuming = null;
    this.tenants = null;
    this.nc = null;
  }

  async start() {
    this.setState(State.STARTING);
    const js = jetstream(this.nc);
    const consumer = await js.consumers.get(EVENT_STREAM, CONSUMER.name);
    this.consuming = await consumer.consume({ max_messages: CONSUMER.maxAckPending });
    (async () => {
      for await (const message of this.consuming) await this.handle(js, message);
    })().catch((error) => log("consuming stopped:", error.message));
    this.startedAt = Date.now();
    this.setState(State.RUNNING);
  }

  // One event: record it, publish `audit.recorded`, then ack (redelivered if any step fails,
  // dead-lettered after MAX_DELIVERIES). A message that is no valid event for this handler is
  // dead-lettered at once with the reason (deadletters.js). An event of a tenant the module is
  // disabled for is acknowledged and skipped, as in Python.
  async handle(js, message) {
    const reason = unreadable(message, SUBSCRIBES);
    if (reason) return this.deadLetter(js, message, reason);
    const h = message.headers;
    const id = h.get("ce-id");
    const type = h.get("ce-type");
    const tenant = h.get("ce-tenant") || "";
    if (tenant && !(this.tenants && this.tenants.isEnabled(tenant))) {
      message.ack();
      this.counts.skipped += 1;
      return;
    }
    try {
      this.record({ event_id: id, event_type: type, tenant, data_json: message.string() });
      this.counts.received += 1;
      const out = natsHeaders();
      const recordId = crypto.randomUUID().replace(/-/g, "");
      for (const [key, value] of [
        ["ce-specversion", "1.0"], ["ce-id", recordId], ["ce-source", `mesh://${NAME}`],
        ["ce-type", "audit.recorded"], ["ce-time", new Date().toISOString()], ["ce-subject", id],
        ["content-type", "application/json"],
      ]) out.set(key, value);
      if (tenant) out.set("ce-tenant", tenant);
      const traceparent = h.get("traceparent");
      if (traceparent) out.set("traceparent", traceparent);
      await js.publish(`mesh.evt.${tenant || "_"}.audit.recorded`, JSON.stringify({ event_id: id, event_type: type }), {
        msgID: recordId,
        headers: out,
      });
      this.counts.published += 1;
      message.ack();
    } catch (error) {
      log("handling", id, "failed:", error.message);
      const deliveries = (message.info && message.info.deliveryCount) || 1;
      if (deliveries >= MAX_DELIVERIES) return this.deadLetter(js, message, `${error.message} (after ${deliveries} deliveries)`);
      this.counts.failed += 1;
      message.nak(1000);
    }
  }

  // The newest MAX_ENTRIES entries are kept: the trail in memory is bounded whatever the rate
  // of events (the durable record is the audit.recorded events on NATS).
  record(entry) {
    this.entries.push(entry);
    if (this.entries.length > MAX_ENTRIES) this.entries.splice(0, this.entries.length - MAX_ENTRIES);
  }

  // Moves the message to the dead-letter stream with why, once (its message id is the
  // stream sequence), then ends its deliveries; if NATS refuses, it is redelivered later.
  async deadLetter(js, message, reason) {
    this.counts.failed += 1;
    try {
      await publishDeadLetter(js, message, reason, {
        module: NAME,
        handler: "record",
        consumer: CONSUMER.name,
        maxPayload: (this.nc && this.nc.info && this.nc.info.max_payload) || 1024 * 1024,
      });
      log("dead-lettered a message on", message.subject.slice(0, 200), ":", String(reason).slice(0, 200));
      message.term();
    } catch (error) {
      log("dead-lettering failed:", error.message);
      message.nak(1000);
    }
  }

  async stop() {
    this.setState(State.STOPPING);
    await this.disconnect();
    this.setState(State.STOPPED);
  }

  fail(phase, error) {
    const reason = error instanceof MeshError ? error.reason : "HOOK_FAILED";
    this.error = { reason, message: `the ${phase} of module ${NAME} failed: ${error.message}`, phase };
    this.setState(State.FAILED, this.error.message);
  }
}

function unary(handler) {
  return (call, callback) => {
    Promise.resolve()
      .then(() => handler(call.request, call))
      .then((reply) => callback(null, reply))
      .catch((error) =>
        callback(error instanceof MeshError ? error.toStatus() : { code: grpc.status.INTERNAL, details: error.message }),
      );
  };
}

function lifecycleService(module) {
  return {
    Describe: unary(() => ({ manifest: module.manifest(), status: module.status(), consumers: [CONSUMER.toProto()] })),
    Initialize: unary(async (request) => {
      await module.transition("Initialize", () => module.initialize(request.settings || {}));
      return { status: module.status() };
    }),
    Start: unary(async () => {
      await module.transition("Start", () => module.start());
      return { status: module.status() };
    }),
    Stop: unary(async () => {
      await module.transition("Stop", () => module.stop());
      return { status: module.status(), forced: false };
    }),
    Reload: unary(async (request) => {
      await module.transition("Reload", async () => {
        const wasRunning = module.state === State.RUNNING;
        await module.disconnect();
        await module.initialize(request.settings || {});
        if (wasRunning) await module.start();
      });
      return { status: module.status() };
    }),
    GetHealth: unary(() => ({
      health: {
        name: NAME,
        status: module.state === State.RUNNING ? "HEALTH_STATUS_HEALTHY" : "HEALTH_STATUS_UNHEALTHY",
        state: `MODULE_STATE_${module.state}`,
        message: module.state === State.RUNNING ? "" : `the module is ${module.state}`,
        uptime: { seconds: module.startedAt ? Math.floor((Date.now() - module.startedAt) / 1000) : 0 },
      },
    })),
    GetMetrics: unary(() => ({
      metrics: {
        name: NAME,
        request_count: module.requests,
        events: module.counts,
        custom: { entries: module.entries.length },
      },
    })),
  };
}

// Reached only through the gate: RUNNING, and x-tenant-id is the proven tenant. A call of a
// tenant sees that tenant's entries only; a call without one (a mesh process, an operator
// without a token) sees them all.
function auditService(module) {
  return {
    ListEntries: unary((request, call) => {
      module.requests += 1;
      const [tenant] = call.metadata.get(TENANT_METADATA);
      return { entries: tenant ? module.entries.filter((entry) => entry.tenant === tenant) : module.entries };
    }),
  };
}

async function main() {
  const transport = Transport.fromEnv(process.env);
  const listen = process.env.MESH_LISTEN || "127.0.0.1:0";
  const credentials = transport.serverCredentials(listen);
  const module = new AuditModule();
  // Without TLS there are no identities and no tokens to check (MESH_INSECURE=1): x-tenant-id
  // is taken as sent, as the Python SDK does there; enablement is checked all the same.
  const tokens = transport.secure ? TokenVerifier.forModule(transport.folder, process.env) : null;
  const server = new grpc.Server({ "grpc.so_reuseport": 0, interceptors: [gateInterceptor(module, tokens)] });
  server.addService(proto.mesh.v1.Lifecycle.service, lifecycleService(module));
  server.addService(proto.audit.v1.Audit.service, auditService(module));
  module.health.addToServer(server);
  new ReflectionService(packageDefinition).addToServer(server);

  const port = await new Promise((resolve, reject) =>
    server.bindAsync(listen, credentials, (error, bound) => (error ? reject(error) : resolve(bound))),
  );
  const host = listen.slice(0, listen.lastIndexOf(":"));
  const advertised = ["0.0.0.0", "", "::", "[::]"].includes(host) ? process.env.MESH_ADVERTISE_HOST || require("node:os").hostname() : host;
  module.address = `${advertised}:${port}`;
  log(`module ${NAME} ${VERSION} serving on ${module.address} (${transport.secure ? "mTLS" : "plaintext"})`);

  if (process.env.MESH_READY_FILE) {
    const scratch = `${process.env.MESH_READY_FILE}.tmp`;
    fs.writeFileSync(scratch, JSON.stringify({ name: NAME, address: module.address, pid: process.pid, instance_id: INSTANCE_ID }));
    fs.renameSync(scratch, process.env.MESH_READY_FILE);
  }
  if (process.env.MESH_COORDINATOR) register(process.env.MESH_COORDINATOR, module, transport);

  let stopping = false;
  const shutdown = async (why) => {
    if (stopping) return;
    stopping = true;
    log(`stopping (${why})`);
    if (![State.STOPPED, State.REGISTERED].includes(module.state)) await module.transition("Stop", () => module.stop()).catch(() => undefined);
    server.tryShutdown(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  process.on("SIGINT", () => shutdown("SIGINT"));
  if (process.env.MESH_EXIT_WITH_PARENT === "1") {
    process.stdin.on("end", () => shutdown("stdin closed"));
    process.stdin.on("error", () => shutdown("stdin closed"));
    process.stdin.resume();
  }
}

// RegisterModule with the module's own certificate (read at each attempt: it may have been renewed).
function register(coordinator, module, transport, delay = 200) {
  const again = () => setTimeout(() => register(coordinator, module, transport, Math.min(delay * 2, 5000)), delay);
  let credentials;
  try {
    credentials = transport.channelCredentials();
  } catch (error) {
    log(`cannot register yet: ${error.message}`); // e.g. caught mid-renewal; the next look finds the new pair
    return again();
  }
  const client = new proto.mesh.v1.Coordinator(coordinator, credentials);
  client.RegisterModule({ address: module.address, manifest: module.manifest(), instance_id: INSTANCE_ID }, (error) => {
    client.close();
    if (!error) return log(`registered with the coordinator at ${coordinator}`);
    if (error.code === grpc.status.UNAVAILABLE) return again();
    log(`the coordinator at ${coordinator} refused the module: ${error.details}`);
    process.exit(3);
  });
}

main().catch((error) => {
  log("cannot start:", error.message);
  process.exit(1);
});
