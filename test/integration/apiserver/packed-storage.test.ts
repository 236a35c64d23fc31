/**
 * An apiserver whose CAS is configured with a `packed` node (storage.cas.packed): small blobs land
 * in pack files, large ones in the disk backend, uploads are still verified, and the blobs survive
 * a restart of the server.
 */
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CasClient } from '../../../src/lib/client/cas-client.js';
import { RemoteConnection } from '../../../src/lib/client/connection.js';
import { resolveConfig } from '../../../src/lib/config/resolve-config.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code } from '../../../src/lib/errors/status-error.js';
import { silentLogger } from '../../../src/lib/util/logger.js';
import { createApiServer } from '../../../src/server/create-servers.js';
import { bytes, collect, expectCode, patternBytes, rejectionOf } from '../../helpers/blob-store-contract.js';

describe('apiserver with a packed CAS (storage.cas.packed)', () => {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  async function start(dir: string) {
    const config = resolveConfig({
      role: 'apiserver',
      overrides: {
        apiserver: { listen_address: '127.0.0.1:0' },
        storage: {
          cas: {
            packed: {
              path: join(dir, 'packs'),
              max_size_bytes: '16MiB',
              max_blob_size_bytes: '4KiB',
              backend: { disk: { path: join(dir, 'cas'), max_size_bytes: '64MiB' } },
            },
          },
          action_cache: { memory: { max_size_bytes: '1MiB' } },
        },
      },
    });
    const server = await createApiServer(config, { logger: silentLogger });
    const connection = new RemoteConnection(server.address);
    const stop = async () => {
      connection.close();
      await server.close();
    };
    cleanups.push(stop);
    return { server, cas: new CasClient(connection), stop };
  }

  it('packs small blobs, stores large ones on disk, verifies uploads, and keeps both across a restart', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bzutil-packed-api-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const first = await start(dir);
    const small = Array.from({ length: 50 }, (_, i) => patternBytes(100 + i * 70, i + 1));
    const large = patternBytes(100_000, 99);
    const smallDigests = small.map((d) => Digest.ofBytes(d));
    const largeDigest = Digest.ofBytes(large);
    await first.cas.uploadBlobs(small.map((data, i) => ({ digest: smallDigests[i]!, data })));
    await first.cas.putBlob(largeDigest, large);

    // Small blobs are records in one pack; only the large blob is a file of the disk backend.
    expect((await readdir(join(dir, 'packs'))).filter((n) => n.endsWith('.pack'))).toHaveLength(1);
    const diskFiles = (await readdir(join(dir, 'cas'), { recursive: true })).filter((n) => /[0-9a-f]{64}-\d+$/.test(n));
    expect(diskFiles).toEqual([join('_', 'sha256', largeDigest.hash.slice(0, 2), `${largeDigest.hash}-${large.length}`)]);
    expect((await stat(join(dir, 'packs', '000000000001.pack'))).size).toBeGreaterThan(small.reduce((n, d) => n + d.length, 0));

    // The verifying store above the packs still refuses content that does not match its digest.
    const claimed = Digest.ofBytes(bytes('claimed content'));
    expectCode(await rejectionOf(first.cas.putBlob(claimed, bytes('other content!!'))), Code.INVALID_ARGUMENT);

    const absent = Digest.ofBytes(bytes('never uploaded'));
    expect((await first.cas.findMissingBlobs([absent, ...smallDigests, largeDigest, claimed])).map((d) => d.key)).toEqual([absent.key, claimed.key]);
    const ranged = await collect(first.cas.readStream(smallDigests[10]!, { offset: 100, limit: 50 }));
    expect(Buffer.from(ranged).equals(Buffer.from(small[10]!.subarray(100, 150)))).toBe(true);
    await first.stop();

    const second = await start(dir);
    expect(await second.cas.findMissingBlobs([...smallDigests, largeDigest])).toEqual([]);
    const got = await second.cas.downloadBlobs([smallDigests[49]!, largeDigest]);
    expect(Buffer.from(got.get(smallDigests[49]!.key)!).equals(Buffer.from(small[49]!))).toBe(true);
    expect(Buffer.from(got.get(largeDigest.key)!).equals(Buffer.from(large))).toBe(true);
  });

  it('refuses a packed node in the action cache', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bzutil-packed-api-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const config = resolveConfig({
      role: 'apiserver',
      overrides: {
        apiserver: { listen_address: '127.0.0.1:0' },
        storage: {
          cas: { memory: { max_size_bytes: '1MiB' } },
          action_cache: { packed: { path: join(dir, 'ac'), max_size_bytes: '1MiB', backend: { memory: { max_size_bytes: '1MiB' } } } },
        },
      },
    });
    const err = await rejectionOf(createApiServer(config, { logger: silentLogger }));
    expectCode(err, Code.INVALID_ARGUMENT);
    expect((err as Error).message).toContain('storage.action_cache.packed');
  });
});
