"use strict";

const test = require("node:test");
const assert = require("node:assert");
const grpc = require("@grpc/grpc-js");
const { provenTenant, tenantRefusal } = require("../guard");
const { decide } = require("../gate");
const { parseIdentity } = require("../access");
const { MeshError, errorInfoOf } = require("../errors");

// A verifier whose tokens are "token-of-<tenant>" (the real one: tokens.test.js).
const tokens = {
  async verify(token) {
    if (!token.startsWith("token-of-")) throw new MeshError("UNAUTHENTICATED", "bad token", { token: "signature" });
    return { tenant: token.slice("token-of-".length), company: "", roles: [], subject: "" };
  },
};
const operator = parseIdentity("operator:viewer:ada");
const orders = parseIdentity("module:orders");

async function refusedWith(promise) {
  return promise.then(
    (value) => assert.fail(`accepted: ${JSON.stringify(value)}`),
    (error) => error,
  );
}

test("x-tenant-id is taken from mesh processes, and from anyone in plaintext", async () => {
  for (const identity of [orders, parseIdentity("mesh-coordinator")]) {
    assert.deepStrictEqual(await provenTenant({ claimed: "acme" }, identity, tokens), { tenant: "acme", authorization: "" });
  }
  assert.strictEqual((await provenTenant({ claimed: "acme" }, null, null)).tenant, "acme");
});

test("an operator must prove the tenant it claims with a token of that tenant", async () => {
  const claimed = await refusedWith(provenTenant({ claimed: "acme" }, operator, tokens));
  assert.strictEqual(claimed.reason, "UNAUTHENTICATED");
  assert.match(claimed.message, /^operator:viewer:ada may not just claim tenant acme with x-tenant-id/);
  assert.match(claimed.message, /'authorization: Bearer <token>'/);
  const proven = await provenTenant({ authorization: "Bearer token-of-acme" }, operator, tokens);
  assert.deepStrictEqual(proven, { tenant: "acme", authorization: "Bearer token-of-acme" });
  assert.strictEqual((await provenTenant({ claimed: "acme", authorization: "Bearer token-of-acme" }, operator, tokens)).tenant, "acme");
  const other = await refusedWith(provenTenant({ claimed: "globex", authorization: "Bearer token-of-acme" }, operator, tokens));
  assert.deepStrictEqual(other.metadata, { tenant: "globex", token_tenant: "acme" });
  const forged = await refusedWith(provenTenant({ authorization: "Bearer forged" }, operator, tokens));
  assert.deepStrictEqual(forged.metadata, { token: "signature" });
  assert.deepStrictEqual(await provenTenant({}, operator, tokens), { tenant: "", authorization: "" });
});

const enabledFor = (...tenants) => ({ isEnabled: (tenant) => tenants.includes(tenant) });

test("a tenant's call is served only when the module is enabled for it", () => {
  const audit = { name: "audit", requiresTenant: false, tenants: enabledFor("acme") };
  const method = "/audit.v1.Audit/ListEntries";
  assert.strictEqual(tenantRefusal(audit, method, "acme"), null);
  assert.strictEqual(tenantRefusal(audit, method, ""), null);
  const disabled = tenantRefusal(audit, method, "globex");
  assert.strictEqual(disabled.reason, "MODULE_DISABLED_FOR_TENANT");
  assert.strictEqual(disabled.code, grpc.status.PERMISSION_DENIED);
  assert.strictEqual(disabled.message, "module audit is disabled for tenant globex; enable it with: mesh tenant enable globex audit");
  assert.strictEqual(tenantRefusal({ ...audit, requiresTenant: true }, method, "").reason, "TENANT_REQUIRED");
  for (const invalid of ["_", "a.b", "x".repeat(129)]) assert.strictEqual(tenantRefusal(audit, method, invalid).reason, "INVALID_TENANT");
  assert.strictEqual(tenantRefusal({ ...audit, tenants: null }, method, "acme").reason, "MODULE_UNAVAILABLE");
});

function metadataOf(entries) {
  const metadata = new grpc.Metadata();
  for (const [key, value] of Object.entries(entries)) metadata.set(key, value);
  return metadata;
}

const running = { name: "audit", state: "RUNNING", requiresTenant: false, tenants: enabledFor("acme"), services: new Set(["audit.v1.Audit"]) };

test("the gate: identity first, then RUNNING, then the proven and enabled tenant", async () => {
  const list = "/audit.v1.Audit/ListEntries";
  const lifecycle = await decide(running, tokens, "/mesh.v1.Lifecycle/Stop", metadataOf({}), "operator:admin:root");
  assert.strictEqual(lifecycle.refused.reason, "ACCESS_DENIED");
  assert.strictEqual((await decide(running, tokens, list, metadataOf({}), "stranger")).refused.reason, "UNAUTHENTICATED");
  const registered = { ...running, state: "REGISTERED" };
  const health = await decide(registered, tokens, "/grpc.health.v1.Health/Check", metadataOf({}), "operator:viewer:ada");
  assert.ok(health.metadata);
  const early = await decide({ ...running, state: "INITIALIZED" }, tokens, list, metadataOf({}), "module:orders");
  assert.strictEqual(early.refused.reason, "MODULE_UNAVAILABLE");
  assert.strictEqual(early.refused.message, "module audit is INITIALIZED; it serves audit.v1.Audit only while RUNNING");
  const claimed = await decide(running, tokens, list, metadataOf({ "x-tenant-id": "acme" }), "operator:viewer:ada");
  assert.strictEqual(claimed.refused.reason, "UNAUTHENTICATED");
  const globex = metadataOf({ authorization: "Bearer token-of-globex" });
  const disabled = await decide(running, tokens, list, globex, "operator:viewer:ada");
  assert.strictEqual(disabled.refused.reason, "MODULE_DISABLED_FOR_TENANT");
});

test("an admitted call carries the proven tenant to its handler, and nothing else claimed", async () => {
  const list = "/audit.v1.Audit/ListEntries";
  const proven = await decide(running, tokens, list, metadataOf({ authorization: "Bearer token-of-acme" }), "operator:viewer:ada");
  assert.deepStrictEqual(proven.metadata.get("x-tenant-id"), ["acme"]);
  const forwarded = await decide(running, tokens, list, metadataOf({ "x-tenant-id": "acme" }), "module:orders");
  assert.deepStrictEqual(forwarded.metadata.get("x-tenant-id"), ["acme"]);
  const plaintext = await decide(running, null, list, metadataOf({ "x-tenant-id": "globex" }), null);
  assert.strictEqual(plaintext.refused.reason, "MODULE_DISABLED_FOR_TENANT");
});

test("a refusal travels as the status of its reason with the mesh ErrorInfo, as the Python side sends it", () => {
  const status = new MeshError("MODULE_DISABLED_FOR_TENANT", "module audit is disabled", { module: "audit", tenant: "acme" }).toStatus();
  assert.strictEqual(status.code, grpc.status.PERMISSION_DENIED);
  assert.strictEqual(status.details, "module audit is disabled");
  assert.deepStrictEqual(errorInfoOf(status.metadata), {
    reason: "MODULE_DISABLED_FOR_TENANT",
    domain: "mesh.v1",
    metadata: { module: "audit", tenant: "acme" },
  });
  assert.throws(() => new MeshError("NO_SUCH_REASON", "x"), /unknown mesh error reason/);
});
