/**
 * Builds a storage stack from its configuration: one recursive switch that creates backends first
 * and wraps them, after Buildbarn's `NewBlobAccessFromConfiguration`. This is the only code that
 * knows configuration shapes; configuration errors name the path of the offending node.
 */
import { StatusError } from '../errors/status-error.js';
import { type Clock, systemClock } from '../util/clock.js';
import { type Logger, silentLogger } from '../util/logger.js';
import type { BlobStore } from './blob-store.js';
import { BLOB_STORE_KINDS, type BlobStoreConfig, type GrpcBlobStoreConfig } from './config.js';
import { ExistenceCachingBlobStore } from './existence-caching-blob-store.js';
import { FilesystemBlobStore } from './filesystem-blob-store.js';
import { MemoryBlobStore } from './memory-blob-store.js';
import { ReadCachingBlobStore } from './read-caching-blob-store.js';
import { VerifyingBlobStore } from './verifying-blob-store.js';

export interface CreateBlobStoreDeps {
  /** @default systemClock */
  clock?: Clock;
  /** @default silentLogger */
  logger?: Logger;
  /**
   * Builds a remote store for `grpc` nodes. Injected so that this module needs no gRPC code; the
   * apiserver and worker pass the GrpcBlobStore factory.
   */
  createGrpcBlobStore?: (config: GrpcBlobStoreConfig['grpc']) => BlobStore | Promise<BlobStore>;
}

/** Creates the store described by `config`; `path` names the node in error messages. */
export async function createBlobStore(config: BlobStoreConfig, deps: CreateBlobStoreDeps = {}, path = 'blobStore'): Promise<BlobStore> {
  const clock = deps.clock ?? systemClock;
  const logger = deps.logger ?? silentLogger;
  const kind = kindOf(config, path);
  const at = `${path}.${kind}`;
  if ('memory' in config) {
    return new MemoryBlobStore({ maxSizeBytes: requirePositiveInteger(config.memory.maxSizeBytes, `${at}.maxSizeBytes`) });
  }
  if ('filesystem' in config) {
    const { path: dir, maxSizeBytes, fsync } = config.filesystem;
    if (typeof dir !== 'string' || dir === '') throw configError(`${at}.path`, 'must be a non-empty string');
    return FilesystemBlobStore.open({ path: dir, maxSizeBytes: requirePositiveInteger(maxSizeBytes, `${at}.maxSizeBytes`), fsync, logger: logger.child('filesystem') });
  }
  if ('grpc' in config) {
    if (typeof config.grpc.address !== 'string' || config.grpc.address === '') throw configError(`${at}.address`, 'must be a non-empty string');
    if (!deps.createGrpcBlobStore) {
      throw StatusError.failedPrecondition(`Failed to create blob store at ${at}: this program was built without gRPC blob store support`);
    }
    return deps.createGrpcBlobStore(config.grpc);
  }
  if ('verifying' in config) {
    return new VerifyingBlobStore(await createBlobStore(requireNode(config.verifying.backend, `${at}.backend`), deps, `${at}.backend`));
  }
  if ('existenceCaching' in config) {
    const { backend, ttlMs, maxEntries } = config.existenceCaching;
    if (typeof ttlMs !== 'number' || !Number.isSafeInteger(ttlMs) || ttlMs < 0) throw configError(`${at}.ttlMs`, 'must be a non-negative integer');
    const validMaxEntries = requirePositiveInteger(maxEntries, `${at}.maxEntries`);
    const base = await createBlobStore(requireNode(backend, `${at}.backend`), deps, `${at}.backend`);
    return new ExistenceCachingBlobStore(base, { ttlMs, maxEntries: validMaxEntries, clock });
  }
  const { slow, fast } = config.readCaching;
  const slowStore = await createBlobStore(requireNode(slow, `${at}.slow`), deps, `${at}.slow`);
  const fastStore = await createBlobStore(requireNode(fast, `${at}.fast`), deps, `${at}.fast`);
  return new ReadCachingBlobStore(slowStore, fastStore, { logger: logger.child('readCaching') });
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

function requirePositiveInteger(value: unknown, path: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) throw configError(path, `must be a positive integer, got ${JSON.stringify(value)}`);
  return value;
}

function configError(path: string, description: string): StatusError {
  return StatusError.invalidArgument(`Failed to create blob store: ${path} ${description}`, [{ field: path, description }]);
}
