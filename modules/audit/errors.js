// Errors as values, as the Python side sends them (mesh/protocol/errors.py): a reason code
// from mesh.v1.ErrorReason, a message that says what and how to fix it, and one gRPC status
// per reason. The reason travels as a google.rpc.ErrorInfo (domain "mesh.v1") inside the
// google.rpc.Status of the `grpc-status-details-bin` trailer, so every mesh client reads it
// the same way whichever language answered.
"use strict";

const grpc = require("@grpc/grpc-js");
const protobuf = require("protobufjs");

const ERROR_DOMAIN = "mesh.v1";
const DETAILS_TRAILER = "grpc-status-details-bin";

// The reasons this module can answer with, and their status as errors.py maps them.
const STATUS_OF_REASON = Object.freeze({
  MODULE_DISABLED_FOR_TENANT: grpc.status.PERMISSION_DENIED,
  ILLEGAL_TRANSITION: grpc.status.FAILED_PRECONDITION,
  HOOK_FAILED: grpc.status.INTERNAL,
  INVALID_CONFIG: grpc.status.INVALID_ARGUMENT,
  TENANT_REQUIRED: grpc.status.INVALID_ARGUMENT,
  FEATURE_DISABLED: grpc.status.PERMISSION_DENIED,
  MODULE_UNAVAILABLE: grpc.status.UNAVAILABLE,
  INVALID_TENANT: grpc.status.INVALID_ARGUMENT,
  UNAUTHENTICATED: grpc.status.UNAUTHENTICATED,
  ACCESS_DENIED: grpc.status.PERMISSION_DENIED,
});

// google.rpc.Status and ErrorInfo (googleapis' google/rpc/*.proto), the two messages we send.
const richStatus = protobuf.Root.fromJSON({
  nested: {
    google: {
      nested: {
        protobuf: { nested: { Any: { fields: { type_url: { type: "string", id: 1 }, value: { type: "bytes", id: 2 } } } } },
        rpc: {
          nested: {
            Status: {
              fields: {
                code: { type: "int32", id: 1 },
                message: { type: "string", id: 2 },
                details: { rule: "repeated", type: "google.protobuf.Any", id: 3 },
              },
            },
            ErrorInfo: {
              fields: {
                reason: { type: "string", id: 1 },
                domain: { type: "string", id: 2 },
                metadata: { keyType: "string", type: "string", id: 3 },
              },
            },
          },
        },
      },
    },
  },
});
const StatusMessage = richStatus.lookupType("google.rpc.Status");
const ERROR_INFO_TYPE_URL = "type.googleapis.com/google.rpc.ErrorInfo";
const ErrorInfoMessage = richStatus.lookupType("google.rpc.ErrorInfo");

class MeshError extends Error {
  // `reason`: a key of STATUS_OF_REASON; `metadata`: the things involved, sent in ErrorInfo.
  constructor(reason, message, metadata = {}) {
    if (!(reason in STATUS_OF_REASON)) throw new Error(`unknown mesh error reason ${reason}`);
    super(message);
    this.name = "MeshError";
    this.reason = reason;
    this.metadata = { ...metadata };
    this.code = STATUS_OF_REASON[reason];
  }

  // The status for grpc-js (a callback's error, or ServerInterceptingCall.sendStatus).
  toStatus() {
    const info = ErrorInfoMessage.encode({ reason: this.reason, domain: ERROR_DOMAIN, metadata: this.metadata }).finish();
    const status = StatusMessage.encode({
      code: this.code,
      message: this.message,
      details: [{ type_url: ERROR_INFO_TYPE_URL, value: info }],
    }).finish();
    const metadata = new grpc.Metadata();
    metadata.set(DETAILS_TRAILER, Buffer.from(status));
    return { code: this.code, details: this.message, metadata };
  }
}

// The mesh ErrorInfo in a status's trailers ({reason, domain, metadata}), or null (for tests
// and for reading what another module answered).
function errorInfoOf(metadata) {
  const [details] = metadata.get(DETAILS_TRAILER);
  if (!details) return null;
  for (const detail of StatusMessage.decode(details).details) {
    const info = ErrorInfoMessage.toObject(ErrorInfoMessage.decode(detail.value));
    if (info.domain === ERROR_DOMAIN) return { metadata: {}, ...info };
  }
  return null;
}

module.exports = { MeshError, errorInfoOf, STATUS_OF_REASON };
