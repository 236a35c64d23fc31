/**
 * Hand-written wire codec for FindMissingBlobs, the one call whose messages carry thousands of
 * digests (Bazel asks about every input of an action at once). protobufjs builds an operation list
 * per field and a message object per digest on the way out, and decodes every string through its
 * own UTF-8 reader on the way in; for 10k digests that was several milliseconds per direction, a
 * large share of the call. These functions produce and accept exactly the protobuf encoding of
 * `FindMissingBlobsRequest` / `FindMissingBlobsResponse` (fields in number order, proto3 defaults
 * omitted, unknown fields skipped when decoding), so they interoperate with any REAPI peer. Every
 * other message keeps using the generated protobufjs code.
 *
 * Digests may be given as any objects with `hash` and `sizeBytes` (a `Digest` qualifies), so callers
 * need not build a proto object per digest just to encode it.
 */
import type { reapi } from './index.js';

/** What the encoders read of a digest: `reapi.IDigest`, or a `Digest` value. */
export interface DigestLike {
  hash?: string | null;
  sizeBytes?: number | { toNumber(): number } | null;
}

const WIRE_VARINT = 0;
const WIRE_FIXED64 = 1;
const WIRE_LENGTH_DELIMITED = 2;
const WIRE_FIXED32 = 5;

/** Encodes a FindMissingBlobsRequest (instance_name = 1, blob_digests = 2, digest_function = 3). */
export function encodeFindMissingBlobsRequest(m: {
  instanceName?: string | null;
  blobDigests?: readonly DigestLike[] | null;
  digestFunction?: number | null;
}): Buffer {
  const instanceName = m.instanceName ?? '';
  const digests = m.blobDigests ?? [];
  const digestFunction = m.digestFunction ?? 0;
  const instanceBytes = instanceName === '' ? 0 : Buffer.byteLength(instanceName, 'utf8');
  let total = instanceBytes === 0 ? 0 : 1 + varintLength(instanceBytes) + instanceBytes;
  const lengths = digestLengths(digests);
  total += repeatedDigestsLength(lengths);
  if (digestFunction !== 0) total += 1 + varint64Length(digestFunction);
  const buf = Buffer.allocUnsafe(total);
  let pos = 0;
  if (instanceBytes !== 0) {
    buf[pos++] = (1 << 3) | WIRE_LENGTH_DELIMITED;
    pos = writeVarint(buf, pos, instanceBytes);
    pos += buf.write(instanceName, pos, 'utf8');
  }
  pos = writeRepeatedDigests(buf, pos, 2, digests, lengths);
  if (digestFunction !== 0) {
    buf[pos++] = (3 << 3) | WIRE_VARINT;
    pos = writeVarint64(buf, pos, digestFunction);
  }
  return checkLength(buf, pos);
}

/** Encodes a FindMissingBlobsResponse (missing_blob_digests = 2). */
export function encodeFindMissingBlobsResponse(m: { missingBlobDigests?: readonly DigestLike[] | null }): Buffer {
  const digests = m.missingBlobDigests ?? [];
  const lengths = digestLengths(digests);
  const buf = Buffer.allocUnsafe(repeatedDigestsLength(lengths));
  return checkLength(buf, writeRepeatedDigests(buf, 0, 2, digests, lengths));
}

/**
 * Decodes a FindMissingBlobsRequest into the shape protobufjs produces (`instanceName`,
 * `blobDigests` of `{ hash, sizeBytes }`, `digestFunction`; int64 as a JS number). Hashes that are
 * ASCII (every valid one) are sliced straight from the bytes. Throws on malformed wire data, as
 * protobufjs does; validating the digests is the service's job.
 */
export function decodeFindMissingBlobsRequest(bytes: Uint8Array): reapi.FindMissingBlobsRequest {
  const r = new Reader(bytes);
  let instanceName = '';
  let digestFunction = 0;
  const blobDigests: WireDigest[] = [];
  while (r.pos < r.end) {
    const tag = r.varint32();
    const field = tag >>> 3;
    const wire = tag & 7;
    if (field === 1 && wire === WIRE_LENGTH_DELIMITED) {
      const n = r.varint32();
      instanceName = r.string(n);
    } else if (field === 2 && wire === WIRE_LENGTH_DELIMITED) {
      const n = r.varint32();
      blobDigests.push(decodeDigest(r, r.limit(n)));
    } else if (field === 3 && wire === WIRE_VARINT) {
      // An enum is an int32 on the wire; negative values arrive sign-extended to 64 bits.
      digestFunction = r.int64() | 0;
    } else {
      r.skip(wire);
    }
  }
  // The handler reads these fields only; the generated class's methods are not needed.
  return { instanceName, blobDigests, digestFunction } as unknown as reapi.FindMissingBlobsRequest;
}

/**
 * A digest as the FindMissingBlobs decoder read it: the fields protobufjs would give, plus whether
 * the hash's bytes were all lowercase hexadecimal digits. Checking that on the bytes (a table lookup
 * per byte) is several times cheaper than on the decoded string, and lets the service skip the check.
 */
export class WireDigest {
  constructor(
    readonly hash: string,
    readonly sizeBytes: number,
    /** True if `hash` is non-empty and consists of '0'-'9' and 'a'-'f' only. */
    readonly hashIsLowercaseHex: boolean,
  ) {}
}

/** 1 for the bytes of '0'-'9' and 'a'-'f'. */
const LOWERCASE_HEX = new Uint8Array(256);
for (const c of '0123456789abcdef') LOWERCASE_HEX[c.charCodeAt(0)] = 1;

function decodeDigest(r: Reader, end: number): WireDigest {
  let hash = '';
  let sizeBytes = 0;
  let hashIsLowercaseHex = false;
  const outerEnd = r.end;
  r.end = end;
  while (r.pos < end) {
    const tag = r.varint32();
    const field = tag >>> 3;
    const wire = tag & 7;
    if (field === 1 && wire === WIRE_LENGTH_DELIMITED) {
      const n = r.varint32();
      hashIsLowercaseHex = n > 0 && r.isLowercaseHex(n);
      hash = r.string(n);
    } else if (field === 2 && wire === WIRE_VARINT) sizeBytes = r.int64();
    else r.skip(wire);
  }
  if (r.pos !== end) throw new RangeError('Digest message overruns its length');
  r.end = outerEnd;
  return new WireDigest(hash, sizeBytes, hashIsLowercaseHex);
}

class Reader {
  pos = 0;
  end: number;
  constructor(private readonly buf: Uint8Array) {
    this.end = buf.length;
  }

  /** The end offset of a length-delimited field of `n` bytes starting here, checked. */
  limit(n: number): number {
    const end = this.pos + n;
    if (end > this.end) throw new RangeError(`index out of range: ${this.pos} + ${n} > ${this.end}`);
    return end;
  }

  varint32(): number {
    // Tags and lengths: at most 5 significant bytes; longer encodings are sign-extended int32s.
    let value = 0;
    for (let shift = 0; shift < 70; shift += 7) {
      if (this.pos >= this.end) throw new RangeError('index out of range: truncated varint');
      const b = this.buf[this.pos++]!;
      if (shift < 32) value |= (b & 0x7f) << shift;
      if (b < 0x80) return value >>> 0;
    }
    throw new RangeError('invalid varint encoding');
  }

  /** An int64 as a JS number, as protobufjs decodes it without Long support (negative when the top bit is set). */
  int64(): number {
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new RangeError('index out of range: truncated varint');
      const b = this.buf[this.pos++]!;
      const bits = b & 0x7f;
      if (i < 4) lo |= bits << (7 * i);
      else if (i === 4) {
        lo |= bits << 28;
        hi |= bits >>> 4;
      } else hi |= bits << (7 * i - 32);
      if (b < 0x80) {
        lo >>>= 0;
        hi >>>= 0;
        if (hi >>> 31) {
          // Two's complement, the way protobufjs's LongBits.toNumber(false) reads it.
          let nlo = (~lo + 1) >>> 0;
          let nhi = ~hi >>> 0;
          if (nlo === 0) nhi = (nhi + 1) >>> 0;
          return -(nlo + nhi * 4294967296);
        }
        return lo + hi * 4294967296;
      }
    }
    throw new RangeError('invalid varint encoding');
  }

  /** Whether the next `n` bytes are all lowercase hex digits (does not advance). */
  isLowercaseHex(n: number): boolean {
    const end = this.limit(n);
    const buf = this.buf;
    let ok = 1;
    for (let i = this.pos; i < end; i++) ok &= LOWERCASE_HEX[buf[i]!]!;
    return ok === 1;
  }

  string(n: number): string {
    const end = this.limit(n);
    const text = utf8Slice(this.buf, this.pos, end);
    this.pos = end;
    return text;
  }

  skip(wire: number): void {
    if (wire === WIRE_VARINT) this.int64();
    else if (wire === WIRE_FIXED64) this.pos = this.limit(8);
    else if (wire === WIRE_LENGTH_DELIMITED) this.pos = this.limit(this.varint32());
    else if (wire === WIRE_FIXED32) this.pos = this.limit(4);
    else throw new Error(`invalid wire type ${wire} at offset ${this.pos}`);
  }
}

/**
 * Buffer's own `utf8Slice`/`utf8Write` (what `toString('utf8', ...)` and `write(..., 'utf8')` end
 * in, without their argument handling, which for 10k short hashes cost more than the copying).
 * Feature-detected, with the documented methods as the fallback.
 */
interface BufferInternals {
  utf8Slice(start: number, end: number): string;
  utf8Write(text: string, offset: number, length: number): number;
}
const hasInternals =
  typeof (Buffer.prototype as unknown as Partial<BufferInternals>).utf8Slice === 'function' &&
  typeof (Buffer.prototype as unknown as Partial<BufferInternals>).utf8Write === 'function';

function utf8Slice(bytes: Uint8Array, start: number, end: number): string {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return hasInternals ? (buf as unknown as BufferInternals).utf8Slice(start, end) : buf.toString('utf8', start, end);
}

function utf8Write(buf: Buffer, text: string, offset: number, length: number): number {
  return hasInternals ? (buf as unknown as BufferInternals).utf8Write(text, offset, length) : buf.write(text, offset, length, 'utf8');
}

/** Per digest: the encoded Digest message's length, then the hash's UTF-8 length (pairs, flat). */
function digestLengths(digests: readonly DigestLike[]): Int32Array {
  const lengths = new Int32Array(digests.length * 2);
  for (let i = 0; i < digests.length; i++) {
    const d = digests[i]!;
    const hash = d.hash ?? '';
    const hashBytes = hash.length === 0 ? 0 : Buffer.byteLength(hash);
    const sizeBytes = sizeOf(d);
    let n = hashBytes === 0 ? 0 : 1 + varintLength(hashBytes) + hashBytes;
    if (sizeBytes !== 0) n += 1 + varint64Length(sizeBytes);
    lengths[2 * i] = n;
    lengths[2 * i + 1] = hashBytes;
  }
  return lengths;
}

function repeatedDigestsLength(lengths: Int32Array): number {
  let total = 0;
  for (let i = 0; i < lengths.length; i += 2) total += 1 + varintLength(lengths[i]!) + lengths[i]!;
  return total;
}

function writeRepeatedDigests(buf: Buffer, pos: number, field: number, digests: readonly DigestLike[], lengths: Int32Array): number {
  const tag = (field << 3) | WIRE_LENGTH_DELIMITED;
  for (let i = 0; i < digests.length; i++) {
    const d = digests[i]!;
    buf[pos++] = tag;
    pos = writeVarint(buf, pos, lengths[2 * i]!);
    const hashBytes = lengths[2 * i + 1]!;
    if (hashBytes !== 0) {
      const hash = d.hash!;
      buf[pos++] = (1 << 3) | WIRE_LENGTH_DELIMITED;
      pos = writeVarint(buf, pos, hashBytes);
      pos += utf8Write(buf, hash, pos, hashBytes);
    }
    const sizeBytes = sizeOf(d);
    if (sizeBytes !== 0) {
      buf[pos++] = (2 << 3) | WIRE_VARINT;
      pos = writeVarint64(buf, pos, sizeBytes);
    }
  }
  return pos;
}

function sizeOf(d: DigestLike): number {
  const s = d.sizeBytes;
  if (typeof s === 'number') return s;
  if (s === null || s === undefined) return 0;
  return s.toNumber();
}

/** Length of an unsigned varint below 2^32. */
function varintLength(n: number): number {
  return n < 0x80 ? 1 : n < 0x4000 ? 2 : n < 0x200000 ? 3 : n < 0x10000000 ? 4 : 5;
}

/** Length of an int64 varint: negative values take 10 bytes (two's complement). */
function varint64Length(n: number): number {
  if (n < 0) return 10;
  let length = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    length++;
  }
  return length;
}

function writeVarint(buf: Buffer, pos: number, n: number): number {
  while (n >= 0x80) {
    buf[pos++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  buf[pos++] = n;
  return pos;
}

function writeVarint64(buf: Buffer, pos: number, n: number): number {
  if (n < 0) {
    let v = BigInt.asUintN(64, BigInt(Math.trunc(n)));
    for (let i = 0; i < 9; i++) {
      buf[pos++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    buf[pos++] = Number(v);
    return pos;
  }
  while (n >= 0x80) {
    buf[pos++] = (n % 128) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[pos++] = n;
  return pos;
}

function checkLength(buf: Buffer, pos: number): Buffer {
  if (pos !== buf.length) throw new Error(`FindMissingBlobs encoder wrote ${pos} of ${buf.length} bytes`);
  return buf;
}
