/**
 * A `serve apiserver` over a packed CAS killed with SIGKILL while clients upload small blobs: after
 * a restart on the same directory every blob whose upload was acknowledged is found and served with
 * its exact bytes, and the packs hold only whole records (the scan truncated whatever was torn).
 */
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import { CasClient } from '../../src/lib/client/cas-client.js';
import { RemoteConnection } from '../../src/lib/client/connection.js';
import { Digest } from '../../src/lib/digest/digest.js';
import { patternBytes } from '../helpers/blob-store-contract.js';
import { type ServeProcess, startServe } from '../helpers/serve-process.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function serveApiserver(configFile: string): Promise<{ server: ServeProcess; cas: CasClient }> {
  const server = await startServe(['apiserver', `--config=${configFile}`, '--listen=127.0.0.1:0', '--log_level=warn'], ['apiserver']);
  cleanups.push(() => server.stop());
  const connection = new RemoteConnection(server.addresses.apiserver!);
  cleanups.push(() => connection.close());
  return { server, cas: new CasClient(connection, { retry: { maxAttempts: 1 } }) };
}

it('keeps every acknowledged blob across a SIGKILL in the middle of uploads', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'bzutil-packed-crash-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const configFile = join(dir, 'config.json');
  const storage = {
    cas: { packed: { path: join(dir, 'packs'), max_size_bytes: '256MiB', backend: { disk: { path: join(dir, 'cas'), max_size_bytes: '256MiB' } } } },
    action_cache: { memory: { max_size_bytes: '1MiB' } },
  };
  await writeFile(configFile, JSON.stringify({ storage }));

  const first = await serveApiserver(configFile);
  const acknowledged: { digest: Digest; data: Uint8Array }[] = [];
  let seed = 1;
  // Four uploaders, one blob at a time each, until the server dies under them.
  const uploader = async () => {
    for (;;) {
      const data = patternBytes(100 + (seed % 40) * 100, seed++);
      const digest = Digest.ofBytes(data);
      try {
        await first.cas.putBlob(digest, data);
      } catch {
        return;
      }
      acknowledged.push({ digest, data });
    }
  };
  const uploads = Promise.all([uploader(), uploader(), uploader(), uploader()]);
  while (acknowledged.length < 300) await new Promise((r) => setTimeout(r, 5));
  first.server.child.kill('SIGKILL');
  await uploads;
  expect(acknowledged.length).toBeGreaterThanOrEqual(300);

  const second = await serveApiserver(configFile);
  expect(await second.cas.findMissingBlobs(acknowledged.map((a) => a.digest))).toEqual([]);
  const got = await second.cas.downloadBlobs(acknowledged.map((a) => a.digest));
  for (const { digest, data } of acknowledged) expect(Buffer.from(got.get(digest.key)!).equals(Buffer.from(data))).toBe(true);
  // Small blobs went to packs only, none to the disk backend.
  expect((await readdir(join(dir, 'packs'))).filter((n) => n.endsWith('.pack')).length).toBeGreaterThanOrEqual(1);
  expect((await readdir(join(dir, 'cas'), { recursive: true })).filter((n) => /[0-9a-f]{64}-\d+$/.test(n))).toEqual([]);
});
