/**
 * CasClient with `compressor: 'zstd'` (the CLI's --compress) against the real storage services:
 * blobs travel compressed where the server advertises zstd, plain where it does not, and arrive
 * byte-identical either way. A counting TCP proxy measures what crossed the wire.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { CasClient } from '../../../src/lib/client/cas-client.js';
import { RemoteConnection } from '../../../src/lib/client/connection.js';
import type { Clock } from '../../../src/lib/util/clock.js';
import { type CuttingProxy, type StorageServer, recordingInterceptor, startCuttingProxy, startStorageServer } from './storage-server.js';
import { sourceLikeBytes } from '../../helpers/source-like.js';


const instantClock: Clock = { now: () => 0, sleep: async () => {} };

let server: StorageServer | undefined;
let proxy: CuttingProxy | undefined;
let connection: RemoteConnection | undefined;
afterEach(async () => {
  connection?.close();
  await proxy?.close();
  await server?.close();
  connection = proxy = server = undefined;
});

async function setUp(opts: { compressors?: readonly ('zstd' | 'deflate')[] } = {}, calls: string[] = []) {
  server = await startStorageServer(opts);
  proxy = await startCuttingProxy(server.address);
  connection = new RemoteConnection(proxy.address, { interceptors: [recordingInterceptor(calls)] });
  return { calls };
}

describe('CasClient with compression', () => {
  it('uploads and downloads a large blob zstd-compressed over ByteStream, byte-identical', async () => {
    await setUp();
    const cas = new CasClient(connection!, { compressor: 'zstd' });
    const data = sourceLikeBytes(6 * 1024 * 1024);
    const digest = cas.digestOf(data);
    const sentBefore = proxy!.clientBytes;
    await cas.uploadBlobs([{ digest, data }]);
    expect(proxy!.clientBytes - sentBefore).toBeLessThan(data.length / 4);
    // Stored plain: the server decompressed and verified it.
    expect(Buffer.from(await server!.contentAddressableStorage.get(digest)).equals(Buffer.from(data))).toBe(true);

    const receivedBefore = proxy!.serverBytes;
    const back = await cas.readBlob(digest);
    expect(proxy!.serverBytes - receivedBefore).toBeLessThan(data.length / 4);
    expect(Buffer.from(back).equals(Buffer.from(data))).toBe(true);
  });

  it('packs small blobs compressed into batches both ways', async () => {
    const { calls } = await setUp();
    const cas = new CasClient(connection!, { compressor: 'zstd' });
    const blobs = [sourceLikeBytes(100_000, 1), sourceLikeBytes(200_000, 2), new TextEncoder().encode('x')];
    const items = blobs.map((data) => ({ digest: cas.digestOf(data), data }));
    const sentBefore = proxy!.clientBytes;
    await cas.uploadBlobs(items);
    expect(calls).toContain('BatchUpdateBlobs');
    expect(proxy!.clientBytes - sentBefore).toBeLessThan(300_000 / 4);
    const receivedBefore = proxy!.serverBytes;
    const got = await cas.downloadBlobs(items.map((i) => i.digest));
    expect(calls).toContain('BatchReadBlobs');
    expect(proxy!.serverBytes - receivedBefore).toBeLessThan(300_000 / 4);
    for (const { digest, data } of items) expect(Buffer.from(got.get(digest.key)!).equals(Buffer.from(data))).toBe(true);
  });

  it('falls back to plain transfers when the server offers no compressor', async () => {
    await setUp({ compressors: [] });
    const cas = new CasClient(connection!, { compressor: 'zstd' });
    const data = sourceLikeBytes(2 * 1024 * 1024, 3);
    const digest = cas.digestOf(data);
    const sentBefore = proxy!.clientBytes;
    await cas.uploadBlobs([{ digest, data }]);
    expect(proxy!.clientBytes - sentBefore).toBeGreaterThan(data.length);
    expect(Buffer.from(await cas.readBlob(digest)).equals(Buffer.from(data))).toBe(true);
  });

  it('starts a compressed upload over after the connection is cut mid-stream', async () => {
    await setUp();
    // Pseudo-random bytes barely compress, so the upload is long enough to be cut.
    const data = new Uint8Array(randomBytes(3 * 1024 * 1024));
    const cas = new CasClient(connection!, { compressor: 'zstd', clock: instantClock });
    const digest = cas.digestOf(data);
    proxy!.cutAfterClientBytes(1024 * 1024);
    await cas.uploadBlobs([{ digest, data }]);
    expect(proxy!.cuts).toBe(1);
    expect(Buffer.from(await server!.contentAddressableStorage.get(digest)).equals(Buffer.from(data))).toBe(true);
  });
});
