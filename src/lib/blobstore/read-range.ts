/**
 * The byte range a `read` asks for, checked against the stored size once, so that every store
 * answers offsets and limits the same way (the ByteStream Read rules): an offset past the end is
 * OUT_OF_RANGE, an offset equal to the size yields nothing, a limit of 0 means "to the end".
 */
import type { Digest } from '../digest/digest.js';
import { StatusError } from '../errors/status-error.js';
import { MAX_READ_CHUNK_BYTES, type ReadOptions } from './blob-store.js';

export interface ReadRange {
  /** First byte to return. */
  start: number;
  /** One past the last byte to return. */
  end: number;
}

/** Resolves `opts.offset`/`opts.limit` against a blob of `sizeBytes` stored bytes. */
export function resolveReadRange(digest: Digest, sizeBytes: number, opts: ReadOptions = {}): ReadRange {
  const offset = opts.offset ?? 0;
  const limit = opts.limit ?? 0;
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw StatusError.outOfRange(`Failed to read blob ${digest.toString()}: offset ${JSON.stringify(offset)} is not a non-negative integer`);
  }
  if (offset > sizeBytes) {
    throw StatusError.outOfRange(`Failed to read blob ${digest.toString()}: offset ${offset} is past its end (${sizeBytes} bytes)`);
  }
  if (!Number.isSafeInteger(limit) || limit < 0) {
    throw StatusError.invalidArgument(`Failed to read blob ${digest.toString()}: limit ${JSON.stringify(limit)} is not a non-negative integer`, [
      { field: 'read_limit', description: 'Must be a non-negative integer' },
    ]);
  }
  return { start: offset, end: limit === 0 ? sizeBytes : Math.min(sizeBytes, offset + limit) };
}

/** Yields `bytes[start, end)` as views of at most MAX_READ_CHUNK_BYTES, without copying. */
export function* sliceChunks(bytes: Uint8Array, range: ReadRange): Generator<Uint8Array> {
  for (let pos = range.start; pos < range.end; pos += MAX_READ_CHUNK_BYTES) {
    yield bytes.subarray(pos, Math.min(range.end, pos + MAX_READ_CHUNK_BYTES));
  }
}
