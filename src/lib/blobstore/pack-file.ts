/**
 * The record format of a PackedBlobStore's pack files, and the scan that rebuilds the index from
 * them at open. A pack is a file of records appended back to back; each record describes itself,
 * so that nothing but the packs is needed to find the blobs again after a restart or a crash:
 *
 * ```
 *  0  u32  magic "BZPK" (0x4b505a42, little-endian)
 *  4  u8   format version (1)
 *  5  u8   digest function (DIGEST_FUNCTION_CODES)
 *  6  u16  instance name length in bytes (UTF-8)
 *  8  u32  payload length in bytes (the digest's size)
 * 12  u32  CRC-32 of the whole record except these four bytes
 * 16       hash (raw bytes: half its hex length), instance name, payload
 * ```
 *
 * The CRC lets the scan tell a record from a torn or overwritten one without hashing every blob
 * at start-up; what a read serves is still checked against its digest (PackedBlobStore).
 */
import { crc32 } from 'node:zlib';
import * as fs from 'node:fs';
import { Digest } from '../digest/digest.js';
import { type DigestFunction, hexLength } from '../digest/digest-function.js';

const MAGIC = 0x4b505a42;
const VERSION = 1;
export const RECORD_FIXED_BYTES = 16;

/** Stable codes on disk; never renumber (DIGEST_FUNCTIONS' order is not a file format). */
const DIGEST_FUNCTION_CODES: Record<DigestFunction, number> = { sha256: 1, sha1: 2, md5: 3, sha384: 4, sha512: 5, blake3: 6 };
const DIGEST_FUNCTION_BY_CODE = new Map(Object.entries(DIGEST_FUNCTION_CODES).map(([fn, code]) => [code, fn as DigestFunction]));

/** Bytes of a record before its payload. */
export function recordHeaderBytes(digest: Digest): number {
  return RECORD_FIXED_BYTES + hexLength(digest.digestFunction) / 2 + Buffer.byteLength(digest.instanceName);
}

/** The whole record of `payload` under `digest`, ready to append in one write. */
export function encodeRecord(digest: Digest, payload: Uint8Array): Buffer {
  const name = Buffer.from(digest.instanceName);
  const headerBytes = RECORD_FIXED_BYTES + hexLength(digest.digestFunction) / 2 + name.length;
  const record = Buffer.allocUnsafe(headerBytes + payload.length);
  record.writeUInt32LE(MAGIC, 0);
  record.writeUInt8(VERSION, 4);
  record.writeUInt8(DIGEST_FUNCTION_CODES[digest.digestFunction], 5);
  record.writeUInt16LE(name.length, 6);
  record.writeUInt32LE(payload.length, 8);
  record.write(digest.hash, RECORD_FIXED_BYTES, 'hex');
  name.copy(record, headerBytes - name.length);
  record.set(payload, headerBytes);
  record.writeUInt32LE(recordCrc(record), 12);
  return record;
}

function recordCrc(record: Uint8Array): number {
  return crc32(record.subarray(RECORD_FIXED_BYTES), crc32(record.subarray(0, 12)));
}

/** A record found by the scan. */
export interface ScannedRecord {
  digest: Digest;
  /** Offset of the record in its pack. */
  offset: number;
  /** Bytes before the payload. */
  headerBytes: number;
}

export interface PackScan {
  records: ScannedRecord[];
  /** Bytes of the pack that hold whole records; anything after is a torn tail to truncate. */
  validBytes: number;
  /** Records skipped because their CRC did not match (their bytes stay, unindexed). */
  corruptRecords: number;
}

/** Bytes read per call while scanning. */
const SCAN_BUFFER_BYTES = 4 * 1024 * 1024;
/** Scan reads between two yields to the event loop. */
const READS_PER_YIELD = 8;

/**
 * Reads a pack from start to end and lists its records. The scan stops at the first position that
 * does not hold a whole record with a plausible header (a write torn by a crash, or bytes that are
 * not records): everything from there is reported as a tail to truncate. A record whose header is
 * plausible but whose CRC does not match (a flipped byte) is skipped, not indexed, when the bytes
 * after it start another record or end the file; otherwise the scan stops there too.
 */
export async function scanPack(fd: number, fileBytes: number, maxPayloadBytes: number): Promise<PackScan> {
  const records: ScannedRecord[] = [];
  let corruptRecords = 0;
  let buffer = Buffer.allocUnsafe(SCAN_BUFFER_BYTES);
  let bufferStart = 0;
  let bufferEnd = 0;
  let reads = 0;
  /** `bytes` bytes at `offset` (fewer only at the end of the file), read through the buffer. */
  const view = async (offset: number, bytes: number): Promise<Buffer> => {
    const want = Math.min(bytes, fileBytes - offset);
    if (offset < bufferStart || offset + want > bufferEnd) {
      if (buffer.length < want) buffer = Buffer.allocUnsafe(want);
      // Synchronous reads, yielding to the event loop now and then: start-up is nothing but these
      // reads, and a round trip through the thread pool per read left the scan idle a third of the time.
      const bytesRead = fs.readSync(fd, buffer, 0, Math.min(buffer.length, fileBytes - offset), offset);
      if (++reads % READS_PER_YIELD === 0) await new Promise<void>((resolve) => setImmediate(resolve));
      bufferStart = offset;
      bufferEnd = offset + bytesRead;
    }
    return buffer.subarray(offset - bufferStart, Math.min(bufferEnd, offset + want) - bufferStart);
  };
  const parse = async (offset: number) => {
    const fixed = await view(offset, RECORD_FIXED_BYTES);
    if (fixed.length < RECORD_FIXED_BYTES || fixed.readUInt32LE(0) !== MAGIC || fixed.readUInt8(4) !== VERSION) return undefined;
    const fn = DIGEST_FUNCTION_BY_CODE.get(fixed.readUInt8(5));
    const payloadBytes = fixed.readUInt32LE(8);
    if (!fn || payloadBytes > maxPayloadBytes) return undefined;
    const headerBytes = RECORD_FIXED_BYTES + hexLength(fn) / 2 + fixed.readUInt16LE(6);
    const end = offset + headerBytes + payloadBytes;
    if (end > fileBytes) return undefined;
    const record = await view(offset, end - offset);
    return { fn, record, headerBytes, end, crcOk: record.readUInt32LE(12) === recordCrc(record) };
  };
  let offset = 0;
  while (offset < fileBytes) {
    const found = await parse(offset);
    if (!found) break;
    if (!found.crcOk) {
      if (found.end < fileBytes && !(await parse(found.end))) break;
      corruptRecords++;
      offset = found.end;
      continue;
    }
    const { fn, record, headerBytes } = found;
    const hashEnd = RECORD_FIXED_BYTES + hexLength(fn) / 2;
    const digest = tryDigest(record.toString('utf8', hashEnd, headerBytes), fn, record.toString('hex', RECORD_FIXED_BYTES, hashEnd), found.end - offset - headerBytes);
    if (!digest) break;
    records.push({ digest, offset, headerBytes });
    offset = found.end;
  }
  return { records, validBytes: offset, corruptRecords };
}

function tryDigest(instanceName: string, fn: DigestFunction, hash: string, sizeBytes: number): Digest | undefined {
  try {
    return Digest.create(instanceName, fn, hash, sizeBytes, 'digest', true);
  } catch {
    return undefined;
  }
}
