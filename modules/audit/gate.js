// The one gate of every call, as the Python SDK's `_gated_interceptor`: the caller's identity
// against the access rules (with mTLS; plaintext has none), then, in front of the module's own
// services, open only while RUNNING and only to tenants the module is enabled for. A refused
// call ends with its status (and the mesh ErrorInfo) before any handler sees it; an admitted
// one reaches its handler with x-tenant-id set to the proven tenant (removed when it has none).
"use strict";

const grpc = require("@grpc/grpc-js");
const { refusal, parseIdentity, commonNameOf } = require("./access");
const { MeshError } = require("./errors");
const { provenTenant, tenantRefusal, TENANT_METADATA, AUTHORIZATION_METADATA } = require("./guard");

const first = (metadata, key) => String(metadata.get(key)[0] ?? "");

// What becomes of a call to `method`: {refused: MeshError} or {metadata} to pass on.
// `module`: {name, state, requiresTenant, tenants, services: Set of its own service names};
// `tokens`: the TokenVerifier with mTLS, null in plaintext.
async function decide(module, tokens, method, metadata, commonName) {
  let identity = null;
  if (tokens !== null) {
    const refused = refusal(commonName, method);
    if (refused) return { refused };
    identity = parseIdentity(commonName);
  }
  const service = method.slice(1, method.lastIndexOf("/"));
  if (!module.services.has(service)) return { metadata };
  if (module.state !== "RUNNING") {
    return {
      refused: new MeshError(
        "MODULE_UNAVAILABLE",
        `module ${module.name} is ${module.state}; it serves ${service} only while RUNNING`,
        { module: module.name, state: module.state },
      ),
    };
  }
  const claimed = { claimed: first(metadata, TENANT_METADATA), authorization: first(metadata, AUTHORIZATION_METADATA) };
  let tenant;
  try {
    ({ tenant } = await provenTenant(claimed, identity, tokens));
  } catch (error) {
    if (error instanceof MeshError) return { refused: error };
    throw error;
  }
  const refused = tenantRefusal(module, method, tenant);
  if (refused) return { refused };
  const passed = metadata.clone();
  if (tenant) passed.set(TENANT_METADATA, tenant);
  else passed.remove(TENANT_METADATA);
  return { metadata: passed };
}

// The grpc-js server interceptor over `decide`.
function gateInterceptor(module, tokens) {
  return (methodDescriptor, call) =>
    new grpc.ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (metadata, proceed) => {
            const commonName = tokens === null ? null : commonNameOf(call);
            decide(module, tokens, methodDescriptor.path, metadata, commonName)
              .then(({ refused, metadata: passed }) => (refused ? call.sendStatus(refused.toStatus()) : proceed(passed)))
              .catch((error) =>
                call.sendStatus({ code: grpc.status.INTERNAL, details: error.message, metadata: new grpc.Metadata() }),
              );
          },
        }),
    });
}

module.exports = { gateInterceptor, decide };
