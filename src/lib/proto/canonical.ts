/**
 * Deterministic encoding for content-addressed messages (Directory, Tree, Command, Action, ...).
 *
 * protobufjs writes a proto3 scalar whenever the property is present, even when it holds the default
 * value, while other implementations (Bazel's Java protobuf among them) omit defaults. Two encoders
 * must agree byte for byte for digests to match, so such messages are pruned of default-valued scalars
 * and empty repeated fields before encoding. Fields are written in field-number order by protobufjs.
 */
export interface Encoder<T> {
  encode(m: T): { finish(): Uint8Array };
}

/** Returns a copy of `value` without default-valued scalars and empty lists; sub-messages are kept. */
export function pruneDefaults<T>(value: T): T {
  if (Array.isArray(value)) return value.map((v) => pruneDefaults(v)) as T;
  if (value === null || typeof value !== 'object' || value instanceof Uint8Array) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (v === undefined || v === null || v === '' || v === 0 || v === false) continue;
    if (Array.isArray(v) && v.length === 0) continue;
    if (v instanceof Uint8Array && v.length === 0) continue;
    out[k] = pruneDefaults(v);
  }
  return out as T;
}

/** Encodes `message` canonically. */
export function encodeCanonical<T>(cls: Encoder<T>, message: T): Uint8Array {
  return cls.encode(pruneDefaults(message)).finish();
}
