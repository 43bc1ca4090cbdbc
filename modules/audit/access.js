// Who may call what on the audit module: the identity a mesh certificate names (its common
// name, as in the Python SDK's mesh/protocol/identity.py) checked against rules as data, in
// one server interceptor, so no handler can forget it. mTLS has already refused callers
// without a certificate from the mesh CA at the handshake; this decides among the others.
"use strict";

const grpc = require("@grpc/grpc-js");

const COORDINATOR_NAME = "mesh-coordinator";
const ROLES = ["viewer", "operator", "admin"];

const COORDINATOR_ONLY = "the coordinator";
const ANYONE_AUTHENTICATED = "any mesh identity";
// Full method ("/pkg.Service/Method") or service prefix ("/pkg.Service/") -> who may call it;
// anything else (health, reflection, audit.v1.Audit) is open to every mesh identity.
const RULES = { "/mesh.v1.Lifecycle/": COORDINATOR_ONLY };

// The identity a certificate's common name states, or null when it states none of ours.
function parseIdentity(commonName) {
  if (commonName === COORDINATOR_NAME) return { kind: "coordinator", name: commonName };
  const [kind, ...rest] = String(commonName || "").split(":");
  if (kind === "module" && rest.length && rest.join(":")) return { kind, name: rest.join(":") };
  if (kind === "operator" && ROLES.includes(rest[0]) && rest.slice(1).join(":")) {
    return { kind, name: rest.slice(1).join(":"), role: rest[0] };
  }
  return null;
}

// The common name of the client certificate a call came with, or null without one.
function commonNameOf(call) {
  const certificate = call.getAuthContext().sslPeerCertificate;
  const name = certificate && certificate.subject && certificate.subject.CN;
  return typeof name === "string" ? name : null;
}

// Why the caller named `commonName` may not call `method`: { code, message }, or null when it may.
function refusal(commonName, method, rules = RULES) {
  const identity = parseIdentity(commonName);
  if (!identity) {
    return {
      code: grpc.status.UNAUTHENTICATED,
      message:
        `${method} needs a client certificate from the mesh's certificate authority; get one with ` +
        "`mesh creds issue NAME --role viewer|operator|admin` (grpcurl: `mesh creds grpcurl-flags`)",
    };
  }
  const rule = rules[method] || rules[method.slice(0, method.lastIndexOf("/") + 1)] || ANYONE_AUTHENTICATED;
  if (rule === ANYONE_AUTHENTICATED || identity.kind === "coordinator") return null;
  return { code: grpc.status.PERMISSION_DENIED, message: `${commonName} may not call ${method}: it needs ${rule}` };
}

// The server interceptor: a refused call ends with its status before any handler sees it.
function accessInterceptor(methodDescriptor, call) {
  return new grpc.ServerInterceptingCall(call, {
    start: (next) =>
      next({
        onReceiveMetadata: (metadata, proceed) => {
          const refused = refusal(commonNameOf(call), methodDescriptor.path);
          if (refused) call.sendStatus({ code: refused.code, details: refused.message, metadata: new grpc.Metadata() });
          else proceed(metadata);
        },
      }),
  });
}

module.exports = { accessInterceptor, refusal, parseIdentity };
