/**
 * The one error type of bzutil's library and servers: a gRPC status code, a message and google.rpc
 * details. Codes are chosen where the knowledge is (the digest parser knows bad input, the disk store
 * knows a full disk) and travel unchanged to the gRPC boundary, which encodes them into
 * `grpc-status-details-bin`. Callers branch on `err.code`, never on message text.
 */
import { rpc, protobuf } from '../proto/index.js';

/** gRPC status codes (numerically identical to google.rpc.Code). */
export enum Code {
  OK = 0,
  CANCELLED = 1,
  UNKNOWN = 2,
  INVALID_ARGUMENT = 3,
  DEADLINE_EXCEEDED = 4,
  NOT_FOUND = 5,
  ALREADY_EXISTS = 6,
  PERMISSION_DENIED = 7,
  RESOURCE_EXHAUSTED = 8,
  FAILED_PRECONDITION = 9,
  ABORTED = 10,
  OUT_OF_RANGE = 11,
  UNIMPLEMENTED = 12,
  INTERNAL = 13,
  UNAVAILABLE = 14,
  DATA_LOSS = 15,
  UNAUTHENTICATED = 16,
}

const TYPE_URL_PREFIX = 'type.googleapis.com/';
const BRAND = Symbol.for('bzutil.StatusError');

/** A google.protobuf.Any holding one google.rpc detail message. */
export interface StatusDetail {
  typeUrl: string;
  value: Uint8Array;
}

export interface FieldViolation {
  field: string;
  description: string;
}

export interface MissingBlob {
  hash: string;
  sizeBytes: number;
}

export class StatusError extends Error {
  override readonly name: string = 'StatusError';
  readonly [BRAND] = true;

  constructor(
    readonly code: Code,
    message: string,
    readonly details: readonly StatusDetail[] = [],
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
  }

  /** The code's name, e.g. 'NOT_FOUND'. */
  get codeName(): string {
    return Code[this.code] ?? `CODE_${this.code}`;
  }

  static cancelled(message = 'Operation was cancelled'): StatusError {
    return new StatusError(Code.CANCELLED, message);
  }
  static notFound(message: string): StatusError {
    return new StatusError(Code.NOT_FOUND, message);
  }
  static invalidArgument(message: string, fieldViolations: readonly FieldViolation[] = []): StatusError {
    const details = fieldViolations.length
      ? [packDetail('google.rpc.BadRequest', rpc.BadRequest.encode({ fieldViolations: [...fieldViolations] }).finish())]
      : [];
    return new StatusError(Code.INVALID_ARGUMENT, message, details);
  }
  static failedPrecondition(message: string, details: readonly StatusDetail[] = []): StatusError {
    return new StatusError(Code.FAILED_PRECONDITION, message, details);
  }
  /**
   * FAILED_PRECONDITION with one PreconditionFailure MISSING violation per absent blob, subject
   * `blobs/<hash>/<size>`: exactly what Bazel looks for before re-uploading inputs and retrying.
   */
  static missingBlobs(blobs: readonly MissingBlob[], message?: string): StatusError {
    const violations = blobs.map((b) => ({ type: 'MISSING', subject: `blobs/${b.hash}/${b.sizeBytes}` }));
    const detail = packDetail('google.rpc.PreconditionFailure', rpc.PreconditionFailure.encode({ violations }).finish());
    const text = message ?? `Missing ${blobs.length} blob(s) in the CAS: ${blobs.slice(0, 3).map((b) => `${b.hash}/${b.sizeBytes}`).join(', ')}${blobs.length > 3 ? ', ...' : ''}`;
    return new StatusError(Code.FAILED_PRECONDITION, text, [detail]);
  }
  static outOfRange(message: string): StatusError {
    return new StatusError(Code.OUT_OF_RANGE, message);
  }
  static resourceExhausted(message: string): StatusError {
    return new StatusError(Code.RESOURCE_EXHAUSTED, message);
  }
  static unavailable(message: string): StatusError {
    return new StatusError(Code.UNAVAILABLE, message);
  }
  static internal(message: string, cause?: unknown): StatusError {
    return new StatusError(Code.INTERNAL, message, [], { cause });
  }
  static deadlineExceeded(message: string): StatusError {
    return new StatusError(Code.DEADLINE_EXCEEDED, message);
  }
  static unimplemented(message: string): StatusError {
    return new StatusError(Code.UNIMPLEMENTED, message);
  }
  static alreadyExists(message: string): StatusError {
    return new StatusError(Code.ALREADY_EXISTS, message);
  }
  static aborted(message: string): StatusError {
    return new StatusError(Code.ABORTED, message);
  }

  /** The google.rpc.Status form, as embedded in ExecuteResponse.status or batch responses. */
  toProto(): rpc.IStatus {
    return { code: this.code, message: this.message, details: this.details.map((d) => ({ type_url: d.typeUrl, value: d.value })) };
  }

  static fromProto(status: rpc.IStatus): StatusError {
    const details = (status.details ?? []).map((d) => ({ typeUrl: d.type_url ?? '', value: d.value ?? new Uint8Array() }));
    return new StatusError((status.code ?? Code.UNKNOWN) as Code, status.message ?? '', details);
  }

  /** Decoded PreconditionFailure violations carried by this error, if any. */
  preconditionViolations(): rpc.PreconditionFailure.IViolation[] {
    return this.details
      .filter((d) => d.typeUrl === TYPE_URL_PREFIX + 'google.rpc.PreconditionFailure')
      .flatMap((d) => rpc.PreconditionFailure.decode(d.value).violations);
  }

  /** Decoded BadRequest field violations carried by this error, if any. */
  fieldViolations(): rpc.BadRequest.IFieldViolation[] {
    return this.details
      .filter((d) => d.typeUrl === TYPE_URL_PREFIX + 'google.rpc.BadRequest')
      .flatMap((d) => rpc.BadRequest.decode(d.value).fieldViolations);
  }
}

/** Wraps one google.rpc detail message into an Any. */
export function packDetail(fullName: string, value: Uint8Array): StatusDetail {
  return { typeUrl: TYPE_URL_PREFIX + fullName, value };
}

/** Converts anything thrown into a StatusError (unknown errors become INTERNAL, keeping the cause). */
export function toStatusError(err: unknown): StatusError {
  if (err instanceof StatusError) return err;
  if (isAbortError(err)) return StatusError.cancelled();
  const message = err instanceof Error ? err.message : String(err);
  return StatusError.internal(message, err);
}

/** Keeps the code and details of `err`, prefixing its message with the failed step. */
export function wrapStatus(err: unknown, prefix: string): StatusError {
  const s = toStatusError(err);
  return new StatusError(s.code, `${prefix}: ${s.message}`, s.details, { cause: err });
}

/** Deliberately re-codes an error (e.g. a replica's NOT_FOUND mid-sync is INTERNAL to the caller). */
export function wrapStatusWithCode(err: unknown, code: Code, prefix: string): StatusError {
  const s = toStatusError(err);
  return new StatusError(code, `${prefix}: ${s.message}`, s.details, { cause: err });
}

/**
 * The status a call or task ends with when its signal fired: the signal's reason when it is a
 * StatusError (e.g. UNAVAILABLE because the server shuts down), else CANCELLED with `message`.
 */
export function abortStatus(signal: AbortSignal, message = 'The call was cancelled'): StatusError {
  return signal.reason instanceof StatusError ? signal.reason : StatusError.cancelled(message);
}

export function isAbortError(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { name?: string }).name === 'AbortError';
}

/** True when `err` is a StatusError with the given code. */
export function hasCode(err: unknown, code: Code): boolean {
  return err instanceof StatusError && err.code === code;
}

// Re-exported so that callers decoding Any messages need not reach into the proto module.
export type AnyMessage = protobuf.IAny;
