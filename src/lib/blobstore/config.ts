/**
 * The configuration of a storage stack: a tree whose shape mirrors the object graph built by
 * `createBlobStore`, after Buildbarn's `BlobAccessConfiguration`. Each node has exactly one key
 * naming its kind; decorators nest their backends. Keys are camelCase, sizes in bytes, times in ms.
 *
 * A typical apiserver CAS: verify uploads, remember recent FindMissing answers, keep blobs on disk:
 * ```json
 * { "verifying": { "backend": { "existenceCaching": { "ttlMs": 60000, "maxEntries": 1000000,
 *   "backend": { "filesystem": { "path": "/var/cache/bzutil/cas", "maxSizeBytes": 107374182400 } } } } } }
 * ```
 */

/**
 * Blobs in process memory, least-recently used evicted beyond `maxSizeBytes`. Lost on restart; for
 * tests and small setups.
 * ```json
 * { "memory": { "maxSizeBytes": 1073741824 } }
 * ```
 */
export interface MemoryBlobStoreConfig {
  memory: { maxSizeBytes: number };
}

/**
 * Blobs as files under `path`, least-recently used deleted beyond `maxSizeBytes`; survives restarts.
 * ```json
 * { "filesystem": { "path": "/var/cache/bzutil/cas", "maxSizeBytes": 107374182400 } }
 * ```
 */
export interface FilesystemBlobStoreConfig {
  filesystem: { path: string; maxSizeBytes: number; fsync?: boolean };
}

/**
 * A remote REAPI CAS (another bzutil apiserver, or any REAPI server). Built by the factory injected
 * as `createGrpcBlobStore`.
 * ```json
 * { "grpc": { "address": "127.0.0.1:8980", "instanceName": "main" } }
 * ```
 */
export interface GrpcBlobStoreConfig {
  grpc: { address: string; instanceName?: string };
}

/**
 * Rejects uploads whose content does not match the declared digest. Put it on top of every CAS that
 * accepts client uploads; never on an action cache (its keys are action digests).
 * ```json
 * { "verifying": { "backend": { "memory": { "maxSizeBytes": 1073741824 } } } }
 * ```
 */
export interface VerifyingBlobStoreConfig {
  verifying: { backend: BlobStoreConfig };
}

/**
 * Remembers blobs found present for `ttlMs` (at most `maxEntries` of them), so that the backend is
 * asked FindMissing only about the rest. Pays off in front of remote or sharded backends.
 * ```json
 * { "existenceCaching": { "ttlMs": 60000, "maxEntries": 1000000, "backend": { "grpc": { "address": "cas:8980" } } } }
 * ```
 */
export interface ExistenceCachingBlobStoreConfig {
  existenceCaching: { backend: BlobStoreConfig; ttlMs: number; maxEntries: number };
}

/**
 * `slow` is the truth, `fast` a cache filled on read; writes go to both, `slow` first. On a worker:
 * fast = local disk, slow = the apiserver.
 * ```json
 * { "readCaching": { "slow": { "grpc": { "address": "apiserver:8980" } },
 *                    "fast": { "filesystem": { "path": "/var/cache/bzutil/worker-cas", "maxSizeBytes": 21474836480 } } } }
 * ```
 */
export interface ReadCachingBlobStoreConfig {
  readCaching: { slow: BlobStoreConfig; fast: BlobStoreConfig };
}

export type BlobStoreConfig =
  | MemoryBlobStoreConfig
  | FilesystemBlobStoreConfig
  | GrpcBlobStoreConfig
  | VerifyingBlobStoreConfig
  | ExistenceCachingBlobStoreConfig
  | ReadCachingBlobStoreConfig;

/** The kind names a BlobStoreConfig node may have. */
export const BLOB_STORE_KINDS = ['memory', 'filesystem', 'grpc', 'verifying', 'existenceCaching', 'readCaching'] as const;
export type BlobStoreKind = (typeof BLOB_STORE_KINDS)[number];
