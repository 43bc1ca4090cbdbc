// Whose word a call's tenant is, and whether the module serves that tenant: the rules of the
// Python SDK's sdk/runtime/_server.py (`proven_tenant`, `tenant_refusal`). Mesh processes (the
// coordinator, modules forwarding a call) are trusted for x-tenant-id; anyone else (operators:
// people and tools from outside the mesh) proves it with a bearer token. Plaintext has no
// identities: x-tenant-id is trusted from everyone there.
"use strict";

const { MeshError } = require("./errors");
const { bearerToken, HOW_TO_GET } = require("./tokens");

const TENANT_METADATA = "x-tenant-id";
const AUTHORIZATION_METADATA = "authorization";
const NO_TENANT = "_"; // the tenant token of an event that belongs to none
const TENANT_ID = /^[A-Za-z0-9_-]{1,128}$/;

// The tenant a call acts for ({tenant, authorization}): x-tenant-id from a mesh process (or
// from anyone, when `tokens` is null: plaintext), else the tenant of the caller's bearer
// token (an x-tenant-id beside it must agree). Throws MeshError UNAUTHENTICATED for a tenant
// claimed without a token, a token that does not verify, or a token of another tenant.
async function provenTenant({ claimed = "", authorization = "" }, identity, tokens) {
  if (tokens === null || (identity && ["coordinator", "module"].includes(identity.kind))) {
    return { tenant: claimed, authorization };
  }
  if (!authorization) {
    if (claimed) {
      throw new MeshError(
        "UNAUTHENTICATED",
        `${identity.commonName} may not just claim tenant ${claimed} with ${TENANT_METADATA}: callers from outside ` +
          `the mesh prove it with the metadata 'authorization: Bearer <token>'; ${HOW_TO_GET}`,
        { tenant: claimed },
      );
    }
    return { tenant: "", authorization: "" };
  }
  const claims = await tokens.verify(bearerToken(authorization));
  if (claimed && claimed !== claims.tenant) {
    throw new MeshError(
      "UNAUTHENTICATED",
      `${TENANT_METADATA} says tenant ${claimed} but the bearer token is for tenant ${claims.tenant}; ` +
        `leave ${TENANT_METADATA} out or send a token of ${claimed}`,
      { tenant: claimed, token_tenant: claims.tenant },
    );
  }
  return { tenant: claims.tenant, authorization };
}

// Why a call of `tenant` may not reach `method` of `module` ({name, requiresTenant, tenants:
// a TenantView or null}), or null when it may.
function tenantRefusal(module, method, tenant) {
  const { name } = module;
  if (!tenant) {
    if (!module.requiresTenant) return null;
    return new MeshError(
      "TENANT_REQUIRED",
      `module ${name} serves only calls of a tenant: send the ${TENANT_METADATA} metadata with ${method}`,
      { module: name },
    );
  }
  if (!TENANT_ID.test(tenant)) {
    return new MeshError("INVALID_TENANT", `tenant '${tenant}' is not valid: use 1-128 letters, digits, '-' or '_'`, {
      tenant,
    });
  }
  if (tenant === NO_TENANT) {
    return new MeshError(
      "INVALID_TENANT",
      `tenant '${NO_TENANT}' is reserved for "no tenant" (the tenant token of an event that belongs to none); use another id`,
      { tenant },
    );
  }
  if (!module.tenants) {
    return new MeshError(
      "MODULE_UNAVAILABLE",
      `module ${name} cannot check tenant ${tenant}: it has no NATS connection for tenancy`,
      { module: name, tenant },
    );
  }
  if (!module.tenants.isEnabled(tenant)) {
    return new MeshError(
      "MODULE_DISABLED_FOR_TENANT",
      `module ${name} is disabled for tenant ${tenant}; enable it with: mesh tenant enable ${tenant} ${name}`,
      { module: name, tenant },
    );
  }
  return null;
}

module.exports = { provenTenant, tenantRefusal, TENANT_METADATA, AUTHORIZATION_METADATA };
