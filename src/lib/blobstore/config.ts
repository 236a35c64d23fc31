/**
 * The configuration of a storage stack: a tree whose shape mirrors the object graph built by
 * `createBlobStore`, after Buildbarn's `BlobAccessConfiguration`. Each node has exactly one key
 * naming its kind; decorators nest their backends. Keys are snake_case like the rest of the config
 * file (schema/bzutil-config.schema.json, `$defs.blob_store`); sizes are bytes or text like
 * "10GiB", durations text like "30s" (both read by lib/util/units).
 *
 * The default CAS of `bzutil serve all`: small blobs in memory in front of a disk store.
 * ```yaml
 * cas:
 *   small_blob_caching:
 *     max_size_bytes: 64MiB
 *     backend: { disk: { path: ~/.cache/bzutil/storage/cas, max_size_bytes: 10GiB } }
 * ```
 * Planned kinds (not accepted yet; each will be a new class plus a variant here): `compression`.
 */

/** Bytes, as a number or text like "10GiB" (see parseSizeBytes). */
export type SizeSetting = number | string;
/** Text like "30s" or "5m" (see parseDurationMs). */
export type DurationSetting = string;

/** Blobs as files under `path`, least recently used deleted beyond `max_size_bytes`; survives restarts. */
export interface DiskBlobStoreConfig {
  disk: { path: string; max_size_bytes: SizeSetting; fsync?: boolean };
}

/**
 * Small blobs (at most `max_blob_size_bytes`, default 64 KiB) appended to pack files under `path`,
 * larger ones stored by `backend`. A node of its own rather than a `disk` option: it composes over
 * any backend for the large blobs (disk, sharding, grpc), keeps the per-file store simple, and a
 * tree says which blobs live where. The oldest pack is dropped beyond `max_size_bytes`, its
 * recently used records copied forward first. CAS only (every read is checked against its digest).
 */
export interface PackedBlobStoreConfig {
  packed: {
    path: string;
    max_size_bytes: SizeSetting;
    max_blob_size_bytes?: SizeSetting;
    pack_size_bytes?: SizeSetting;
    max_index_entries?: number;
    fsync?: boolean;
    backend: BlobStoreConfig;
  };
}

/** Blobs in process memory, least recently used evicted beyond `max_size_bytes`. Lost on exit. */
export interface MemoryBlobStoreConfig {
  memory: { max_size_bytes: SizeSetting };
}

/** TLS towards a server: a CA to trust instead of the system roots, and a client certificate (mTLS). */
export interface ClientTlsSection {
  ca_file?: string;
  cert_file?: string;
  key_file?: string;
}

/** A remote REAPI CAS or ActionCache (another bzutil apiserver, or any REAPI server). */
export interface GrpcBlobStoreConfig {
  grpc: {
    address: string;
    instance_name?: string;
    /** TLS towards the server (also turned on by a grpcs:// address). */
    tls?: ClientTlsSection;
    /** A file holding the bearer token to send (read once at start; never printed). */
    token_file?: string;
  };
}

/**
 * Rejects uploads whose content does not match the declared digest. The storage factory adds one on
 * top of every CAS that needs it (see createStorage); never on an action cache.
 */
export interface VerifyingBlobStoreConfig {
  verifying: { backend: BlobStoreConfig };
}

/** Recently used blobs of up to 1 MiB served from memory in front of a local store. */
export interface SmallBlobCachingBlobStoreConfig {
  small_blob_caching: { max_size_bytes: SizeSetting; backend: BlobStoreConfig };
}

/** Remembers blobs found present for `ttl`, so that FindMissing asks the backend only about the rest. */
export interface ExistenceCachingBlobStoreConfig {
  existence_caching: { backend: BlobStoreConfig; ttl: DurationSetting; max_entries: number };
}

/** `slow` is the truth, `fast` a cache filled on read; writes go to both, `slow` first. */
export interface ReadCachingBlobStoreConfig {
  read_caching: { slow: BlobStoreConfig; fast: BlobStoreConfig };
}

/** One shard of a `sharding` node. */
export interface ShardConfig {
  /** Relative share of the blobs (a shard of weight 2 gets about twice those of weight 1). */
  weight: number;
  /**
   * Identity of the shard for placement. Default: the backend's address for a `grpc` backend, else
   * the shard's position. Keep it stable: a shard whose key changes loses its blobs to the others.
   */
  key?: string;
  backend: BlobStoreConfig;
}

/**
 * Blobs spread over the shards by digest (weighted rendezvous hashing), e.g. several apiservers
 * sharing one CAS. Every process using the CAS must have the same shards, keys and weights.
 */
export interface ShardingBlobStoreConfig {
  sharding: { shards: ShardConfig[] };
}

export type BlobStoreConfig =
  | DiskBlobStoreConfig
  | PackedBlobStoreConfig
  | MemoryBlobStoreConfig
  | GrpcBlobStoreConfig
  | VerifyingBlobStoreConfig
  | SmallBlobCachingBlobStoreConfig
  | ExistenceCachingBlobStoreConfig
  | ReadCachingBlobStoreConfig
  | ShardingBlobStoreConfig;

/** The kind names a BlobStoreConfig node may have. */
export const BLOB_STORE_KINDS = ['disk', 'packed', 'memory', 'grpc', 'verifying', 'small_blob_caching', 'existence_caching', 'read_caching', 'sharding'] as const;
export type BlobStoreKind = (typeof BLOB_STORE_KINDS)[number];

/** The kind of a node (its one key). */
export function blobStoreKind(config: BlobStoreConfig): BlobStoreKind {
  return Object.keys(config)[0] as BlobStoreKind;
}

/**
 * The node reached by following single-backend decorators (`verifying`, `small_blob_caching`,
 * `existence_caching`) down from `config`: what actually holds the blobs, or a multi-backend node.
 */
export function terminalBlobStore(config: BlobStoreConfig): BlobStoreConfig {
  let node = config;
  for (;;) {
    if ('verifying' in node) node = node.verifying.backend;
    else if ('small_blob_caching' in node) node = node.small_blob_caching.backend;
    else if ('existence_caching' in node) node = node.existence_caching.backend;
    else return node;
  }
}

/** The key a shard is placed by (see ShardConfig.key). */
export function shardKey(shard: ShardConfig, index: number): string {
  if (shard.key !== undefined) return shard.key;
  const backend = shard.backend as Partial<GrpcBlobStoreConfig> | undefined;
  return backend?.grpc ? backend.grpc.address : String(index);
}

/** Whether a `verifying` node sits on the single-backend chain from `config` down. */
export function hasVerifyingNode(config: BlobStoreConfig): boolean {
  let node = config;
  for (;;) {
    if ('verifying' in node) return true;
    if ('small_blob_caching' in node) node = node.small_blob_caching.backend;
    else if ('existence_caching' in node) node = node.existence_caching.backend;
    else return false;
  }
}
