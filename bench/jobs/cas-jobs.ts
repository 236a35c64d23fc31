/**
 * Driver jobs that act as REAPI storage clients of a running bzutil apiserver: large uploads and
 * downloads (C1, C2), many small blobs (C3), and FindMissingBlobs against a large CAS (C5). Each job
 * checks that the server really did the work (blob on disk, bytes identical, exact missing set)
 * before reporting a time, so a fast wrong answer never shows up as a good figure.
 */
import { createHash, randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { GrpcBlobStore } from '../../src/lib/blobstore/grpc-blob-store.js';
import { ShardingBlobStore } from '../../src/lib/blobstore/sharding-blob-store.js';
import { CasClient } from '../../src/lib/client/cas-client.js';
import { RemoteConnection, type ClientTlsFiles } from '../../src/lib/client/connection.js';
import { Digest } from '../../src/lib/digest/digest.js';
import type { bytestream } from '../../src/lib/proto/index.js';
import { byteStreamService } from '../../src/lib/proto/services.js';
import { mapConcurrent } from '../../src/lib/util/concurrency.js';
import { POOL_BYTES, blobChunks, blobSha256, makePool } from '../lib/data.js';
import { MiB } from '../lib/stats.js';
import type { LatencyResult, TimedResult } from './raw-jobs.js';

/**
 * Where the filesystem store keeps a blob of the empty instance: `<cas>/_/sha256/<hash[0..2]>/<hash>-<size>`
 * (see src/lib/blobstore/filesystem-blob-store.ts).
 */
export function blobFilePath(casDir: string, hash: string, sizeBytes: number): string {
  return join(casDir, '_', 'sha256', hash.slice(0, 2), `${hash}-${sizeBytes}`);
}

async function withCas<T>(address: string, fn: (cas: CasClient) => Promise<T>, tls?: ClientTlsFiles): Promise<T> {
  const connection = new RemoteConnection(address, { tls });
  try {
    const cas = new CasClient(connection);
    // Connect (and learn the batch limit) before anything is timed.
    await cas.getCapabilities({ deadlineMs: 30_000 });
    return await fn(cas);
  } finally {
    connection.close();
  }
}

/** The blob `(seed, sizeBytes)` and its digest. Hashing happens here, before any timing. */
export function benchBlob(seed: string, sizeBytes: number): { pool: Buffer; digest: Digest } {
  const pool = makePool(seed);
  return { pool, digest: Digest.create('', 'sha256', blobSha256(pool, sizeBytes), sizeBytes) };
}

/**
 * C1: uploads the blob `(seed, sizeBytes)` with ByteStream Write. With 16 KiB messages the
 * WriteRequests are sent directly, as Bazel does; otherwise CasClient.writeBlob chunks the stream
 * (1 MiB). Afterwards FindMissingBlobs must not list it and its file must be on disk at full size.
 * With `tls` (C1-*-tls) the channel uses TLS, trusting `tls.caFile`.
 */
export async function byteStreamUploadJob(p: { address: string; seed: string; sizeBytes: number; chunkBytes: number; casDir: string; tls?: ClientTlsFiles }): Promise<TimedResult> {
  const { pool, digest } = benchBlob(p.seed, p.sizeBytes);
  return withCas(p.address, async (cas) => {
    const start = performance.now();
    if (p.chunkBytes === 1 * MiB) {
      await cas.writeBlob(digest, toAsync(blobChunks(pool, p.sizeBytes, p.chunkBytes)));
    } else {
      await writeDirectly(cas.connection, digest, blobChunks(pool, p.sizeBytes, p.chunkBytes));
    }
    const seconds = (performance.now() - start) / 1000;
    const missing = await cas.findMissingBlobs([digest]);
    if (missing.length) throw new Error(`Upload of ${digest} finished but FindMissingBlobs still lists it`);
    const file = blobFilePath(p.casDir, digest.hash, digest.sizeBytes);
    const st = await stat(file).catch((err: unknown) => {
      throw new Error(`Upload of ${digest} finished but ${file} is not on disk: ${(err as Error).message}`);
    });
    if (st.size !== digest.sizeBytes) throw new Error(`Upload of ${digest} left ${st.size} bytes on disk`);
    return { seconds };
  }, p.tls);
}

/** One ByteStream Write with one WriteRequest per chunk, the way Bazel streams an upload. */
async function writeDirectly(connection: RemoteConnection, digest: Digest, chunks: Iterable<Buffer>): Promise<void> {
  const call = connection.clientStream(byteStreamService.write);
  let position = 0;
  for (const data of chunks) {
    const message: bytestream.IWriteRequest = { writeOffset: position, data, finishWrite: position + data.length === digest.sizeBytes };
    if (position === 0) message.resourceName = digest.toByteStreamWritePath(randomUUID());
    position += data.length;
    await call.write(message);
    if (call.settled) break;
  }
  call.end();
  const res = await call.response;
  if (res.committedSize !== digest.sizeBytes) throw new Error(`The server committed ${res.committedSize} of ${digest.sizeBytes} bytes of ${digest}`);
}

async function* toAsync<T>(items: Iterable<T>): AsyncGenerator<T> {
  yield* items;
}

/**
 * C2: downloads the blob `(seed, sizeBytes)` with ByteStream Read (CasClient.readStream) and
 * compares every byte with the expected content (memcmp speed, far cheaper than hashing).
 */
export async function byteStreamDownloadJob(p: { address: string; seed: string; sizeBytes: number }): Promise<TimedResult> {
  const { pool, digest } = benchBlob(p.seed, p.sizeBytes);
  return withCas(p.address, async (cas) => {
    const start = performance.now();
    let position = 0;
    for await (const data of cas.readStream(digest)) {
      checkContent(pool, position, data, digest);
      position += data.length;
    }
    const seconds = (performance.now() - start) / 1000;
    if (position !== p.sizeBytes) throw new Error(`Download of ${digest} ended after ${position} bytes`);
    return { seconds };
  });
}

function checkContent(pool: Buffer, position: number, data: Uint8Array, digest: Digest): void {
  const got = Buffer.from(data.buffer, data.byteOffset, data.length);
  for (let offset = 0; offset < got.length; ) {
    const poolOffset = (position + offset) % POOL_BYTES;
    const n = Math.min(got.length - offset, POOL_BYTES - poolOffset);
    if (!got.subarray(offset, offset + n).equals(pool.subarray(poolOffset, poolOffset + n))) {
      throw new Error(`Download of ${digest}: bytes at offset ${position + offset} differ from what was uploaded`);
    }
    offset += n;
  }
}

/**
 * C3: uploads `count` distinct blobs of 100 B to 4 KiB, either one ByteStream Write each with
 * `inFlight` outstanding (Bazel's pattern) or through CasClient.uploadBlobs (FindMissingBlobs, then
 * BatchUpdateBlobs under the server's batch limit). Afterwards none may be missing.
 */
export async function smallBlobsJob(p: { address: string; seed: string; count: number; variant: 'bytestream' | 'batch'; inFlight: number }): Promise<TimedResult & { blobs: number; bytes: number }> {
  const items = smallBlobItems(p.seed, p.count);
  const bytes = items.reduce((sum, i) => sum + i.data.length, 0);
  return withCas(p.address, async (cas) => {
    const start = performance.now();
    if (p.variant === 'bytestream') {
      await mapConcurrent(items, p.inFlight, (item) => cas.writeBlob(item.digest, item.data));
    } else {
      const result = await cas.uploadBlobs(items);
      if (result.uploadedBlobs !== items.length) throw new Error(`uploadBlobs sent ${result.uploadedBlobs} of ${items.length} new blobs`);
    }
    const seconds = (performance.now() - start) / 1000;
    const missing = await cas.findMissingBlobs(items.map((i) => i.digest));
    if (missing.length) throw new Error(`${missing.length} of ${items.length} uploaded blobs are missing afterwards, e.g. ${missing[0]}`);
    return { seconds, blobs: items.length, bytes };
  });
}

/**
 * S1: uploads `count` distinct blobs of 100 B to 4 KiB through a ShardingBlobStore over one
 * GrpcBlobStore per address (each shard keyed by its address, as `--cas a,b` builds it), `inFlight`
 * puts outstanding, as a worker uploading outputs to a sharded CAS does. With one address it is a
 * single apiserver behind the same client code. Afterwards none may be missing.
 */
export async function shardedBlobsJob(p: { addresses: string[]; seed: string; count: number; inFlight: number }): Promise<TimedResult & { blobs: number; bytes: number }> {
  const items = smallBlobItems(p.seed, p.count);
  const bytes = items.reduce((sum, i) => sum + i.data.length, 0);
  const connections = p.addresses.map((address) => new RemoteConnection(address));
  try {
    const clients = connections.map((c) => new CasClient(c));
    for (const cas of clients) await cas.getCapabilities({ deadlineMs: 30_000 });
    const store = new ShardingBlobStore(clients.map((cas, i) => ({ key: p.addresses[i]!, weight: 1, backend: new GrpcBlobStore(cas) })));
    const start = performance.now();
    await mapConcurrent(items, p.inFlight, (item) => store.put(item.digest, item.data));
    const seconds = (performance.now() - start) / 1000;
    const missing = await store.findMissing(items.map((i) => i.digest));
    if (missing.length) throw new Error(`${missing.length} of ${items.length} uploaded blobs are missing afterwards, e.g. ${missing[0]}`);
    return { seconds, blobs: items.length, bytes };
  } finally {
    for (const c of connections) c.close();
  }
}

/** `count` distinct blobs of 100 B to 4 KiB cut from a pool made from `seed`, hashed before any timing. */
function smallBlobItems(seed: string, count: number): { digest: Digest; data: Buffer }[] {
  const pool = makePool(seed, 16 * MiB);
  const byKey = new Map<string, { digest: Digest; data: Buffer }>();
  let state = createHash('sha256').update(seed).digest().readUInt32LE(0);
  const next = () => (state = (Math.imul(state, 1664525) + 1013904223) >>> 0);
  for (let i = 0; byKey.size < count && i < count * 2; i++) {
    const size = 100 + (next() % (4096 - 100 + 1));
    const offset = next() % (pool.length - size);
    const data = pool.subarray(offset, offset + size);
    const digest = Digest.ofBytes(data);
    byKey.set(digest.key, { digest, data });
  }
  return [...byKey.values()];
}

/** Content of the i-th C5 blob: small, distinct and computable by any process. */
function findMissingBlobContent(i: number): Buffer {
  return Buffer.from(`bzutil-bench-c5-blob-${i}`);
}

function findMissingDigest(i: number): Digest {
  return Digest.ofBytes(findMissingBlobContent(i));
}

/**
 * C5 set-up: writes `count` small blobs straight into a filesystem store's directory, in its layout,
 * before the apiserver starts (which then rebuilds its index from them). Far faster than a million
 * uploads, and the index the server builds is the same.
 */
export async function populateCasJob(p: { casDir: string; count: number }): Promise<TimedResult> {
  const start = performance.now();
  const prefixDir = join(p.casDir, '_', 'sha256');
  for (let i = 0; i < 256; i++) mkdirSync(join(prefixDir, i.toString(16).padStart(2, '0')), { recursive: true });
  for (let i = 0; i < p.count; i++) {
    const data = findMissingBlobContent(i);
    const hash = createHash('sha256').update(data).digest('hex');
    writeFileSync(blobFilePath(p.casDir, hash, data.length), data);
  }
  return { seconds: (performance.now() - start) / 1000 };
}

/**
 * C5: `queries` sequential FindMissingBlobs calls (after 3 warm-ups) of `digestsPerQuery` digests,
 * half of them stored and half absent; each answer must list exactly the absent half. Each request
 * is built just before its call, outside the timing: built all up front, the client's heap held a
 * million digests, and its full collections during the calls were a third of its time.
 */
export async function findMissingJob(p: { address: string; storeBlobs: number; queries: number; digestsPerQuery: number; seed: string }): Promise<LatencyResult> {
  let state = createHash('sha256').update(p.seed).digest().readUInt32LE(0);
  const next = () => (state = (Math.imul(state, 1664525) + 1013904223) >>> 0);
  const warmups = 3;
  const half = p.digestsPerQuery >> 1;
  const nextRequest = () => {
    const present = new Set<number>();
    while (present.size < half) present.add(next() % p.storeBlobs);
    const absent = new Set<number>();
    while (absent.size < p.digestsPerQuery - half) absent.add(p.storeBlobs + (next() % (p.storeBlobs * 10)));
    const absentDigests = [...absent].map(findMissingDigest);
    return { digests: [...[...present].map(findMissingDigest), ...absentDigests], absentKeys: new Set(absentDigests.map((d) => d.key)) };
  };
  return withCas(p.address, async (cas) => {
    const latenciesMs: number[] = [];
    for (let index = 0; index < warmups + p.queries; index++) {
      const request = nextRequest();
      const t = performance.now();
      const missing = await cas.findMissingBlobs(request.digests);
      const ms = performance.now() - t;
      if (missing.length !== request.absentKeys.size || missing.some((d) => !request.absentKeys.has(d.key))) {
        throw new Error(`FindMissingBlobs listed ${missing.length} digests; expected exactly the ${request.absentKeys.size} absent ones`);
      }
      if (index >= warmups) latenciesMs.push(ms);
    }
    return { latenciesMs };
  });
}
