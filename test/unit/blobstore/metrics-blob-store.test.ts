import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { createBlobStore } from '../../../src/lib/blobstore/create-blob-store.js';
import { MemoryBlobStore } from '../../../src/lib/blobstore/memory-blob-store.js';
import { MetricsBlobStore } from '../../../src/lib/blobstore/metrics-blob-store.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code } from '../../../src/lib/errors/status-error.js';
import { bytes, collect, describeBlobStoreContract, expectCode, rejectionOf } from '../../helpers/blob-store-contract.js';

/** Sum of the values of `name` whose labels include `labels`. */
async function sample(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  const values = (metric?.values ?? []) as { value: number; labels: Record<string, string | number> }[];
  return values.filter((v) => Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want)).reduce((n, v) => n + v.value, 0);
}

describeBlobStoreContract('MetricsBlobStore', async () => ({ store: new MetricsBlobStore(new MemoryBlobStore({ maxSizeBytes: 64 << 20 }), new Registry(), { store: 's', kind: 'memory' }) }));

describe('MetricsBlobStore', () => {
  it('counts bytes and blobs in and out, misses by code, and FindMissing hits and misses', async () => {
    const registry = new Registry();
    const store = new MetricsBlobStore(new MemoryBlobStore({ maxSizeBytes: 1 << 20 }), registry, { store: 'storage.cas', kind: 'memory' });
    const data = bytes('hello metrics');
    const digest = Digest.ofBytes(data);
    await store.put(digest, data);
    expect(Buffer.from(await store.get(digest)).toString()).toBe('hello metrics');
    expect(Buffer.from(await collect(store.read(digest))).toString()).toBe('hello metrics');
    const absent = Digest.ofBytes(bytes('absent'));
    expectCode(await rejectionOf(store.get(absent)), Code.NOT_FOUND);
    expect(await store.findMissing([digest, absent])).toEqual([absent]);

    const labels = { store: 'storage.cas', kind: 'memory' };
    expect(await sample(registry, 'bzutil_blobstore_bytes_total', { ...labels, direction: 'in' })).toBe(data.byteLength);
    expect(await sample(registry, 'bzutil_blobstore_bytes_total', { ...labels, direction: 'out' })).toBe(2 * data.byteLength);
    expect(await sample(registry, 'bzutil_blobstore_blobs_total', { direction: 'out' })).toBe(2);
    expect(await sample(registry, 'bzutil_blobstore_operations_total', { operation: 'get', code: 'OK' })).toBe(1);
    expect(await sample(registry, 'bzutil_blobstore_operations_total', { operation: 'get', code: 'NOT_FOUND' })).toBe(1);
    expect(await sample(registry, 'bzutil_blobstore_find_missing_digests_total', { result: 'present' })).toBe(1);
    expect(await sample(registry, 'bzutil_blobstore_find_missing_digests_total', { result: 'missing' })).toBe(1);
  });

  it('is put around every node by createBlobStore, labelled by key path, with disk size and evictions', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'bzutil-metrics-'));
    try {
      const registry = new Registry();
      const store = await createBlobStore(
        { small_blob_caching: { max_size_bytes: 4096, backend: { disk: { path: dir, max_size_bytes: 20 } } } },
        { metrics: registry },
        'storage.cas',
      );
      expect(store).toBeInstanceOf(MetricsBlobStore);
      for (const text of ['first blob of 16', 'second blob, 17!']) await store.put(Digest.ofBytes(bytes(text)), bytes(text));
      const disk = 'storage.cas.small_blob_caching.backend';
      expect(await sample(registry, 'bzutil_blobstore_blobs_total', { store: 'storage.cas', kind: 'small_blob_caching', direction: 'in' })).toBe(2);
      expect(await sample(registry, 'bzutil_blobstore_blobs_total', { store: disk, kind: 'disk', direction: 'in' })).toBe(2);
      expect(await sample(registry, 'bzutil_disk_store_evicted_blobs', { store: disk })).toBe(1);
      expect(await sample(registry, 'bzutil_disk_store_blobs', { store: disk })).toBe(1);
      expect(await sample(registry, 'bzutil_disk_store_bytes', { store: disk })).toBe(16);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
