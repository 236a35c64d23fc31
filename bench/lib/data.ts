/**
 * Deterministic pseudo-random test data, so that one process can upload a blob and another can
 * download and check it without either holding the whole blob: a blob is a 64 MiB pool of AES-CTR
 * keystream (incompressible, generated at several GB/s from a seed) repeated up to its size.
 * Different seeds give different blobs, so each repetition uploads content the CAS has never seen.
 */
import { createCipheriv, createHash } from 'node:crypto';
import { MiB } from './stats.js';

export const POOL_BYTES = 64 * MiB;

/** `sizeBytes` (at most POOL_BYTES) of keystream for `seed`. */
export function makePool(seed: string, sizeBytes = POOL_BYTES): Buffer {
  const key = createHash('sha256').update(`bzutil-bench:${seed}`).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  return cipher.update(Buffer.alloc(sizeBytes));
}

/** A blob of `sizeBytes` made of `pool` repeated, as views of `chunkBytes` (no copies). */
export function* blobChunks(pool: Buffer, sizeBytes: number, chunkBytes: number): Generator<Buffer> {
  if (pool.length % chunkBytes !== 0) throw new RangeError(`chunk size ${chunkBytes} must divide the pool size ${pool.length}`);
  for (let offset = 0; offset < sizeBytes; offset += chunkBytes) {
    const start = offset % pool.length;
    yield pool.subarray(start, start + Math.min(chunkBytes, sizeBytes - offset));
  }
}

/** SHA-256 (hex) of the blob that `blobChunks(pool, sizeBytes, …)` yields. */
export function blobSha256(pool: Buffer, sizeBytes: number): string {
  const hash = createHash('sha256');
  for (const chunk of blobChunks(pool, sizeBytes, MiB)) hash.update(chunk);
  return hash.digest('hex');
}
