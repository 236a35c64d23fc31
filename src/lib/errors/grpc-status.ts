/**
 * Converts between StatusError and what @grpc/grpc-js puts on the wire. The rich form travels in the
 * `grpc-status-details-bin` trailer as an encoded google.rpc.Status; Bazel reads PreconditionFailure
 * from there to learn which inputs to re-upload.
 */
import * as grpc from '@grpc/grpc-js';
import { rpc } from '../proto/index.js';
import { Code, StatusError, toStatusError } from './status-error.js';

export const STATUS_DETAILS_KEY = 'grpc-status-details-bin';

/** The object a grpc-js handler passes to its callback or `call.destroy()` / `emit('error')`. */
export function toGrpcStatus(err: unknown): Partial<grpc.StatusObject> & { code: grpc.status; details: string } {
  const s = toStatusError(err);
  const metadata = new grpc.Metadata();
  if (s.code !== Code.OK) {
    metadata.set(STATUS_DETAILS_KEY, Buffer.from(rpc.Status.encode(s.toProto()).finish()));
  }
  // grpc-js puts `details` in grpc-message; keep it single-line and bounded.
  const details = s.message.length > 4096 ? s.message.slice(0, 4093) + '...' : s.message;
  return { code: s.code as number as grpc.status, details, metadata };
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
