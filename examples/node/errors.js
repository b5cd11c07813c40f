'use strict';
// Errors, in the API's one vocabulary: a google.rpc.ErrorInfo (reason, domain "brook.v1",
// metadata with "retriable" and "refresh_metadata") with a canonical gRPC code and a
// message. A failed call carries it in its status details (the grpc-status-details-bin
// trailer, a google.rpc.Status); a PartitionError inside a response carries the same
// ErrorInfo in error_info. Both become a BrookError, printed and retried one way.
//
// google.rpc.Status and ErrorInfo come from protos/google/rpc (shipped beside the brook
// protos), loaded with protobufjs like the rest; no googleapis dependency.

const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protobuf = require('protobufjs');

// Reasons that guarantee nothing was appended: safe to retry after a metadata refresh.
// NOT_ENOUGH_REPLICAS_AFTER_APPEND and REQUEST_TIMED_OUT are retriable too (ErrorInfo
// metadata retriable=true), but the batch may be in the log already, so retrying them may
// duplicate records: reported instead. Reads use the same set.
const SAFE_TO_RETRY = new Set([
  'NOT_LEADER', 'LEADER_NOT_AVAILABLE', 'NOT_LEADER_OR_FOLLOWER', 'FENCED_LEADER_EPOCH',
  'UNKNOWN_LEADER_EPOCH', 'NOT_ENOUGH_REPLICAS', 'TOO_MANY_REQUESTS', 'STORAGE_ERROR',
  'NOT_COORDINATOR', 'COORDINATOR_NOT_AVAILABLE', 'REASSIGNMENT_IN_PROGRESS',
  'ELIGIBLE_LEADERS_NOT_AVAILABLE',
]);

// The options proto-loader decodes responses with (main.js): a message read from status
// details looks exactly like the same message returned by a call.
const OBJECT_OPTIONS = { longs: String, enums: String, defaults: true, oneofs: true };

// A protobufjs root of google.rpc.Status/ErrorInfo and the responses a failed call may
// carry (storage.proto, record_service.proto), resolving imports under protosDir.
function loadStatusTypes(protosDir) {
  const root = new protobuf.Root();
  root.resolvePath = (origin, target) => (path.isAbsolute(target) ? target : path.join(protosDir, target));
  root.loadSync(['google/rpc/status.proto', 'google/rpc/error_details.proto', 'brook/v1/storage.proto', 'brook/v1/record_service.proto'], { keepCase: true });
  return root;
}

// One failure: what was being done, the canonical code (a number), the message and the
// ErrorInfo ({reason, domain, metadata}; null for a transport failure, below Brook).
class BrookError extends Error {
  constructor(what, code, message, info, details = []) {
    const codeName = grpc.status[code] ?? String(code);
    super(
      info
        ? `${what}: reason=${info.reason} code=${codeName} message=${JSON.stringify(message)} domain=${info.domain} metadata=${formatMetadata(info.metadata)}`
        : `${what}: code=${codeName} message=${JSON.stringify(message)} (no ErrorInfo: transport failure)`,
    );
    this.code = code;
    this.grpcMessage = message;
    this.info = info;
    this.reason = info?.reason ?? '';
    this.details = details; // the other status details: a whole response when every partition failed
  }

  // A reason safe to retry, or a transport failure that is UNAVAILABLE (node down).
  get retriable() {
    return this.info ? SAFE_TO_RETRY.has(this.info.reason) : this.code === grpc.status.UNAVAILABLE;
  }

  // The response of type `typeName` (e.g. 'brook.v1.FetchResponse') carried in the
  // status details of a call whose every partition failed, decoded like a call's answer;
  // undefined when there is none.
  carried(typeName) {
    const found = this.details.find((any) => any.type_url.endsWith(`/${typeName}`));
    return found?.decoded;
  }
}

function formatMetadata(metadata) {
  return `{${Object.keys(metadata ?? {}).sort().map((k) => `${k}=${metadata[k]}`).join(',')}}`;
}

// A failed call (grpc-js error) as a BrookError; anything else comes back as it is.
function fromCall(types, what, error) {
  if (error instanceof BrookError || error?.code === undefined || typeof error.code !== 'number') return error;
  let info = null;
  const details = [];
  const trailer = error.metadata?.get?.('grpc-status-details-bin')?.[0];
  if (trailer) {
    const status = types.lookupType('google.rpc.Status').decode(trailer);
    for (const any of status.details) {
      const name = any.type_url.slice(any.type_url.lastIndexOf('/') + 1);
      const type = types.lookup(name);
      if (!(type instanceof protobuf.Type)) {
        details.push({ type_url: any.type_url });
        continue;
      }
      const decoded = type.toObject(type.decode(any.value), OBJECT_OPTIONS);
      if (name === 'google.rpc.ErrorInfo' && !info) info = decoded;
      else details.push({ type_url: any.type_url, decoded });
    }
  }
  return new BrookError(what, error.code, error.details ?? '', info, details);
}

// A PartitionError (as proto-loader decodes it) as a BrookError, null when unset. It
// reads error_info; the typed fields are the fallback for a server that does not send it.
function fromPartition(what, pe) {
  if (!pe) return null;
  let info = pe.error_info;
  if (!info?.reason) {
    info = {
      reason: String(pe.reason).replace(/^ERROR_REASON_/, ''),
      domain: 'brook.v1',
      metadata: { ...pe.metadata, retriable: String(pe.retriable), refresh_metadata: String(pe.refresh_metadata) },
    };
  }
  return new BrookError(what, pe.code, pe.message ?? '', info);
}

// For stderr: every Brook failure prints "WHAT: reason=R code=C message=M domain=D
// metadata={...}", whichever channel it came from.
function describe(error) {
  return error?.message ?? String(error);
}

module.exports = { BrookError, SAFE_TO_RETRY, describe, formatMetadata, fromCall, fromPartition, loadStatusTypes };
