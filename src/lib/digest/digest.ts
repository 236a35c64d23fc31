/**
 * The validated identity of a blob: instance name, digest function, lowercase hex hash and size.
 * Every proto digest entering bzutil becomes a `Digest` at the edge, so code further in never sees a
 * malformed one. The size is part of the identity. Also owns the ByteStream resource-name grammar.
 */
import { randomBytes } from 'node:crypto';
import { reapi } from '../proto/index.js';
import { StatusError } from '../errors/status-error.js';
import {
  type DigestFunction,
  digestFunctionFromHexLength,
  digestFunctionFromProto,
  hashBytes,
  hexLength,
  isDigestFunctionName,
  UNSUPPORTED_DIGEST_FUNCTION_NAMES,
} from './digest-function.js';
import { validateInstanceName } from './instance-name.js';

export { validateInstanceName } from './instance-name.js';

/**
 * Validates an instance name, remembering the last valid one: every digest of a request carries the
 * request's instance name, and validating it again for each of 10k digests of a FindMissingBlobs
 * showed in profiles. Validation is pure, so a one-entry memo private to this function is safe.
 */
const validateInstanceNameOnce = (() => {
  let lastValid = '';
  return (instanceName: string): void => {
    if (instanceName === lastValid) return;
    validateInstanceName(instanceName);
    lastValid = instanceName;
  };
})();

/**
 * True if `text` is non-empty lowercase hexadecimal. A character loop rather than a regular
 * expression: it runs for every digest of every request, and a loop over 64 characters is cheaper
 * than entering the regexp engine.
 */
function isLowercaseHex(text: string): boolean {
  if (text.length === 0) return false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    // '0'-'9' or 'a'-'f'
    if (c < 0x30 || (c > 0x39 && (c < 0x61 || c > 0x66))) return false;
  }
  return true;
}

/**
 * Per-process random keys of `digestBucket`. Buckets must not be predictable: action cache keys are
 * chosen freely by clients, and so are instance names and the digests FindMissingBlobs asks about,
 * so a fixed function of the hash would let a client pile thousands of entries into one bucket.
 */
const BUCKET_KEYS = randomBytes(16);
const BUCKET_KEY_HASH = BUCKET_KEYS.readUInt32LE(0);
const BUCKET_KEY_SIZE = BUCKET_KEYS.readUInt32LE(4);
const BUCKET_KEY_INSTANCE = BUCKET_KEYS.readUInt32LE(8);
/** Mixes of the instance names seen lately (a request's digests share theirs). */
const instanceMixes = new Map<string, number>();

/** A keyed 32-bit mix of every character of `text`, starting from `seed`. */
function keyedMix(text: string, seed: number): number {
  let h = seed;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h;
}

function bucketOf(hash: string, sizeBytes: number, instanceName: string): number {
  let h = keyedMix(hash, BUCKET_KEY_HASH);
  h ^= Math.imul((sizeBytes >>> 0) ^ BUCKET_KEY_SIZE, 0x9e3779b1) ^ Math.floor(sizeBytes / 0x1_0000_0000);
  h ^= instanceMix(instanceName);
  // Final avalanche, so that the low bits tables mask with depend on every input bit.
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  // 30 bits: V8 keeps such numbers unboxed (Smi), which Maps hash fastest.
  return (h ^ (h >>> 16)) >>> 2;
}

function instanceMix(instanceName: string): number {
  if (instanceName === '') return 0;
  let mix = instanceMixes.get(instanceName);
  if (mix === undefined) {
    if (instanceMixes.size >= 1024) instanceMixes.clear();
    mix = keyedMix(instanceName, BUCKET_KEY_INSTANCE);
    instanceMixes.set(instanceName, mix);
  }
  return mix;
}

/** Compression schemes named in resource names; only identity is served today. */
export type Compressor = 'identity' | 'zstd' | 'deflate' | 'brotli';
const COMPRESSORS: readonly string[] = ['identity', 'zstd', 'deflate', 'brotli'];

export class Digest {
  #key: string | undefined;
  #bucket: number | undefined;

  private constructor(
    readonly instanceName: string,
    readonly digestFunction: DigestFunction,
    readonly hash: string,
    readonly sizeBytes: number,
  ) {}

  /**
   * The digest's hash-table bucket (see `digestBucket`), computed on first use: most digests (a
   * client's Merkle tree, a parsed resource name) never go into a table.
   */
  get bucket(): number {
    return (this.#bucket ??= bucketOf(this.hash, this.sizeBytes, this.instanceName));
  }

  /**
   * A string that identifies the digest (instance, function, hash and size), for Maps and Sets.
   * Built on first use: the hot paths (FindMissingBlobs against a store's index) file digests by
   * their hash instead (see lru-index.ts), and building and hashing a key string per digest was
   * most of their cost.
   */
  get key(): string {
    // Array#join yields a flat string. A template literal would yield a rope (cons string), which V8
    // must walk on every Map lookup.
    return (this.#key ??= [this.instanceName, this.digestFunction, this.hash, String(this.sizeBytes)].join('\u0000'));
  }

  /**
   * Validates and builds a digest. `field` names the request field in error details.
   * Throws INVALID_ARGUMENT (with a BadRequest field violation) on any malformed part.
   * `hashIsLowercaseHex` is for wire decoders that already checked the hash's characters on its
   * bytes (several times cheaper than on the string); the other checks are made all the same.
   */
  static create(
    instanceName: string,
    digestFunction: DigestFunction | undefined,
    hash: string,
    sizeBytes: number,
    field = 'digest',
    hashIsLowercaseHex = false,
  ): Digest {
    const fn = digestFunction ?? digestFunctionFromHexLength(hash.length);
    if (!fn) throw bad(field + '.hash', `Hash ${JSON.stringify(hash)} has ${hash.length} characters, which matches no supported digest function`);
    if (hash.length !== hexLength(fn)) throw bad(field + '.hash', `Hash ${JSON.stringify(hash)} has ${hash.length} characters, but ${fn} hashes have ${hexLength(fn)}`);
    if (!hashIsLowercaseHex && !isLowercaseHex(hash)) throw bad(field + '.hash', `Hash ${JSON.stringify(hash)} is not lowercase hexadecimal`);
    if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 0) throw bad(field + '.size_bytes', `Size ${JSON.stringify(sizeBytes)} is not a non-negative integer below 2^53`);
    validateInstanceNameOnce(instanceName);
    return new Digest(instanceName, fn, hash, sizeBytes);
  }

  /** From a wire Digest; `digestFunctionValue` is the request's digest_function (0 = infer from length). */
  static fromProto(instanceName: string, digestFunctionValue: number | null | undefined, d: reapi.IDigest | null | undefined, field = 'digest'): Digest {
    if (!d) throw bad(field, 'Digest is missing');
    return Digest.create(instanceName, requestDigestFunction(digestFunctionValue, field), d.hash ?? '', toNumber(d.sizeBytes), field);
  }

  /** Parses the CLI form `<hash>/<size>` (also accepts `<hash>-<size>` and `<hash>:<size>`). */
  static parse(text: string, opts: { instanceName?: string; digestFunction?: DigestFunction } = {}): Digest {
    const m = /^([0-9a-fA-F]+)[/:-](\d+)$/.exec(text.trim());
    if (!m) throw bad('digest', `Digest ${JSON.stringify(text)} is not of the form <hash>/<size>`);
    return Digest.create(opts.instanceName ?? '', opts.digestFunction, m[1]!.toLowerCase(), Number(m[2]), 'digest');
  }

  /** The digest of `data`. */
  static ofBytes(data: Uint8Array, opts: { instanceName?: string; digestFunction?: DigestFunction } = {}): Digest {
    const fn = opts.digestFunction ?? 'sha256';
    return new Digest(opts.instanceName ?? '', fn, hashBytes(fn, data), data.length);
  }

  static empty(opts: { instanceName?: string; digestFunction?: DigestFunction } = {}): Digest {
    return Digest.ofBytes(new Uint8Array(0), opts);
  }

  /**
   * True for the empty blob of this digest's function (size 0 and the hash of no bytes). Every store
   * reports it present and serves it without storing anything, as REAPI requires of servers: clients
   * may reference it without ever uploading it. A size-0 digest with another hash is not empty.
   */
  get isEmpty(): boolean {
    return this.sizeBytes === 0 && this.hash === emptyHashOf(this.digestFunction);
  }

  toProto(): reapi.IDigest {
    return this.sizeBytes === 0 ? { hash: this.hash } : { hash: this.hash, sizeBytes: this.sizeBytes };
  }

  /** Same hash, size and function under another instance name. */
  withInstanceName(instanceName: string): Digest {
    return instanceName === this.instanceName ? this : Digest.create(instanceName, this.digestFunction, this.hash, this.sizeBytes);
  }

  equals(other: Digest): boolean {
    return this.key === other.key;
  }

  /** `<hash>/<size>`, the form the CLI prints and accepts. */
  toString(): string {
    return `${this.hash}/${this.sizeBytes}`;
  }

  /** `blobs/<hash>/<size>`, the subject of a PreconditionFailure MISSING violation. */
  toMissingSubject(): string {
    return `blobs/${this.hash}/${this.sizeBytes}`;
  }

  /** The ByteStream Read resource name for this blob. */
  toByteStreamReadPath(compressor: Compressor = 'identity'): string {
    return [...instancePrefix(this.instanceName), ...this.blobSegments(compressor)].join('/');
  }

  /** The ByteStream Write resource name for this blob under upload id `uuid`. */
  toByteStreamWritePath(uuid: string, compressor: Compressor = 'identity'): string {
    return [...instancePrefix(this.instanceName), 'uploads', uuid, ...this.blobSegments(compressor)].join('/');
  }

  private blobSegments(compressor: Compressor): string[] {
    // The digest-function segment is only written for functions whose hash length is ambiguous or
    // non-default; SHA-256 stays implicit so that old clients understand our names.
    const fnSegment = this.digestFunction === 'sha256' ? [] : [this.digestFunction];
    const head = compressor === 'identity' ? ['blobs'] : ['compressed-blobs', compressor];
    return [...head, ...fnSegment, this.hash, String(this.sizeBytes)];
  }
}

export interface ParsedReadResourceName {
  digest: Digest;
  compressor: Compressor;
}

export interface ParsedWriteResourceName extends ParsedReadResourceName {
  uploadId: string;
  /** Anything after the size segment, which the spec allows for implementation-specific metadata. */
  metadata: string;
}

/**
 * Parses `{instance}/blobs/{fn/}{hash}/{size}` and `{instance}/compressed-blobs/{comp}/{fn/}{hash}/{size}`.
 * The instance name may have several segments. Throws INVALID_ARGUMENT naming the bad part.
 */
export function parseReadResourceName(name: string, field = 'resource_name'): ParsedReadResourceName {
  const segs = name.split('/');
  const idx = segs.findIndex((s) => s === 'blobs' || s === 'compressed-blobs');
  if (idx < 0) throw bad(field, `Resource name ${JSON.stringify(name)} has no "blobs" or "compressed-blobs" segment`);
  const instanceName = segs.slice(0, idx).join('/');
  const { digest, compressor, rest } = parseBlobPart(segs.slice(idx), instanceName, name, field);
  if (rest.length) throw bad(field, `Resource name ${JSON.stringify(name)} has unexpected segments after the size`);
  return { digest, compressor };
}

/**
 * Parses `{instance}/uploads/{uuid}/blobs/{fn/}{hash}/{size}{/metadata}` and the compressed form.
 */
export function parseWriteResourceName(name: string, field = 'resource_name'): ParsedWriteResourceName {
  const segs = name.split('/');
  const idx = segs.indexOf('uploads');
  if (idx < 0 || idx + 2 >= segs.length) throw bad(field, `Resource name ${JSON.stringify(name)} is not of the form {instance}/uploads/{uuid}/blobs/{hash}/{size}`);
  const instanceName = segs.slice(0, idx).join('/');
  const uploadId = segs[idx + 1]!;
  if (!uploadId) throw bad(field, `Resource name ${JSON.stringify(name)} has an empty upload id`);
  const { digest, compressor, rest } = parseBlobPart(segs.slice(idx + 2), instanceName, name, field);
  return { digest, compressor, uploadId, metadata: rest.join('/') };
}

function parseBlobPart(segs: string[], instanceName: string, name: string, field: string): { digest: Digest; compressor: Compressor; rest: string[] } {
  let i = 0;
  let compressor: Compressor = 'identity';
  if (segs[i] === 'compressed-blobs') {
    const c = segs[i + 1] ?? '';
    if (!COMPRESSORS.includes(c)) throw bad(field, `Resource name ${JSON.stringify(name)} names unknown compressor ${JSON.stringify(c)}`);
    compressor = c as Compressor;
    i += 2;
  } else if (segs[i] === 'blobs') {
    i += 1;
  } else {
    throw bad(field, `Resource name ${JSON.stringify(name)} lacks a "blobs" segment`);
  }
  let fn: DigestFunction | undefined;
  const maybeFn = segs[i] ?? '';
  if (isDigestFunctionName(maybeFn)) {
    fn = maybeFn;
    i += 1;
  } else if (UNSUPPORTED_DIGEST_FUNCTION_NAMES.has(maybeFn)) {
    throw bad(field, `Digest function ${JSON.stringify(maybeFn)} in ${JSON.stringify(name)} is not supported by this server`);
  }
  const hash = segs[i] ?? '';
  const sizeText = segs[i + 1] ?? '';
  if (!/^\d+$/.test(sizeText)) throw bad(field, `Resource name ${JSON.stringify(name)} has no valid size after the hash`);
  const digest = Digest.create(instanceName, fn, hash, Number(sizeText), field);
  return { digest, compressor, rest: segs.slice(i + 2) };
}

/** The digest function a request asks for; INVALID_ARGUMENT for values we do not implement. */
export function requestDigestFunction(value: number | null | undefined, field = 'digest_function'): DigestFunction | undefined {
  if (!value) return undefined;
  const fn = digestFunctionFromProto(value);
  if (!fn) throw bad(field, `Digest function ${value} (${reapi.DigestFunction.Value[value] ?? 'unknown'}) is not supported by this server`);
  return fn;
}

function instancePrefix(instanceName: string): string[] {
  return instanceName === '' ? [] : [instanceName];
}

function toNumber(v: unknown): number {
  if (typeof v === 'number') return v;
  if (v === null || v === undefined) return 0;
  if (typeof v === 'string') return Number(v);
  if (typeof v === 'object' && typeof (v as { toNumber?: unknown }).toNumber === 'function') return (v as { toNumber(): number }).toNumber();
  return NaN;
}

function bad(field: string, description: string): StatusError {
  return StatusError.invalidArgument(description, [{ field, description }]);
}

/**
 * A 30-bit bucket for hash tables of digests that avoids building and hashing a key string per
 * digest: a keyed mix of the hash's characters, the size and the instance name (not the digest
 * function: equal hashes of two functions are astronomically rare). The keys are random per
 * process, so a client cannot choose digests (action cache keys, instance names, FindMissingBlobs
 * queries) that share a bucket.
 */
export function digestBucket(d: Digest): number {
  return d.bucket;
}

/** Whether two digests are equal, without building their keys. */
export function sameDigest(a: Digest, b: Digest): boolean {
  return a === b || (a.hash === b.hash && a.sizeBytes === b.sizeBytes && a.digestFunction === b.digestFunction && a.instanceName === b.instanceName);
}

/**
 * A set of digests for deduplicating thousands of digests per request without building a key string
 * for each: an open-addressing table of indices (a typed array, no allocation per entry) probed by
 * `digestBucket`. Buckets are keyed per process, so long probes should not happen; should one
 * anyway, the set switches to a Set of key strings rather than slow down.
 */
export class DigestSet {
  private slots = new Int32Array(64);
  private readonly digests: Digest[] = [];
  private keys: Set<string> | undefined;

  /** Adds `digest`; false if an equal digest was already in the set. */
  add(digest: Digest): boolean {
    if (this.keys) return this.addKey(digest);
    if ((this.digests.length + 1) * 2 > this.slots.length) this.grow();
    const slots = this.slots;
    const mask = slots.length - 1;
    let i = digestBucket(digest) & mask;
    for (let probes = 0; ; probes++, i = (i + 1) & mask) {
      const slot = slots[i]!;
      if (slot === 0) break;
      if (sameDigest(this.digests[slot - 1]!, digest)) return false;
      if (probes === MAX_PROBES) {
        this.keys = new Set(this.digests.map((d) => d.key));
        return this.addKey(digest);
      }
    }
    this.digests.push(digest);
    slots[i] = this.digests.length;
    return true;
  }

  private addKey(digest: Digest): boolean {
    const size = this.keys!.size;
    return this.keys!.add(digest.key).size !== size;
  }

  private grow(): void {
    const slots = new Int32Array(this.slots.length * 2);
    const mask = slots.length - 1;
    for (let n = 0; n < this.digests.length; n++) {
      let i = digestBucket(this.digests[n]!) & mask;
      while (slots[i] !== 0) i = (i + 1) & mask;
      slots[i] = n + 1;
    }
    this.slots = slots;
  }
}

/** Longest probe DigestSet tolerates before it falls back to key strings. */
const MAX_PROBES = 32;

const EMPTY_HASHES = new Map<DigestFunction, string>();
/** The hash of no bytes under `fn`, computed once per function. */
function emptyHashOf(fn: DigestFunction): string {
  let hash = EMPTY_HASHES.get(fn);
  if (hash === undefined) {
    hash = hashBytes(fn, new Uint8Array(0));
    EMPTY_HASHES.set(fn, hash);
  }
  return hash;
}
