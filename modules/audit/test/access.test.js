"use strict";

const test = require("node:test");
const assert = require("node:assert");
const grpc = require("@grpc/grpc-js");
const { refusal, parseIdentity } = require("../access");
const { Transport, refusePublicPlaintext } = require("../transport");

test("Lifecycle is the coordinator's alone; the rest is open to every mesh identity", () => {
  assert.strictEqual(refusal("mesh-coordinator", "/mesh.v1.Lifecycle/Stop"), null);
  assert.strictEqual(refusal("module:orders", "/audit.v1.Audit/ListEntries"), null);
  assert.strictEqual(refusal("operator:viewer:ada", "/grpc.health.v1.Health/Check"), null);
  const denied = refusal("module:orders", "/mesh.v1.Lifecycle/Stop");
  assert.strictEqual(denied.code, grpc.status.PERMISSION_DENIED);
  assert.strictEqual(denied.message, "module:orders may not call /mesh.v1.Lifecycle/Stop: it needs the coordinator");
  assert.strictEqual(refusal("operator:admin:root", "/mesh.v1.Lifecycle/Describe").code, grpc.status.PERMISSION_DENIED);
});

test("a certificate naming none of the mesh's identities is unauthenticated", () => {
  for (const name of [null, "", "someone", "module:", "operator:root:ada", "operator:admin:"]) {
    assert.strictEqual(parseIdentity(name), null, name);
    assert.strictEqual(refusal(name, "/grpc.health.v1.Health/Check").code, grpc.status.UNAUTHENTICATED, name);
  }
});

test("plaintext is refused off loopback, allowed on it", () => {
  for (const address of ["0.0.0.0:50050", "10.1.2.3:7000", "[::]:1", "orders:7000", ":7000"]) {
    assert.throws(() => refusePublicPlaintext(address), /without TLS/, address);
  }
  for (const address of ["127.0.0.1:0", "localhost:50050", "[::1]:7000"]) refusePublicPlaintext(address);
});

test("without MESH_TLS_DIR or MESH_INSECURE=1 there is no transport, and the error names both", () => {
  assert.throws(() => Transport.fromEnv({}), /MESH_TLS_DIR.*MESH_INSECURE=1/);
  assert.strictEqual(Transport.fromEnv({ MESH_INSECURE: "1" }).secure, false);
});
