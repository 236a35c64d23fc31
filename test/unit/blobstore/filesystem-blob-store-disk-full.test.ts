/**
 * A full disk cannot be arranged portably, so `open` is wrapped to hand out write handles that fail
 * like a full disk does, while everything else goes to the real filesystem.
 */
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';

const diskFull = vi.hoisted(() => ({ code: undefined as string | undefined }));

vi.mock('node:fs/promises', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:fs/promises')>();
  const open: typeof real.open = async (...args) => {
    const handle = await real.open(...args);
    if (diskFull.code && args[1] === 'wx') {
      const code = diskFull.code;
      handle.write = (async () => {
        throw Object.assign(new Error(`${code}: no space left on device, write`), { code });
      }) as typeof handle.write;
    }
    return handle;
  };
  return { ...real, open, default: { ...real, open } };
});

const fs = await import('node:fs/promises');
const { FilesystemBlobStore } = await import('../../../src/lib/blobstore/filesystem-blob-store.js');
const { Digest } = await import('../../../src/lib/digest/digest.js');
const { Code } = await import('../../../src/lib/errors/status-error.js');
const { bytes, expectCode, rejectionOf } = await import('../../helpers/blob-store-contract.js');

describe('FilesystemBlobStore on a full disk', () => {
  const dirs: string[] = [];
  afterEach(async () => {
    diskFull.code = undefined;
    for (const d of dirs.splice(0)) await fs.rm(d, { recursive: true, force: true });
  });

  for (const code of ['ENOSPC', 'EDQUOT']) {
    it(`fails a put with RESOURCE_EXHAUSTED on ${code} and leaves no temp file`, async () => {
      const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'bzutil-full-'));
      dirs.push(dir);
      const store = await FilesystemBlobStore.open({ path: dir, maxSizeBytes: 1 << 20 });
      diskFull.code = code;
      const data = bytes('does not fit');
      const digest = Digest.ofBytes(data);
      const err = await rejectionOf(store.put(digest, data));
      expectCode(err, Code.RESOURCE_EXHAUSTED);
      expect((err as Error).message).toBe(`Failed to store blob ${digest.toString()}: no space left on device (${code})`);
      expect(await fs.readdir(path.join(dir, '.tmp'))).toEqual([]);
      expect(await store.findMissing([digest])).toEqual([digest]);
    });
  }
});
