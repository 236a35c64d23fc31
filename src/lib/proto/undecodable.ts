/**
 * What a server's request deserializer returns for bytes that are not the method's message. grpc-js
 * answers a throwing deserializer with INTERNAL ("Error deserializing request"), which tells a
 * client that sent garbage that the server is broken; bzutil's deserializers catch the decode error
 * and hand this marker to the handler instead, and the one gRPC error boundary
 * (server/grpc/handlers.ts) answers it with INVALID_ARGUMENT.
 */

import minimal from 'protobufjs/minimal.js';

const UNDECODABLE = Symbol.for('bzutil.UndecodableRequest');

export interface UndecodableRequest {
  readonly [UNDECODABLE]: true;
  /** The decoder's complaint (no request bytes). */
  readonly reason: string;
}

export function undecodable(err: unknown): UndecodableRequest {
  const reason = err instanceof Error ? err.message : String(err);
  return { [UNDECODABLE]: true, reason: reason.length > 200 ? reason.slice(0, 200) + '...' : reason };
}

export function isUndecodable(value: unknown): value is UndecodableRequest {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[UNDECODABLE] === true;
}

/** Wraps a server-side deserializer so that a decode failure becomes an UndecodableRequest. */
export function tolerantDeserializer<T>(decode: (b: Buffer) => T): (b: Buffer) => T {
  return (b) => {
    try {
      return decode(b);
    } catch (err) {
      return undecodable(err) as unknown as T;
    }
  };
}

/**
 * Decodes with protobufjs's bounds-checking Reader. The Buffer reader it picks by default clamps a
 * string whose length runs past the end of the message instead of failing, so truncated garbage
 * would decode "successfully"; the plain Reader throws.
 */
export function strictDecode<T>(cls: { decode(r: minimal.Reader): T }, bytes: Uint8Array): T {
  const reader = new minimal.Reader(bytes);
  const message = cls.decode(reader);
  if (reader.pos !== reader.len) throw new RangeError(`message ends at byte ${reader.pos} of ${reader.len}`);
  return message;
}
