/**
 * Builds a server's CAS and action cache from `storage` (see StorageSection), deciding in one place
 * where uploads are hashed. Every upload must be hashed exactly once on its way to disk:
 * - a CAS whose tree holds the blobs here (disk, memory, …) gets a VerifyingBlobStore on top, unless
 *   the tree already has a `verifying` node;
 * - a CAS that forwards to a remote server (`grpc`, possibly behind existence or small-blob caching,
 *   or a `sharding` node all of whose shards forward to remote servers) is not verified here: that server verifies every upload it stores, and hashing it here too would
 *   double the CPU cost of the scheduler's port for nothing (a bad upload is refused by the remote
 *   with the same INVALID_ARGUMENT, which reaches the client unchanged).
 * Either way the services may trust the returned store: `uploadsVerified` is always true.
 */
import type { ActionCache } from '../actioncache/action-cache.js';
import type { ActionCacheConfig } from '../actioncache/config.js';
import type { AssetIndex } from '../asset/asset-index.js';
import { createAssetIndex } from '../asset/create-asset-index.js';
import { createActionCache } from '../actioncache/create-action-cache.js';
import type { BlobStore } from '../blobstore/blob-store.js';
import { type BlobStoreConfig, hasVerifyingNode, terminalBlobStore } from '../blobstore/config.js';
import { createBlobStore, type CreateBlobStoreDeps } from '../blobstore/create-blob-store.js';
import { InstanceSharingBlobStore } from '../blobstore/instance-sharing-blob-store.js';
import { VerifyingBlobStore } from '../blobstore/verifying-blob-store.js';
import type { CasInstanceScoping } from './config.js';

export interface Storage {
  /** Uploads through it are verified (here or by the remote server it forwards to). */
  contentAddressableStorage: BlobStore;
  /** Absent when the configuration has none (a worker's). */
  actionCache?: ActionCache;
  /** The Remote Asset index; absent when the configuration has no `asset` store. */
  assetIndex?: AssetIndex;
  /** Releases files and connections; call after the servers using the stores have stopped. */
  close(): Promise<void>;
}

/** Whether uploads to a CAS built from `config` must be hashed in this process (see module comment). */
export function needsLocalVerification(config: BlobStoreConfig): boolean {
  return !hasVerifyingNode(config) && storesLocally(config);
}

/** Whether a CAS built from `config` holds blobs in this process (not only a remote `grpc` server's). */
function storesLocally(config: BlobStoreConfig): boolean {
  const terminal = terminalBlobStore(config);
  // A sharding node forwards each blob to one shard: local if any shard stores locally.
  if ('sharding' in terminal) return (terminal.sharding.shards ?? []).some((s) => storesLocally(s.backend));
  return !('grpc' in terminal);
}

export async function createStorage(
  config: { cas: BlobStoreConfig; cas_instance_scoping?: CasInstanceScoping; action_cache?: ActionCacheConfig; asset?: BlobStoreConfig },
  deps: Omit<CreateBlobStoreDeps, 'onClose'> = {},
): Promise<Storage> {
  const closers: (() => void | Promise<void>)[] = [];
  const close = async () => {
    for (const c of closers.splice(0).reverse()) await c();
  };
  try {
    const built = { ...deps, onClose: (c: () => void | Promise<void>) => closers.push(c) };
    let contentAddressableStorage = await createBlobStore(config.cas, { ...built, contentAddressed: true }, 'storage.cas');
    if (needsLocalVerification(config.cas)) contentAddressableStorage = new VerifyingBlobStore(contentAddressableStorage);
    // One pool for every instance, unless configured per instance; a remote CAS's server decides for itself.
    if ((config.cas_instance_scoping ?? 'shared') === 'shared' && storesLocally(config.cas)) {
      contentAddressableStorage = new InstanceSharingBlobStore(contentAddressableStorage);
    }
    const actionCache = config.action_cache
      ? await createActionCache(config.action_cache, contentAddressableStorage, built, 'storage.action_cache')
      : undefined;
    const assetIndex = config.asset ? await createAssetIndex(config.asset, built, 'storage.asset') : undefined;
    return { contentAddressableStorage, actionCache, assetIndex, close };
  } catch (err) {
    await close();
    throw err;
  }
}

/**
 * Why a scheduler's storage makes the fleet answer unevenly, if it does: a CAS sharded over several
 * apiservers with an action cache that is not shared (not in Redis) means results stored by this
 * scheduler are hits only through one apiserver's ActionCache.
 */
export function unsharedActionCacheWarning(config: { cas: BlobStoreConfig; action_cache?: ActionCacheConfig }): string | undefined {
  const terminal = terminalBlobStore(config.cas);
  if (!('sharding' in terminal) || terminal.sharding.shards.length < 2) return undefined;
  if (config.action_cache && 'redis' in config.action_cache) return undefined;
  return `storage.cas has ${terminal.sharding.shards.length} shards but the action cache is not shared: other apiservers and schedulers will not see the results this one stores. Give every apiserver and scheduler the same Redis (--ac redis://host:port, storage.action_cache.redis)`;
}
