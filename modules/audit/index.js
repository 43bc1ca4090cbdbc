// The audit module, in Node.js: a mesh module in another language.
//
// It serves mesh.v1.Lifecycle (from proto/mesh/v1), the standard grpc.health.v1.Health
// (NOT_SERVING until RUNNING) and server reflection, binds MESH_LISTEN with mTLS from
// MESH_TLS_DIR (or plaintext on loopback with MESH_INSECURE=1; transport.js), takes
// Lifecycle calls only from the coordinator (access.js), reports its address
// in MESH_READY_FILE, registers with MESH_COORDINATOR when set, stops when its stdin closes
// (MESH_EXIT_WITH_PARENT=1) or on SIGTERM/SIGINT, and handles and publishes events in the
// same CloudEvents NATS binding as the Python SDK (ce- headers, JSON body, a durable
// JetStream consumer per handler on the MESH_EVENTS stream).
"use strict";

const crypto = require("node:crypto");
const fs = require("node:fs");
const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");
const { ReflectionService } = require("@grpc/reflection");
const { HealthImplementation, protoPath: healthProtoPath } = require("grpc-health-check");
const { connect, headers: natsHeaders } = require("@nats-io/transport-node");
const { jetstream, jetstreamManager, AckPolicy, DeliverPolicy } = require("@nats-io/jetstream");
const { State, verdict, illegalMessage } = require("./lifecycle");
const { Transport } = require("./transport");
const { accessInterceptor } = require("./access");

const MODULE_DIR = __dirname;
const NAME = "audit";
const VERSION = "1.0.0";
const CONSUMER = `${NAME}--record`;
const SUBSCRIBES = ["order.created", "transaction.completed"];
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
    this.state = State.REGISTERED;
    this.stateReason = "";
    this.error = null;
    this.address = "";
    this.settings = null;
    this.entries = [];
    this.counts = { published: 0, received: 0, failed: 0 };
    this.requests = 0;
    this.nc = null;
    this.consuming = null;
    this.startedAt = null;
    this.health = new HealthImplementation({ "": "NOT_SERVING", "audit.v1.Audit": "NOT_SERVING", "mesh.v1.Lifecycle": "SERVING" });
    this.chain = Promise.resolve(); // lifecycle calls run one at a time
  }

  setState(state, reason = "") {
    this.state = state;
    this.stateReason = reason;
    const serving = state === State.RUNNING ? "SERVING" : "NOT_SERVING";
    this.health.setStatus("", serving);
    this.health.setStatus("audit.v1.Audit", serving);
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
      services: ["audit.v1.Audit"],
      run: { command: ["node", "index.js"] },
    };
  }

  // Serializes lifecycle calls and turns illegal ones into FAILED_PRECONDITION.
  transition(call, work) {
    const run = this.chain.then(async () => {
      const outcome = verdict(call, this.state);
      if (outcome === "illegal") {
        const error = new Error(illegalMessage(NAME, call, this.state));
        error.code = grpc.status.FAILED_PRECONDITION;
        throw error;
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

  async connectNats(settings) {
    const servers = (settings.nats && settings.nats.servers) || [];
    if (!servers.length) throw new Error("the audit module needs NATS servers at Initialize");
    this.nc = await connect({ servers, name: `mesh-module-${NAME}`, maxReconnectAttempts: -1 });
    const jsm = await jetstreamManager(this.nc);
    const filters = [...SUBSCRIBES.map((type) => `mesh.evt.*.${type}`), `mesh.replay.${CONSUMER}`];
    const existing = await jsm.consumers.info("MESH_EVENTS", CONSUMER).catch(() => null);
    if (!existing) {
      const since = settings.events_since;
      await jsm.consumers.add("MESH_EVENTS", {
        durable_name: CONSUMER,
        ack_policy: AckPolicy.Explicit,
        filter_subjects: filters,
        ...(since && since.seconds
          ? { deliver_policy: DeliverPolicy.StartTime, opt_start_time: new Date(Number(since.seconds) * 1000).toISOString() }
          : { deliver_policy: DeliverPolicy.New }),
      });
    }
  }

  async start() {
    this.setState(State.STARTING);
    const js = jetstream(this.nc);
    const consumer = await js.consumers.get("MESH_EVENTS", CONSUMER);
    this.consuming = await consumer.consume();
    (async () => {
      for await (const message of this.consuming) await this.handle(js, message);
    })().catch((error) => log("consuming stopped:", error.message));
    this.startedAt = Date.now();
    this.setState(State.RUNNING);
  }

  // One event: record it, publish `audit.recorded`, then ack (redelivered if any step fails).
  async handle(js, message) {
    const h = message.headers;
    const id = h && h.get("ce-id");
    const type = h && h.get("ce-type");
    if (!id || !type) {
      message.term();
      this.counts.failed += 1;
      return;
    }
    try {
      const tenant = h.get("ce-tenant") || "";
      this.entries.push({ event_id: id, event_type: type, tenant, data_json: message.string() });
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
      this.counts.failed += 1;
      log("handling", id, "failed:", error.message);
      message.nak(1000);
    }
  }

  async stop() {
    this.setState(State.STOPPING);
    if (this.consuming) await this.consuming.close().catch(() => undefined);
    if (this.nc) await this.nc.drain().catch(() => undefined);
    this.consuming = null;
    this.nc = null;
    this.setState(State.STOPPED);
  }

  fail(phase, error) {
    this.error = { reason: "HOOK_FAILED", message: `the ${phase} of module ${NAME} failed: ${error.message}`, phase };
    this.setState(State.FAILED, this.error.message);
  }
}

function unary(handler) {
  return (call, callback) => {
    Promise.resolve()
      .then(() => handler(call.request, call))
      .then((reply) => callback(null, reply))
      .catch((error) => callback({ code: error.code || grpc.status.INTERNAL, details: error.message }));
  };
}

function lifecycleService(module) {
  return {
    Describe: unary(() => ({ manifest: module.manifest(), status: module.status() })),
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
        if (module.consuming) await module.consuming.close();
        if (module.nc) await module.nc.drain();
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

function auditService(module) {
  return {
    ListEntries: unary(() => {
      if (module.state !== State.RUNNING) {
        const error = new Error(`module ${NAME} is ${module.state}; it serves audit.v1.Audit only while RUNNING`);
        error.code = grpc.status.UNAVAILABLE;
        throw error;
      }
      module.requests += 1;
      return { entries: module.entries };
    }),
  };
}

async function main() {
  const transport = Transport.fromEnv(process.env);
  const listen = process.env.MESH_LISTEN || "127.0.0.1:0";
  const credentials = transport.serverCredentials(listen);
  const module = new AuditModule();
  // Without TLS there are no identities, so nothing to check (MESH_INSECURE=1).
  const server = new grpc.Server({ "grpc.so_reuseport": 0, interceptors: transport.secure ? [accessInterceptor] : [] });
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
