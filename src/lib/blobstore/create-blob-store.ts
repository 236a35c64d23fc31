/**
 * Builds a storage stack from its configuration: one recursive switch that creates backends first
 * and wraps them, after Buildbarn's `NewBlobAccessFromConfiguration`. With createActionCache and
 * createStorage this is the only code that knows the shapes of storage configuration, and the only
 * way a server gets a store: a new kind of store is a new class plus a case here and in the schema.
 *
 * The configuration is expected to have passed the schema (lib/config validates it with paths in
 * its errors); the checks here only guard the invariants the constructors rely on.
 */
import { CasClient } from '../client/cas-client.js';
import { RemoteConnection } from '../client/connection.js';
import { StatusError } from '../errors/status-error.js';
import { type Clock, systemClock } from '../util/clock.js';
import { type Logger, silentLogger } from '../util/logger.js';
import { readSecretFile } from '../util/secret-file.js';
import { collectedGauge, type Registry } from '../util/metrics.js';
import { parseDurationMs, parseSizeBytes } from '../util/units.js';
import type { BlobStore } from './blob-store.js';
import { BLOB_STORE_KINDS, type BlobStoreConfig, type GrpcBlobStoreConfig, type PackedBlobStoreConfig, type ShardConfig, type ShardingBlobStoreConfig, shardKey } from './config.js';
import { ExistenceCachingBlobStore } from './existence-caching-blob-store.js';
import { FilesystemBlobStore } from './filesystem-blob-store.js';
import { GrpcBlobStore } from './grpc-blob-store.js';
import { MemoryBlobStore } from './memory-blob-store.js';
import { MetricsBlobStore } from './metrics-blob-store.js';
import { PackedBlobStore } from './packed-blob-store.js';
import { ReadCachingBlobStore } from './read-caching-blob-store.js';
import { type Shard, ShardingBlobStore } from './sharding-blob-store.js';
import type { SharedDirectory } from './shared-blob-directory.js';
import { SmallBlobCachingBlobStore } from './small-blob-caching-blob-store.js';
import { VerifyingBlobStore } from './verifying-blob-store.js';

export interface CreateBlobStoreDeps {
  /** @default systemClock */
  clock?: Clock;
  /** @default silentLogger */
  logger?: Logger;
  /**
   * Receives a release function for every resource a store holds (open files, connections); the
   * owner of the stack calls them on shutdown. Without it those resources live until exit.
   */
  onClose?: (close: () => void | Promise<void>) => void;
  /**
   * Where to count each node's traffic: every node built is wrapped in a MetricsBlobStore labelled
   * with its key path and kind, and disk nodes report their size and evictions. @default no metrics
   */
  metrics?: Registry;
  /**
   * The tree holds content-addressed blobs (the CAS, not the action cache): disk nodes hash a blob
   * file before serving it when it may have changed since it was stored, and take sizes from the
   * file names at start-up (no stat per blob: the blobs were verified before they were stored).
   * @default false
   */
  contentAddressed?: boolean;
  /**
   * Several processes run this tree at once (`serve apiserver --processes N`): disk nodes share
   * their directories between them (shared-blob-directory.ts). @default this process alone
   */
  sharedDirectory?: SharedDirectory;
}

/**
 * Creates the store described by `config`; `path` names the node in error messages and metrics.
 * With `deps.metrics`, every node of the tree is wrapped in a MetricsBlobStore.
 */
export async function createBlobStore(config: BlobStoreConfig, deps: CreateBlobStoreDeps = {}, path = 'blob_store'): Promise<BlobStore> {
  const kind = kindOf(config, path);
  const store = await createNode(config, deps, path, `${path}.${kind}`);
  return deps.metrics ? new MetricsBlobStore(store, deps.metrics, { store: path, kind }) : store;
}

async function createNode(config: BlobStoreConfig, deps: CreateBlobStoreDeps, path: string, at: string): Promise<BlobStore> {
  const clock = deps.clock ?? systemClock;
  const logger = deps.logger ?? silentLogger;
  if ('disk' in config) {
    const { path: dir, max_size_bytes, fsync } = config.disk;
    if (typeof dir !== 'string' || dir === '') throw configError(`${at}.path`, 'must be a non-empty string');
    const store = await FilesystemBlobStore.open({ path: dir, maxSizeBytes: size(max_size_bytes, `${at}.max_size_bytes`), fsync, verifyOnDoubt: deps.contentAddressed ?? false, sizesFromFileNames: deps.contentAddressed ?? false, shared: deps.sharedDirectory, logger: logger.child('disk') });
    const unregister = deps.metrics ? diskGauges(deps.metrics, store, path) : undefined;
    deps.onClose?.(() => {
      unregister?.();
      return store.close();
    });
    return store;
  }
  if ('packed' in config) return createPacked(config.packed, deps, path, at);
  if ('memory' in config) {
    return new MemoryBlobStore({ maxSizeBytes: size(config.memory.max_size_bytes, `${at}.max_size_bytes`) });
  }
  if ('grpc' in config) {
    return new GrpcBlobStore(new CasClient(connect(config.grpc, at, deps), { instanceName: config.grpc.instance_name ?? '' }));
  }
  if ('verifying' in config) {
    return new VerifyingBlobStore(await createBlobStore(requireNode(config.verifying.backend, `${at}.backend`), deps, `${at}.backend`));
  }
  if ('small_blob_caching' in config) {
    const { backend, max_size_bytes } = config.small_blob_caching;
    const maxSizeBytes = size(max_size_bytes, `${at}.max_size_bytes`);
    return new SmallBlobCachingBlobStore(await createBlobStore(requireNode(backend, `${at}.backend`), deps, `${at}.backend`), { maxSizeBytes });
  }
  if ('existence_caching' in config) {
    const { backend, ttl, max_entries } = config.existence_caching;
    const ttlMs = duration(ttl, `${at}.ttl`);
    if (!Number.isSafeInteger(max_entries) || max_entries <= 0) throw configError(`${at}.max_entries`, 'must be a positive integer');
    const base = await createBlobStore(requireNode(backend, `${at}.backend`), deps, `${at}.backend`);
    return new ExistenceCachingBlobStore(base, { ttlMs, maxEntries: max_entries, clock });
  }
  if ('sharding' in config) return createSharding(config.sharding, deps, at);
  const { slow, fast } = config.read_caching;
  const slowStore = await createBlobStore(requireNode(slow, `${at}.slow`), deps, `${at}.slow`);
  const fastStore = await createBlobStore(requireNode(fast, `${at}.fast`), deps, `${at}.fast`);
  return new ReadCachingBlobStore(slowStore, fastStore, { logger: logger.child('read_caching') });
}

/** A `packed` node: small blobs in pack files, the rest in its backend built at `<at>.backend`. */
async function createPacked(config: PackedBlobStoreConfig['packed'], deps: CreateBlobStoreDeps, path: string, at: string): Promise<BlobStore> {
  const { path: dir, max_size_bytes, max_blob_size_bytes, pack_size_bytes, max_index_entries, fsync, backend } = config;
  // Reads are checked against the digest: an action cache's keys (action digests) never match.
  if (!deps.contentAddressed) throw configError(at, 'holds content-addressed blobs only (storage.cas), not an action cache or an asset index');
  // Each process would index only its own appends: a blob found present through one process could be missing through another.
  if ((deps.sharedDirectory?.processes ?? 1) > 1) throw configError(at, 'cannot be shared by several processes (--processes): run one apiserver process over a packed CAS');
  if (typeof dir !== 'string' || dir === '') throw configError(`${at}.path`, 'must be a non-empty string');
  if (max_index_entries !== undefined && (!Number.isSafeInteger(max_index_entries) || max_index_entries <= 0)) throw configError(`${at}.max_index_entries`, 'must be a positive integer');
  const opts = {
    path: dir,
    maxSizeBytes: size(max_size_bytes, `${at}.max_size_bytes`),
    maxBlobSizeBytes: max_blob_size_bytes === undefined ? undefined : size(max_blob_size_bytes, `${at}.max_blob_size_bytes`),
    packSizeBytes: pack_size_bytes === undefined ? undefined : size(pack_size_bytes, `${at}.pack_size_bytes`),
    maxIndexEntries: max_index_entries,
    fsync,
    logger: (deps.logger ?? silentLogger).child('packed'),
  };
  const large = await createBlobStore(requireNode(backend, `${at}.backend`), deps, `${at}.backend`);
  const store = await PackedBlobStore.open(opts, large);
  const unregister = deps.metrics ? diskGauges(deps.metrics, store, path) : undefined;
  deps.onClose?.(() => {
    unregister?.();
    return store.close();
  });
  return store;
}

/** A `sharding` node: each shard's backend built at `<at>.shards[i].backend`. */
async function createSharding(config: ShardingBlobStoreConfig['sharding'], deps: CreateBlobStoreDeps, at: string): Promise<BlobStore> {
  const list: unknown = config.shards;
  if (!Array.isArray(list) || list.length === 0) throw configError(`${at}.shards`, 'must be a non-empty list');
  const shards: Shard[] = [];
  const keys = new Map<string, number>();
  for (const [i, shard] of (list as ShardConfig[]).entries()) {
    const here = `${at}.shards[${i}]`;
    if (typeof shard !== 'object' || shard === null) throw configError(here, 'must be an object with weight and backend');
    if (!(typeof shard.weight === 'number' && Number.isFinite(shard.weight) && shard.weight > 0)) throw configError(`${here}.weight`, 'must be a positive number');
    const key = shardKey(shard, i);
    const other = keys.get(key);
    if (other !== undefined) throw configError(`${here}.key`, `${JSON.stringify(key)} is also the key of shards[${other}]; give each shard its own key`);
    keys.set(key, i);
    shards.push({ key, weight: shard.weight, backend: await createBlobStore(requireNode(shard.backend, `${here}.backend`), deps, `${here}.backend`) });
  }
  return new ShardingBlobStore(shards);
}

/** Scrape-time gauges of a disk node: bytes and blobs stored, blobs evicted so far. */
function diskGauges(registry: Registry, store: Pick<FilesystemBlobStore, 'sizeBytes' | 'blobCount' | 'evictedBlobCount'>, path: string): () => void {
  const labels = { store: path };
  const unregister = [
    collectedGauge(registry, { name: 'bzutil_disk_store_bytes', help: 'Bytes stored by a disk node of the storage tree.', labelNames: ['store'] }, (set) =>
      set(labels, store.sizeBytes),
    ),
    collectedGauge(registry, { name: 'bzutil_disk_store_blobs', help: 'Blobs stored by a disk node of the storage tree.', labelNames: ['store'] }, (set) =>
      set(labels, store.blobCount),
    ),
    collectedGauge(
      registry,
      { name: 'bzutil_disk_store_evicted_blobs', help: 'Blobs a disk node has evicted (least recently used first) since it opened.', labelNames: ['store'] },
      (set) => set(labels, store.evictedBlobCount),
    ),
  ];
  return () => unregister.forEach((u) => u());
}

/** A connection for a `grpc` node, released through `deps.onClose`. */
export function connect(config: GrpcBlobStoreConfig['grpc'], at: string, deps: Pick<CreateBlobStoreDeps, 'onClose'>): RemoteConnection {
  let connection: RemoteConnection;
  try {
    const tls = config.tls && { caFile: config.tls.ca_file, certFile: config.tls.cert_file, keyFile: config.tls.key_file };
    const token = config.token_file === undefined ? undefined : readTokenFile(config.token_file, `${at}.token_file`);
    connection = new RemoteConnection(config.address, { tls, metadata: token === undefined ? undefined : { authorization: `Bearer ${token}` } });
  } catch (err) {
    throw configError(`${at}.address`, (err as Error).message);
  }
  deps.onClose?.(() => connection.close());
  return connection;
}

/** The token in `file`; the error names the key, never the content. */
function readTokenFile(file: string, at: string): string {
  try {
    return readSecretFile(file);
  } catch (err) {
    throw configError(at, (err as Error).message);
  }
}

function kindOf(config: unknown, path: string): string {
  if (typeof config !== 'object' || config === null || Array.isArray(config)) throw configError(path, 'must be an object with one key naming the store kind');
  const keys = Object.keys(config);
  if (keys.length !== 1) {
    throw configError(path, `must have exactly one key naming the store kind (one of ${BLOB_STORE_KINDS.join(', ')}), found ${JSON.stringify(keys)}`);
  }
  const kind = keys[0]!;
  if (!(BLOB_STORE_KINDS as readonly string[]).includes(kind)) {
    throw configError(path, `names unknown store kind ${JSON.stringify(kind)} (expected one of ${BLOB_STORE_KINDS.join(', ')})`);
  }
  const body = (config as Record<string, unknown>)[kind];
  if (typeof body !== 'object' || body === null) throw configError(`${path}.${kind}`, 'must be an object');
  return kind;
}

function requireNode(node: BlobStoreConfig | undefined, path: string): BlobStoreConfig {
  if (node === undefined) throw configError(path, 'is required');
  return node;
}

function size(value: unknown, path: string): number {
  try {
    return parseSizeBytes(value as string | number);
  } catch (err) {
    throw configError(path, (err as Error).message);
  }
}

function duration(value: unknown, path: string): number {
  try {
    return parseDurationMs(value as string);
  } catch (err) {
    throw configError(path, (err as Error).message);
  }
}

export function configError(path: string, description: string): StatusError {
  return StatusError.invalidArgument(`Failed to create blob store: ${path}: ${description}`, [{ field: path, description }]);
}
