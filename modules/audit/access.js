// Who may call what on the audit module: the identity a mesh certificate names (its common
// name, as in the Python SDK's mesh/protocol/identity.py) checked against rules as data by the
// one server interceptor (gate.js), so no handler can forget it. mTLS has already refused
// callers without a certificate from the mesh CA at the handshake; this decides among the others.
"use strict";

const { MeshError } = require("./errors");

const COORDINATOR_NAME = "mesh-coordinator";
const ROLES = ["viewer", "operator", "admin"];

const COORDINATOR_ONLY = "the coordinator";
const ANYONE_AUTHENTICATED = "any mesh identity";
// Full method ("/pkg.Service/Method") or service prefix ("/pkg.Service/") -> who may call it;
// anything else (health, reflection, audit.v1.Audit) is open to every mesh identity.
const RULES = { "/mesh.v1.Lifecycle/": COORDINATOR_ONLY };

// The identity a certificate's common name states ({kind, name, role, commonName}), or null
// when it states none of ours.
function parseIdentity(commonName) {
  if (commonName === COORDINATOR_NAME) return { kind: "coordinator", name: commonName, commonName };
  const [kind, ...rest] = String(commonName || "").split(":");
  if (kind === "module" && rest.length && rest.join(":")) return { kind, name: rest.join(":"), commonName };
  if (kind === "operator" && ROLES.includes(rest[0]) && rest.slice(1).join(":")) {
    return { kind, name: rest.slice(1).join(":"), role: rest[0], commonName };
  }
  return null;
}

// The common name of the client certificate a call came with, or null without one.
function commonNameOf(call) {
  const certificate = call.getAuthContext().sslPeerCertificate;
  const name = certificate && certificate.subject && certificate.subject.CN;
  return typeof name === "string" ? name : null;
}

// Why the caller named `commonName` may not call `method`: a MeshError (UNAUTHENTICATED without
// an identity of ours, ACCESS_DENIED naming what the call needs), or null when it may.
function refusal(commonName, method, rules = RULES) {
  const identity = parseIdentity(commonName);
  if (!identity) {
    return new MeshError(
      "UNAUTHENTICATED",
      `${method} needs a client certificate from the mesh's certificate authority; get one with ` +
        "`mesh creds issue NAME --role viewer|operator|admin` (grpcurl: `mesh creds grpcurl-flags`)",
      { method },
    );
  }
  const rule = rules[method] || rules[method.slice(0, method.lastIndexOf("/") + 1)] || ANYONE_AUTHENTICATED;
  if (rule === ANYONE_AUTHENTICATED || identity.kind === "coordinator") return null;
  return new MeshError("ACCESS_DENIED", `${commonName} may not call ${method}: it needs ${rule}`, {
    method,
    identity: commonName,
  });
}

module.exports = { refusal, parseIdentity, commonNameOf };
