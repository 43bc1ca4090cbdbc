// Tenants proven, not claimed: the bearer tokens (JWT) of callers from outside the mesh,
// verified by the same rules as the Python SDK's mesh/protocol/tokens.py — ES256 signed by the
// mesh's own key (the public halves in $MESH_TLS_DIR/token-keys.pem, written by the
// coordinator) or an external issuer's key (a JWKS file named by MESH_TOKEN_JWKS, whose tokens
// carry MESH_TOKEN_ISSUER as `iss`); audience "module-mesh"; claims tenant, company, roles.
// The refusals are UNAUTHENTICATED with the same wording and the same `token` problem code.
"use strict";

const crypto = require("node:crypto");
const fs = require("node:fs");
const path = require("node:path");
const { MeshError } = require("./errors");

const ISSUER = "module-mesh";
const AUDIENCE = "module-mesh";
const ALGORITHM = "ES256";
const VERIFICATION_KEYS_FILE = "token-keys.pem";
const JWKS_ENV = "MESH_TOKEN_JWKS";
const ISSUER_ENV = "MESH_TOKEN_ISSUER";
const HOW_TO_GET = "get one with `mesh token issue --tenant TENANT` (or from the identity provider the mesh trusts)";
const REMEMBERED = 1024;
// What a JWK without `alg` is verified as (PyJWK's choice for each key type, so both sides agree).
const DEFAULT_ALGORITHMS = { "EC:P-256": "ES256", "EC:P-384": "ES384", "EC:P-521": "ES512", RSA: "RS256", "OKP:Ed25519": "EdDSA" };

// jose is an ES module: imported once, on first use, so that this CommonJS module runs on
// every Node.js the module supports.
let joseLoaded = null;
const jose = () => (joseLoaded ??= import("jose"));

function refused(problem, message) {
  return new MeshError("UNAUTHENTICATED", `${message}; ${HOW_TO_GET}`, { token: problem });
}

// The token of an `authorization: Bearer <jwt>` metadata value.
function bearerToken(authorization) {
  const value = authorization.trim();
  const space = value.indexOf(" ");
  const [scheme, token] = space < 0 ? [value, ""] : [value.slice(0, space), value.slice(space + 1).trim()];
  if (scheme.toLowerCase() !== "bearer" || !token) {
    throw refused("malformed", "the authorization metadata must be 'Bearer <token>'");
  }
  return token;
}

// The mesh's public keys in a PEM file of one or more EC public keys: [{kid, key, algorithm, issuer}].
async function keysFromPem(text) {
  const { calculateJwkThumbprint, importJWK } = await jose();
  const keys = [];
  for (const block of text.match(/-----BEGIN PUBLIC KEY-----[\s\S]*?-----END PUBLIC KEY-----/g) || []) {
    const publicKey = crypto.createPublicKey(block);
    if (publicKey.asymmetricKeyType !== "ec") continue;
    const jwk = publicKey.export({ format: "jwk" });
    // The JWK thumbprint (RFC 7638) is the `kid` the mesh signs its tokens with.
    keys.push({ kid: await calculateJwkThumbprint(jwk), key: await importJWK(jwk, ALGORITHM), algorithm: ALGORITHM, issuer: ISSUER });
  }
  return keys;
}

// An external issuer's signing keys from its JWKS document (keys without `kid` are skipped:
// tokens name their key).
async function keysFromJwks(text, issuer) {
  const { importJWK } = await jose();
  const keys = [];
  for (const jwk of JSON.parse(text).keys || []) {
    if (!jwk.kid || !(jwk.use === undefined || jwk.use === "sig")) continue;
    const algorithm = jwk.alg || DEFAULT_ALGORITHMS[jwk.crv ? `${jwk.kty}:${jwk.crv}` : jwk.kty];
    if (!algorithm) continue;
    keys.push({ kid: String(jwk.kid), key: await importJWK(jwk, algorithm), algorithm, issuer });
  }
  return keys;
}

// The claims of `token` once its signature, audience, issuer and expiry check out, with the
// time (ms) it expires.
async function decode(token, keys) {
  const { decodeProtectedHeader, jwtVerify, errors } = await jose();
  let header;
  try {
    header = decodeProtectedHeader(token);
  } catch (error) {
    throw refused("malformed", `the bearer token is malformed (${error.message})`);
  }
  if (!keys.length) throw refused("no-keys", "the bearer token cannot be verified: this module has no token keys");
  const named = keys.filter((key) => key.kid === header.kid);
  for (const key of named.length ? named : keys) {
    let payload;
    try {
      ({ payload } = await jwtVerify(token, key.key, {
        algorithms: [key.algorithm],
        audience: AUDIENCE,
        issuer: key.issuer,
        requiredClaims: ["exp", "aud", "iss"],
      }));
    } catch (error) {
      if (error instanceof errors.JWSSignatureVerificationFailed || error instanceof errors.JOSEAlgNotAllowed) continue;
      if (error instanceof TypeError) continue; // a key of another type than the token's algorithm
      if (error instanceof errors.JWTExpired) throw refused("expired", "the bearer token has expired");
      if (error instanceof errors.JWTClaimValidationFailed && error.reason === "missing") {
        throw refused("malformed", `the bearer token lacks the claim '${error.claim}'`);
      }
      if (error instanceof errors.JWTClaimValidationFailed && ["aud", "iss"].includes(error.claim)) {
        throw refused("audience", `the bearer token is not for this mesh (aud must be '${AUDIENCE}', iss '${key.issuer}')`);
      }
      throw refused("malformed", `the bearer token is malformed (${error.message})`);
    }
    return { claims: tenantClaims(payload), expires: Number(payload.exp) * 1000 };
  }
  throw refused("signature", "the bearer token is not signed by a key this mesh trusts");
}

function tenantClaims(payload) {
  const { tenant, company = "", roles = [] } = payload;
  if (typeof tenant !== "string" || !tenant) throw refused("tenant", "the bearer token names no tenant (claim 'tenant')");
  if (typeof company !== "string" || !Array.isArray(roles) || !roles.every((role) => typeof role === "string")) {
    throw refused("malformed", "the bearer token's 'company' must be a string and 'roles' a list of strings");
  }
  return { tenant, company, roles: [...roles], subject: String(payload.sub ?? "") };
}

// When a key file was last written (null when it is not there), so it is read again on change.
function versionOf(file) {
  if (!file) return null;
  try {
    const stat = fs.statSync(file);
    return `${stat.mtimeMs}:${stat.size}`;
  } catch {
    return null;
  }
}

async function readKeys(file, parse) {
  if (!file || !fs.existsSync(file)) return [];
  try {
    return await parse(fs.readFileSync(file, "utf8"));
  } catch (error) {
    throw new MeshError("INVALID_CONFIG", `the token keys in ${file} cannot be read: ${error.message}`, { file });
  }
}

// Verifies tokens with the keys in the module's files, read again when a file changes, and
// remembers verified tokens until they expire (one signature check per token, not per call).
class TokenVerifier {
  constructor(pemFile, jwksFile = null, { jwksIssuer = ISSUER } = {}) {
    this.pemFile = pemFile;
    this.jwksFile = jwksFile;
    this.jwksIssuer = jwksIssuer;
    this.keys = [];
    this.readAs = null;
    this.verified = new Map();
  }

  // The verifier of a module: token-keys.pem in its credentials folder, MESH_TOKEN_JWKS.
  static forModule(tlsDir, env) {
    return new TokenVerifier(tlsDir ? path.join(tlsDir, VERIFICATION_KEYS_FILE) : null, env[JWKS_ENV] || null, {
      jwksIssuer: env[ISSUER_ENV] || ISSUER,
    });
  }

  // The claims {tenant, company, roles, subject}; throws MeshError UNAUTHENTICATED (or
  // INVALID_CONFIG when a key file cannot be read).
  async verify(token) {
    const keys = await this.keysNow();
    const remembered = this.verified.get(token);
    if (remembered && remembered.expires > Date.now()) return remembered.claims;
    const decoded = await decode(token, keys);
    if (this.verified.size >= REMEMBERED) this.verified.clear();
    this.verified.set(token, decoded);
    return decoded.claims;
  }

  async keysNow() {
    const readAs = `${versionOf(this.pemFile)}|${versionOf(this.jwksFile)}`;
    if (readAs !== this.readAs) {
      this.keys = [
        ...(await readKeys(this.pemFile, keysFromPem)),
        ...(await readKeys(this.jwksFile, (text) => keysFromJwks(text, this.jwksIssuer))),
      ];
      this.readAs = readAs;
      this.verified.clear();
    }
    return this.keys;
  }
}

module.exports = { TokenVerifier, bearerToken, keysFromPem, AUDIENCE, ISSUER, ALGORITHM, HOW_TO_GET };
