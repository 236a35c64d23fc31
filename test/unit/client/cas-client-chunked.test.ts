/**
 * CasClient's chunked transfers (SplitBlob/SpliceBlob) against the real storage services: a large
 * blob changed in one place re-uploads only the chunks around the change, a chunk cache lets a
 * download fetch only new chunks, and every way the chunked path can fail falls back to a plain
 * transfer. A counting TCP proxy measures what crossed the wire.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { type BlobStore, ForwardingBlobStore } from '../../../src/lib/blobstore/blob-store.js';
import { CasClient } from '../../../src/lib/client/cas-client.js';
import { RemoteConnection } from '../../../src/lib/client/connection.js';
import type { Digest } from '../../../src/lib/digest/digest.js';
import { type CuttingProxy, type StorageServer, recordingInterceptor, startCuttingProxy, startStorageServer } from './storage-server.js';

let server: StorageServer | undefined;
let proxy: CuttingProxy | undefined;
let connection: RemoteConnection | undefined;
let dir: string | undefined;
afterEach(async () => {
  connection?.close();
  await proxy?.close();
  await server?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
  connection = proxy = server = dir = undefined;
});

function randomBytes(n: number, seed: string): Buffer {
  const out = Buffer.alloc(n);
  for (let i = 0, block = 0; i < n; block++, i += 32) createHash('sha256').update(`${seed}/${block}`).digest().copy(out, i, 0, Math.min(32, n - i));
  return out;
}

const SIZE = 4 * 1024 * 1024;
/** Small chunks (16 KiB on average) keep the test fast and the counts telling. */
const chunking = { avgChunkSizeBytes: 16 * 1024 };

async function setUp(opts: Parameters<typeof startStorageServer>[0] = { chunking }, calls: string[] = []) {
  server = await startStorageServer(opts);
  proxy = await startCuttingProxy(server.address);
  connection = new RemoteConnection(proxy.address, { interceptors: [recordingInterceptor(calls)] });
  dir = await mkdtemp(join(tmpdir(), 'bzutil-chunked-'));
  return { calls };
}

function changedCopy(data: Buffer, at: number): Buffer {
  const copy = Buffer.from(data);
  copy[at] = copy[at]! ^ 0x5a;
  return copy;
}

describe('CasClient chunked transfers', () => {
  it('splices a large upload, and re-uploads a changed copy sending only the changed chunks', async () => {
    const { calls } = await setUp();
    const cas = new CasClient(connection!, { chunkedThresholdBytes: 1024 * 1024 });
    const data = randomBytes(SIZE, 'v1');
    const first = await cas.uploadBlobs([{ digest: cas.digestOf(data), data }]);
    expect(first).toMatchObject({ uploadedBlobs: 1, splicedBlobs: 1, splicedBytesSent: SIZE });
    expect(calls).toContain('SpliceBlob');
    expect(calls).not.toContain('Write');

    const changed = changedCopy(data, SIZE / 2);
    const digest = cas.digestOf(changed);
    const before = proxy!.clientBytes;
    const second = await cas.uploadBlobs([{ digest, data: changed }]);
    expect(second.splicedBlobs).toBe(1);
    expect(second.splicedBytesSent!).toBeGreaterThan(0);
    expect(second.splicedBytesSent!).toBeLessThan(4 * 64 * 1024);
    // On the wire: the changed chunks, the chunk digests twice (FindMissing, SpliceBlob) and framing.
    expect(proxy!.clientBytes - before).toBeLessThan(SIZE / 10);
    expect(Buffer.from(await server!.contentAddressableStorage.get(digest)).equals(changed)).toBe(true);
  });

  it('uploads a file as chunks, and refuses a file whose bytes are not those of its digest', async () => {
    await setUp();
    const cas = new CasClient(connection!, { chunkedThresholdBytes: 1024 * 1024 });
    const data = randomBytes(2 * 1024 * 1024, 'file');
    const path = join(dir!, 'big.bin');
    await writeFile(path, data);
    const digest = cas.digestOf(data);
    expect((await cas.uploadBlobs([{ digest, path }])).splicedBlobs).toBe(1);
    expect(Buffer.from(await server!.contentAddressableStorage.get(digest)).equals(data)).toBe(true);

    const other = randomBytes(2 * 1024 * 1024, 'changed under us');
    await writeFile(path, other);
    const claimed = cas.digestOf(changedCopy(data, 5));
    await expect(cas.uploadBlobs([{ digest: claimed, path }])).rejects.toMatchObject({ code: 3 });
    expect(await server!.contentAddressableStorage.findMissing([claimed])).toHaveLength(1);
  });

  it('uploads plainly (ByteStream) when the server does not splice, or below the threshold', async () => {
    const { calls } = await setUp({ chunking: false });
    const cas = new CasClient(connection!, { chunkedThresholdBytes: 1024 * 1024 });
    const data = randomBytes(SIZE, 'plain');
    const result = await cas.uploadBlobs([{ digest: cas.digestOf(data), data }]);
    expect(result.splicedBlobs).toBeUndefined();
    expect(calls).toContain('Write');
    expect(calls).not.toContain('SpliceBlob');
    await server!.close();
    connection!.close();
    await proxy!.close();
    await rm(dir!, { recursive: true, force: true });

    const calls2: string[] = [];
    await setUp({ chunking }, calls2);
    const small = randomBytes(2 * 1024 * 1024, 'below the default 8 MiB');
    const cas2 = new CasClient(connection!);
    await cas2.uploadBlobs([{ digest: cas2.digestOf(small), data: small }]);
    expect(calls2).toContain('Write');
    expect(calls2).not.toContain('SpliceBlob');
  });

  it('falls back to a plain upload when the splice finds a chunk missing', async () => {
    // A store that claims every chunk-sized blob present without holding it: the client sends no
    // chunk, the splice fails with FAILED_PRECONDITION, and the blob goes by ByteStream instead.
    const lying = (base: BlobStore) =>
      new (class extends ForwardingBlobStore {
        override async findMissing(digests: readonly Digest[]): Promise<Digest[]> {
          return (await this.base.findMissing(digests)).filter((d) => d.sizeBytes >= SIZE);
        }
      })(base);
    const { calls } = await setUp({ chunking, wrapCas: lying });
    const cas = new CasClient(connection!, { chunkedThresholdBytes: 1024 * 1024 });
    const data = randomBytes(SIZE, 'fallback');
    const digest = cas.digestOf(data);
    const result = await cas.uploadBlobs([{ digest, data }]);
    expect(calls).toContain('SpliceBlob');
    expect(calls).toContain('Write');
    expect(result.splicedBlobs).toBeUndefined();
    expect(Buffer.from(await server!.contentAddressableStorage.get(digest)).equals(data)).toBe(true);
  });

  it('downloads through a chunk cache: a changed blob fetches only its new chunks; a damaged cached chunk is fetched again', async () => {
    const { calls } = await setUp();
    const cacheDir = join(dir!, 'chunks');
    const cas = new CasClient(connection!, { chunkedThresholdBytes: 1024 * 1024, chunkCacheDir: cacheDir });
    const data = randomBytes(SIZE, 'download');
    const changed = changedCopy(data, 1_000_000);
    const d1 = cas.digestOf(data);
    const d2 = cas.digestOf(changed);
    await server!.contentAddressableStorage.put(d1, data);
    await server!.contentAddressableStorage.put(d2, changed);

    await cas.downloadToFile(d1, join(dir!, 'v1'));
    expect((await readFile(join(dir!, 'v1'))).equals(data)).toBe(true);
    expect(calls).toContain('SplitBlob');

    const before = proxy!.serverBytes;
    await cas.downloadToFile(d2, join(dir!, 'v2'));
    expect((await readFile(join(dir!, 'v2'))).equals(changed)).toBe(true);
    expect(proxy!.serverBytes - before).toBeLessThan(SIZE / 10);

    // Damage every cached chunk: each is noticed, fetched again, and the file is still right.
    const files = await readdir(join(cacheDir, 'sha256'));
    expect(files.length).toBeGreaterThan(50);
    for (const f of files) await writeFile(join(cacheDir, 'sha256', f), 'damaged');
    await cas.downloadToFile(d1, join(dir!, 'v1-again'));
    expect((await readFile(join(dir!, 'v1-again'))).equals(data)).toBe(true);
  });

  it('reads plainly without a chunk cache, and when the server does not split', async () => {
    const calls: string[] = [];
    await setUp({ chunking: false }, calls);
    const data = randomBytes(SIZE, 'no split');
    const cas = new CasClient(connection!, { chunkedThresholdBytes: 1024 * 1024, chunkCacheDir: join(dir!, 'chunks') });
    const digest = cas.digestOf(data);
    await server!.contentAddressableStorage.put(digest, data);
    await cas.downloadToFile(digest, join(dir!, 'out'));
    expect((await readFile(join(dir!, 'out'))).equals(data)).toBe(true);
    expect(calls).not.toContain('SplitBlob');

    const noCache = new CasClient(connection!, { chunkedThresholdBytes: 1024 * 1024 });
    await noCache.downloadToFile(digest, join(dir!, 'out2'));
    expect(calls).not.toContain('SplitBlob');
  });
});
