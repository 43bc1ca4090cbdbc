// Which tenants the module serves, kept in memory from a watch on the NATS key-value bucket
// `mesh_tenant_modules` (key `<tenant>.<module>`, value JSON {"enabled": ...}), the same
// bucket and values the Python SDK's sdk/_tenancy.py reads: every replica learns a change at
// once, with no cache to expire. Read-only: the module's NATS identity may read the tenancy
// buckets, never write them; only the coordinator (`mesh tenant enable`) does.
"use strict";

const { jetstreamManager, JetStreamApiError, JetStreamApiCodes } = require("@nats-io/jetstream");
const { Kvm } = require("@nats-io/kv");
const { MeshError } = require("./errors");

const MODULES_BUCKET = "mesh_tenant_modules";
const BUCKET_HISTORY = 64; // as mesh/protocol/names.py: the audit trail NATS keeps per key

function isNotFound(error) {
  return error instanceof JetStreamApiError && error.code === JetStreamApiCodes.StreamNotFound;
}

// The bucket, created only when missing (a module run alone, against a NATS nobody prepared);
// in a mesh the coordinator made it at `mesh up`, and the module's identity could not.
async function openBucket(nc, module, env) {
  const jsm = await jetstreamManager(nc, { checkAPI: false });
  const kvm = new Kvm(nc);
  try {
    await jsm.streams.info(`KV_${MODULES_BUCKET}`);
    return await kvm.open(MODULES_BUCKET);
  } catch (error) {
    if (!isNotFound(error)) throw error;
  }
  try {
    return await kvm.create(MODULES_BUCKET, { history: BUCKET_HISTORY, replicas: Number(env.MESH_JETSTREAM_REPLICAS || 1) });
  } catch (error) {
    throw new MeshError(
      "MODULE_UNAVAILABLE",
      `module ${module} found no bucket ${MODULES_BUCKET} and may not create it (${error.message}); the ` +
        "coordinator creates it at `mesh up`: check that the module and the coordinator use the same NATS",
      { module },
    );
  }
}

class TenantView {
  constructor(module) {
    this.module = module;
    this.enabled = new Map();
    this.watcher = null;
  }

  // Watch the module's keys, then load their current values before returning, so that the
  // module never starts with an empty view of tenants already enabled.
  async open(nc, env = process.env) {
    const bucket = await openBucket(nc, this.module, env);
    const keys = `*.${this.module}`;
    this.watcher = await bucket.watch({ key: keys });
    (async () => {
      for await (const entry of this.watcher) this.apply(entry.key, entry.operation, entry.string());
    })().catch(() => undefined); // ends when the watcher is stopped
    for await (const key of await bucket.keys(keys)) {
      const entry = await bucket.get(key);
      if (entry) this.apply(entry.key, entry.operation, entry.string());
    }
  }

  apply(key, operation, text) {
    const tenant = key.slice(0, key.indexOf("."));
    let enabled = false;
    if (operation === "PUT" && text) {
      try {
        enabled = Boolean(JSON.parse(text).enabled);
      } catch {
        enabled = false; // a malformed value enables nothing
      }
    }
    this.enabled.set(tenant, enabled);
  }

  isEnabled(tenant) {
    return this.enabled.get(tenant) === true;
  }

  close() {
    if (this.watcher) this.watcher.stop();
    this.watcher = null;
  }
}

module.exports = { TenantView, MODULES_BUCKET };
