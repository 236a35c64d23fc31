/**
 * Converts between StatusError and what @grpc/grpc-js puts on the wire. The rich form travels in the
 * `grpc-status-details-bin` trailer as an encoded google.rpc.Status; Bazel reads PreconditionFailure
 * from there to learn which inputs to re-upload.
 */
import * as grpc from '@grpc/grpc-js';
import { rpc } from '../proto/index.js';
import { scrubPaths } from './scrub-paths.js';
import { Code, packDetail, type StatusDetail, StatusError, toStatusError } from './status-error.js';

export const STATUS_DETAILS_KEY = 'grpc-status-details-bin';

/**
 * Most bytes of grpc-message, and of the encoded google.rpc.Status in grpc-status-details-bin. Both
 * travel as HTTP/2 trailers, and gRPC clients refuse headers beyond 8 KiB in all (grpc-java's
 * default): a long instance name repeated in a message and its violations must not break the call.
 */
export const MAX_STATUS_BYTES = 4096;
/** Most bytes of the message copied into grpc-status-details-bin (clients read grpc-message first). */
const MAX_DETAILS_MESSAGE_BYTES = 1024;
/** Most bytes of one string inside a BadRequest or PreconditionFailure entry. */
const MAX_ENTRY_FIELD_BYTES = 512;

/**
 * The object a grpc-js handler passes to its callback or `call.destroy()` / `emit('error')`: server
 * paths scrubbed from the message (scrub-paths.ts), message and details each within MAX_STATUS_BYTES.
 */
export function toGrpcStatus(err: unknown): Partial<grpc.StatusObject> & { code: grpc.status; details: string } {
  const s = toStatusError(err);
  const message = truncateUtf8(scrubPaths(s.message, s), MAX_STATUS_BYTES);
  const metadata = new grpc.Metadata();
  if (s.code !== Code.OK) {
    metadata.set(STATUS_DETAILS_KEY, Buffer.from(rpc.Status.encode(boundedStatusProto(s.code, message, s.details)).finish()));
  }
  return { code: s.code as number as grpc.status, details: message, metadata };
}

/** A google.rpc.Status whose encoding fits MAX_STATUS_BYTES: long entries cut, surplus entries and details dropped. */
export function boundedStatusProto(code: Code, message: string, details: readonly StatusDetail[]): rpc.IStatus {
  const status: rpc.IStatus = { code, message: truncateUtf8(message, MAX_DETAILS_MESSAGE_BYTES), details: [] };
  let used = rpc.Status.encode(status).finish().length;
  for (const detail of details) {
    const fitted = fitDetail(detail, MAX_STATUS_BYTES - used - 16);
    if (!fitted) continue;
    status.details!.push({ type_url: fitted.typeUrl, value: fitted.value });
    used = rpc.Status.encode(status).finish().length;
  }
  return status;
}

/** `detail` within `budget` bytes: as is, or with only the entries (shortened) that fit, or undefined. */
function fitDetail(detail: StatusDetail, budget: number): StatusDetail | undefined {
  if (budget <= 0) return undefined;
  const size = (d: StatusDetail) => d.typeUrl.length + d.value.length + 8;
  if (size(detail) <= budget) return detail;
  const cut = (v: string | null | undefined) => truncateUtf8(v ?? '', MAX_ENTRY_FIELD_BYTES);
  const name = detail.typeUrl.slice(detail.typeUrl.lastIndexOf('/') + 1);
  const fit = <E>(entries: E[], encode: (kept: E[]) => Uint8Array): StatusDetail | undefined => {
    for (let n = entries.length; n > 0; n = Math.floor(n / 2)) {
      const candidate = packDetail(name, encode(entries.slice(0, n)));
      if (size(candidate) <= budget) return candidate;
    }
    return undefined;
  };
  try {
    if (name === 'google.rpc.BadRequest') {
      const entries = rpc.BadRequest.decode(detail.value).fieldViolations.map((v) => ({ field: cut(v.field), description: cut(v.description) }));
      return fit(entries, (kept) => rpc.BadRequest.encode({ fieldViolations: kept }).finish());
    }
    if (name === 'google.rpc.PreconditionFailure') {
      const entries = rpc.PreconditionFailure.decode(detail.value).violations.map((v) => ({ type: cut(v.type), subject: cut(v.subject), description: cut(v.description) }));
      return fit(entries, (kept) => rpc.PreconditionFailure.encode({ violations: kept }).finish());
    }
  } catch {
    // Not decodable as what its type says: dropped like any other detail that does not fit.
  }
  return undefined;
}

/** `text` cut to at most `maxBytes` UTF-8 bytes (with "..." when cut), never inside a character. */
export function truncateUtf8(text: string, maxBytes: number): string {
  if (text.length <= maxBytes / 3 || Buffer.byteLength(text) <= maxBytes) return text;
  const bytes = Buffer.from(text);
  let end = maxBytes - 3;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end).toString() + '...';
}

/** Decodes a grpc-js client error (with its trailers) back into a StatusError. */
export function fromGrpcError(err: unknown): StatusError {
  if (err instanceof StatusError) return err;
  const e = err as Partial<grpc.ServiceError> | undefined;
  if (!e || typeof e.code !== 'number') return toStatusError(err);
  const raw = e.metadata?.get(STATUS_DETAILS_KEY)?.[0];
  if (raw && typeof raw !== 'string') {
    try {
      const status = rpc.Status.decode(raw);
      return new StatusError(e.code as number as Code, e.details ?? status.message, StatusError.fromProto(status).details, { cause: err });
    } catch {
      // Fall through to the plain status when the trailer is not a valid google.rpc.Status.
    }
  }
  return new StatusError(e.code as number as Code, e.details ?? e.message ?? 'Unknown gRPC error', [], { cause: err });
}
