import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BatchingFileWriter, writeBatchBytesFor } from '../../../src/lib/blobstore/batching-file-writer.js';

describe('BatchingFileWriter', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'bzutil-batching-writer-'));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('writes every byte in order across batch boundaries, even when the producer reuses its buffer', async () => {
    const file = path.join(dir, 'out');
    const handle = await open(file, 'w');
    const writer = new BatchingFileWriter(handle, 4);
    const reused = Buffer.alloc(3);
    for (const part of ['abc', 'def', 'ghi', 'j']) {
      reused.fill(0);
      reused.write(part);
      await writer.write(reused.subarray(0, part.length));
    }
    await writer.flush();
    await handle.close();
    expect(readFileSync(file, 'utf8')).toBe('abcdefghij');
  });

  it('sizes batches to the blob within bounds', () => {
    expect(writeBatchBytesFor(10)).toBe(4096);
    expect(writeBatchBytesFor(100_000)).toBe(100_000);
    expect(writeBatchBytesFor(1 << 30)).toBe(1024 * 1024);
  });
});
