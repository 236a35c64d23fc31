/**
 * Hash functions a digest may use. SHA-256 is the default and what Bazel speaks; the others are
 * recognised (by name, proto enum value and hex length) so that requests using them get a precise
 * answer, and served only where a server is configured to advertise them.
 */
import { createHash, type Hash } from 'node:crypto';
import { reapi } from '../proto/index.js';

export type DigestFunction = 'sha256' | 'sha1' | 'md5' | 'sha384' | 'sha512';

export const DIGEST_FUNCTIONS: readonly DigestFunction[] = ['sha256', 'sha1', 'md5', 'sha384', 'sha512'];

const HEX_LENGTH: Record<DigestFunction, number> = { sha256: 64, sha1: 40, md5: 32, sha384: 96, sha512: 128 };

const TO_PROTO: Record<DigestFunction, reapi.DigestFunction.Value> = {
  sha256: reapi.DigestFunction.Value.SHA256,
  sha1: reapi.DigestFunction.Value.SHA1,
  md5: reapi.DigestFunction.Value.MD5,
  sha384: reapi.DigestFunction.Value.SHA384,
  sha512: reapi.DigestFunction.Value.SHA512,
};

/** Names of digest functions in the REAPI enum that bzutil does not implement. */
export const UNSUPPORTED_DIGEST_FUNCTION_NAMES: ReadonlySet<string> = new Set(['vso', 'murmur3', 'sha256tree', 'blake3', 'gitsha1']);

export function hexLength(fn: DigestFunction): number {
  return HEX_LENGTH[fn];
}

export function digestFunctionToProto(fn: DigestFunction): reapi.DigestFunction.Value {
  return TO_PROTO[fn];
}

/** The function for a proto enum value; undefined for UNKNOWN (0) and for functions we do not implement. */
export function digestFunctionFromProto(value: number | null | undefined): DigestFunction | undefined {
  for (const fn of DIGEST_FUNCTIONS) if (TO_PROTO[fn] === value) return fn;
  return undefined;
}

/** Infers the function from a hash's hex length, the REAPI rule when a request leaves digest_function unset. */
export function digestFunctionFromHexLength(length: number): DigestFunction | undefined {
  for (const fn of DIGEST_FUNCTIONS) if (HEX_LENGTH[fn] === length) return fn;
  return undefined;
}

export function isDigestFunctionName(name: string): name is DigestFunction {
  return (DIGEST_FUNCTIONS as readonly string[]).includes(name);
}

export function newHasher(fn: DigestFunction): Hash {
  return createHash(fn);
}

export function hashBytes(fn: DigestFunction, data: Uint8Array): string {
  return createHash(fn).update(data).digest('hex');
}

/** Hashes a stream of chunks without holding more than one chunk. */
export async function hashStream(fn: DigestFunction, src: AsyncIterable<Uint8Array>): Promise<{ hash: string; sizeBytes: number }> {
  const h = createHash(fn);
  let sizeBytes = 0;
  for await (const chunk of src) {
    h.update(chunk);
    sizeBytes += chunk.length;
  }
  return { hash: h.digest('hex'), sizeBytes };
}
