/**
 * Hash functions a digest may use: SHA-256 (the default, and what Bazel 4 speaks), SHA-1, MD5,
 * SHA-384 and SHA-512 through node:crypto, and BLAKE3 through hash-wasm's WebAssembly build.
 * Servers serve the functions their Capabilities advertise (all of these by default).
 */
import { createHash } from 'node:crypto';
import { createBLAKE3, type IHasher } from 'hash-wasm';
import { reapi } from '../proto/index.js';

export type DigestFunction = 'sha256' | 'sha1' | 'md5' | 'sha384' | 'sha512' | 'blake3';

/**
 * Every implemented function, SHA-256 first. The order matters where a hash length names two
 * functions (SHA-256 and BLAKE3 both have 64 hex digits): inference picks the first, as REAPI
 * requires (a BLAKE3 digest must be named explicitly).
 */
export const DIGEST_FUNCTIONS: readonly DigestFunction[] = ['sha256', 'sha1', 'md5', 'sha384', 'sha512', 'blake3'];

const HEX_LENGTH: Record<DigestFunction, number> = { sha256: 64, sha1: 40, md5: 32, sha384: 96, sha512: 128, blake3: 64 };

const TO_PROTO: Record<DigestFunction, reapi.DigestFunction.Value> = {
  sha256: reapi.DigestFunction.Value.SHA256,
  sha1: reapi.DigestFunction.Value.SHA1,
  md5: reapi.DigestFunction.Value.MD5,
  sha384: reapi.DigestFunction.Value.SHA384,
  sha512: reapi.DigestFunction.Value.SHA512,
  blake3: reapi.DigestFunction.Value.BLAKE3,
};

/** Names of digest functions in the REAPI enum that bzutil does not implement. */
export const UNSUPPORTED_DIGEST_FUNCTION_NAMES: ReadonlySet<string> = new Set(['vso', 'murmur3', 'sha256tree', 'gitsha1']);

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

/** An incremental hash, the subset of node:crypto's Hash that every function here provides. */
export interface Hasher {
  update(data: Uint8Array): Hasher;
  /** The hash as lowercase hex; the hasher is finished after it. */
  digest(encoding: 'hex'): string;
}

/**
 * The one BLAKE3 WebAssembly instance, made at module load: hash-wasm only creates instances
 * asynchronously, and hashing here must be synchronous (Digest.ofBytes, the verifying store).
 */
const blake3Instance: IHasher = await createBLAKE3();
/** The Blake3Hasher whose state is in the instance right now. */
let blake3Owner: Blake3Hasher | undefined;

/**
 * A BLAKE3 hash sharing the one instance with every other BLAKE3 hash in progress: when another
 * hash used the instance since this one's last update, this one's state (under 2 KiB) is saved
 * from it and its own loaded back. Hashes of concurrent streams interleave at chunk granularity, so
 * a switch costs one small copy per chunk at most.
 */
class Blake3Hasher implements Hasher {
  /** Saved state while another hash owns the instance; undefined before the first update. */
  private state: Uint8Array | undefined;
  private finished = false;

  update(data: Uint8Array): Hasher {
    this.claim();
    blake3Instance.update(data);
    return this;
  }

  digest(_encoding: 'hex'): string {
    if (this.finished) throw new Error('Blake3Hasher.digest called twice');
    this.claim();
    this.finished = true;
    blake3Owner = undefined;
    return blake3Instance.digest('hex');
  }

  /** Saves the owner's state and loads ours. */
  private claim(): void {
    if (blake3Owner === this) return;
    if (blake3Owner) blake3Owner.state = blake3Instance.save();
    if (this.state) blake3Instance.load(this.state);
    else blake3Instance.init();
    this.state = undefined;
    blake3Owner = this;
  }
}

export function newHasher(fn: DigestFunction): Hasher {
  return fn === 'blake3' ? new Blake3Hasher() : createHash(fn);
}

export function hashBytes(fn: DigestFunction, data: Uint8Array): string {
  return newHasher(fn).update(data).digest('hex');
}

/** Hashes a stream of chunks without holding more than one chunk. */
export async function hashStream(fn: DigestFunction, src: AsyncIterable<Uint8Array>): Promise<{ hash: string; sizeBytes: number }> {
  const h = newHasher(fn);
  let sizeBytes = 0;
  for await (const chunk of src) {
    h.update(chunk);
    sizeBytes += chunk.length;
  }
  return { hash: h.digest('hex'), sizeBytes };
}
