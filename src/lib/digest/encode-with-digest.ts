/** Canonical encoding and digest in one step, for content-addressed messages (Action, Command, Directory, Tree). */
import { encodeCanonical, type Encoder } from '../proto/canonical.js';
import { Digest } from './digest.js';
import type { DigestFunction } from './digest-function.js';

/** Encodes `message` canonically (proto/canonical.ts) and returns the bytes with their digest. */
export function encodeWithDigest<T>(
  cls: Encoder<T>,
  message: T,
  opts: { instanceName?: string; digestFunction?: DigestFunction } = {},
): { bytes: Uint8Array; digest: Digest } {
  const bytes = encodeCanonical(cls, message);
  return { bytes, digest: Digest.ofBytes(bytes, opts) };
}
