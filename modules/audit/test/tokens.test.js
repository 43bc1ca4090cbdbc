"use strict";

const test = require("node:test");
const assert = require("node:assert");
const crypto = require("node:crypto");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const { TokenVerifier, bearerToken } = require("../tokens");

// A mesh signing key as `mesh up` makes it, its public half in a module's token-keys.pem.
function meshKey() {
  const { privateKey, publicKey } = crypto.generateKeyPairSync("ec", { namedCurve: "P-256" });
  return { privateKey, publicPem: publicKey.export({ format: "pem", type: "spki" }) };
}

const folders = [];
test.after(() => folders.forEach((folder) => fs.rmSync(folder, { recursive: true, force: true })));

function scratchFolder() {
  const folder = fs.mkdtempSync(path.join(os.tmpdir(), "audit-tokens-"));
  folders.push(folder);
  return folder;
}

function folderWith(...keys) {
  const folder = scratchFolder();
  fs.writeFileSync(path.join(folder, "token-keys.pem"), keys.map((key) => key.publicPem).join(""));
  return folder;
}

// A token as `mesh token issue` makes it (mesh/protocol/tokens.py `issue`), with overrides.
async function issue(key, claims = {}, { ttlSeconds = 3600 } = {}) {
  const { SignJWT, calculateJwkThumbprint } = await import("jose");
  const kid = await calculateJwkThumbprint(crypto.createPublicKey(key.publicPem).export({ format: "jwk" }));
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ iss: "module-mesh", aud: "module-mesh", iat: now, exp: now + ttlSeconds, tenant: "acme", ...claims })
    .setProtectedHeader({ alg: "ES256", kid })
    .sign(key.privateKey);
}

async function refusal(verifier, token) {
  const error = await verifier.verify(token).then(
    () => assert.fail("the token was accepted"),
    (refused) => refused,
  );
  assert.strictEqual(error.reason, "UNAUTHENTICATED", error.message);
  assert.strictEqual(error.code, grpc.status.UNAUTHENTICATED);
  assert.match(error.message, /mesh token issue --tenant TENANT/);
  return error;
}

test("a token signed by the mesh's key proves its tenant, company and roles", async () => {
  const key = meshKey();
  const verifier = TokenVerifier.forModule(folderWith(key), {});
  const claims = await verifier.verify(await issue(key, { company: "north", roles: ["clerk"], sub: "ada" }));
  assert.deepStrictEqual(claims, { tenant: "acme", company: "north", roles: ["clerk"], subject: "ada" });
});

test("an expired token is unauthenticated", async () => {
  const key = meshKey();
  const error = await refusal(TokenVerifier.forModule(folderWith(key), {}), await issue(key, {}, { ttlSeconds: -60 }));
  assert.deepStrictEqual(error.metadata, { token: "expired" });
  assert.match(error.message, /^the bearer token has expired/);
});

test("a token signed by another key is unauthenticated", async () => {
  const verifier = TokenVerifier.forModule(folderWith(meshKey()), {});
  const error = await refusal(verifier, await issue(meshKey()));
  assert.deepStrictEqual(error.metadata, { token: "signature" });
  assert.match(error.message, /not signed by a key this mesh trusts/);
});

test("a token of another issuer or audience is not for this mesh", async () => {
  const key = meshKey();
  const verifier = TokenVerifier.forModule(folderWith(key), {});
  for (const claims of [{ iss: "https://elsewhere.example" }, { aud: "another-service" }]) {
    const error = await refusal(verifier, await issue(key, claims));
    assert.deepStrictEqual(error.metadata, { token: "audience" });
    assert.match(error.message, /aud must be 'module-mesh', iss 'module-mesh'/);
  }
});

test("a token without a tenant, or without exp, or no token at all is refused with the problem named", async () => {
  const key = meshKey();
  const verifier = TokenVerifier.forModule(folderWith(key), {});
  assert.deepStrictEqual((await refusal(verifier, await issue(key, { tenant: "" }))).metadata, { token: "tenant" });
  assert.match((await refusal(verifier, await issue(key, { exp: undefined }))).message, /lacks the claim 'exp'/);
  assert.deepStrictEqual((await refusal(verifier, "not-a-jwt")).metadata, { token: "malformed" });
  const keyless = TokenVerifier.forModule(scratchFolder(), {});
  assert.deepStrictEqual((await refusal(keyless, await issue(key))).metadata, { token: "no-keys" });
});

test("the key file is read again when the coordinator rewrites it", async () => {
  const [first, second] = [meshKey(), meshKey()];
  const folder = folderWith(first);
  const verifier = TokenVerifier.forModule(folder, {});
  assert.strictEqual((await verifier.verify(await issue(first))).tenant, "acme");
  // One byte longer as well: a rewrite within the file system's timestamp granularity still shows.
  fs.writeFileSync(path.join(folder, "token-keys.pem"), `${second.publicPem}\n`);
  await refusal(verifier, await issue(first));
  assert.strictEqual((await verifier.verify(await issue(second))).tenant, "acme");
});

test("an external issuer's JWKS (MESH_TOKEN_JWKS) and issuer (MESH_TOKEN_ISSUER) are trusted", async () => {
  const { SignJWT } = await import("jose");
  const external = meshKey();
  const jwk = { ...crypto.createPublicKey(external.publicPem).export({ format: "jwk" }), kid: "idp-1", use: "sig" };
  const jwks = path.join(scratchFolder(), "jwks.json");
  fs.writeFileSync(jwks, JSON.stringify({ keys: [jwk] }));
  const env = { MESH_TOKEN_JWKS: jwks, MESH_TOKEN_ISSUER: "https://idp.example" };
  const verifier = TokenVerifier.forModule(folderWith(meshKey()), env);
  const now = Math.floor(Date.now() / 1000);
  const sign = (iss) =>
    new SignJWT({ iss, aud: "module-mesh", exp: now + 60, tenant: "globex" })
      .setProtectedHeader({ alg: "ES256", kid: "idp-1" })
      .sign(external.privateKey);
  assert.strictEqual((await verifier.verify(await sign("https://idp.example"))).tenant, "globex");
  assert.deepStrictEqual((await refusal(verifier, await sign("module-mesh"))).metadata, { token: "audience" });
});

test("the authorization metadata must be a bearer token", () => {
  assert.strictEqual(bearerToken("Bearer abc.def.ghi"), "abc.def.ghi");
  assert.strictEqual(bearerToken("  bearer   abc  "), "abc");
  for (const value of ["abc", "Basic abc", "Bearer ", ""]) {
    assert.throws(() => bearerToken(value), (error) => error.reason === "UNAUTHENTICATED" && error.metadata.token === "malformed");
  }
});
