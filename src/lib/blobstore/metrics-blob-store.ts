/**
 * Counts what passes through one node of a storage tree, after Buildbarn's NewMetricsBlobAccess:
 * createBlobStore wraps every node it builds in one (when given a registry), labelled with the
 * node's key path (`storage.cas.small_blob_caching.backend`) and kind, so an operator can see where
 * in the tree bytes come from: a read served by the memory cache never reaches the disk node's
 * series. Operations are counted by gRPC status code; a NOT_FOUND `get`/`read` is a miss, and
 * FindMissingBlobs counts digests found present (hits) and missing.
 */
import type { Digest } from '../digest/digest.js';
import { toStatusError } from '../errors/status-error.js';
import { counter, histogram, type Registry, secondsSince } from '../util/metrics.js';
import type { BlobStore, CallOptions, GetOptions, ReadOptions } from './blob-store.js';

type Operation = 'get' | 'read' | 'put' | 'find_missing';

export interface BlobStoreMetricLabels {
  /** The node's key path in the configuration, e.g. `storage.cas`. */
  store: string;
  /** Its kind, e.g. `disk`. */
  kind: string;
}

export class MetricsBlobStore implements BlobStore {
  private readonly operations;
  private readonly duration;
  private readonly bytes;
  private readonly blobs;
  private readonly findMissingDigests;

  constructor(
    private readonly base: BlobStore,
    registry: Registry,
    private readonly labels: BlobStoreMetricLabels,
  ) {
    const names = ['store', 'kind'] as const;
    this.operations = counter(registry, {
      name: 'bzutil_blobstore_operations_total',
      help: 'Blob store operations by node of the storage tree, operation and gRPC status code (NOT_FOUND on get/read is a miss).',
      labelNames: [...names, 'operation', 'code'],
    });
    this.duration = histogram(registry, {
      name: 'bzutil_blobstore_operation_duration_seconds',
      help: 'Time blob store operations took (reads: until the last chunk).',
      labelNames: [...names, 'operation'],
    });
    this.bytes = counter(registry, {
      name: 'bzutil_blobstore_bytes_total',
      help: 'Bytes read from (out) and written to (in) a node of the storage tree.',
      labelNames: [...names, 'direction'],
    });
    this.blobs = counter(registry, {
      name: 'bzutil_blobstore_blobs_total',
      help: 'Blobs read from (out) and written to (in) a node of the storage tree.',
      labelNames: [...names, 'direction'],
    });
    this.findMissingDigests = counter(registry, {
      name: 'bzutil_blobstore_find_missing_digests_total',
      help: 'Digests asked about in FindMissing, by whether the store had them (present = hit) or not (missing).',
      labelNames: [...names, 'result'],
    });
  }

  async get(digest: Digest, opts?: GetOptions): Promise<Uint8Array> {
    const start = performance.now();
    try {
      const data = await this.base.get(digest, opts);
      this.transferred('out', data.byteLength);
      this.done('get', start, 'OK');
      return data;
    } catch (err) {
      this.done('get', start, toStatusError(err).codeName);
      throw err;
    }
  }

  async *read(digest: Digest, opts?: ReadOptions): AsyncIterable<Uint8Array> {
    const start = performance.now();
    let bytes = 0;
    try {
      for await (const chunk of this.base.read(digest, opts)) {
        bytes += chunk.byteLength;
        yield chunk;
      }
    } catch (err) {
      this.done('read', start, toStatusError(err).codeName);
      throw err;
    }
    this.transferred('out', bytes);
    this.done('read', start, 'OK');
  }

  async put(digest: Digest, data: Uint8Array | AsyncIterable<Uint8Array>, opts?: CallOptions): Promise<void> {
    const start = performance.now();
    try {
      await this.base.put(digest, data, opts);
    } catch (err) {
      this.done('put', start, toStatusError(err).codeName);
      throw err;
    }
    this.transferred('in', digest.sizeBytes);
    this.done('put', start, 'OK');
  }

  async findMissing(digests: readonly Digest[], opts?: CallOptions): Promise<Digest[]> {
    const start = performance.now();
    try {
      const missing = await this.base.findMissing(digests, opts);
      this.findMissingDigests.inc({ ...this.labels, result: 'missing' }, missing.length);
      this.findMissingDigests.inc({ ...this.labels, result: 'present' }, digests.length - missing.length);
      this.done('find_missing', start, 'OK');
      return missing;
    } catch (err) {
      this.done('find_missing', start, toStatusError(err).codeName);
      throw err;
    }
  }

  private transferred(direction: 'in' | 'out', bytes: number): void {
    this.bytes.inc({ ...this.labels, direction }, bytes);
    this.blobs.inc({ ...this.labels, direction });
  }

  private done(operation: Operation, start: number, code: string): void {
    this.operations.inc({ ...this.labels, operation, code });
    this.duration.observe({ ...this.labels, operation }, secondsSince(start));
  }
}
