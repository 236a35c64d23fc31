/**
 * Builds the action cache from its configuration (a `storage.action_cache` tree). A `grpc` node is
 * a remote ActionCache service, used as is: the server behind it checks completeness against its own
 * CAS. A `redis` node keeps results in Redis (RedisActionCache). Any other tree holds ActionResults
 * as blobs keyed by action digest. Except with `grpc`, a hit is answered only
 * when every output it names is still in `contentAddressableStorage` (otherwise Bazel would get a hit
 * whose outputs it cannot download).
 */
import type { BlobStore } from '../blobstore/blob-store.js';
import { configError, connect, createBlobStore, type CreateBlobStoreDeps } from '../blobstore/create-blob-store.js';
import { silentLogger } from '../util/logger.js';
import { parseDurationMs } from '../util/units.js';
import { type ActionCache, BlobStoreActionCache } from './action-cache.js';
import { CompletenessCheckingActionCache } from './completeness-checking-action-cache.js';
import type { ActionCacheConfig, RedisActionCacheConfig } from './config.js';
import { GrpcActionCache } from './grpc-action-cache.js';
import type { RedisActionCache } from './redis-action-cache.js';

export async function createActionCache(
  config: ActionCacheConfig,
  contentAddressableStorage: BlobStore,
  deps: CreateBlobStoreDeps = {},
  path = 'action_cache',
): Promise<ActionCache> {
  if ('grpc' in config) {
    return new GrpcActionCache(connect(config.grpc, `${path}.grpc`, deps), { instanceName: config.grpc.instance_name ?? '' });
  }
  if ('redis' in config) return new CompletenessCheckingActionCache(await createRedis(config.redis, deps, `${path}.redis`), contentAddressableStorage);
  // Action cache keys are action digests, not digests of the stored ActionResult: verifying would
  // reject every write.
  if ('verifying' in config) throw configError(`${path}.verifying`, 'an action cache cannot be verified (its keys are action digests)');
  return new CompletenessCheckingActionCache(new BlobStoreActionCache(await createBlobStore(config, deps, path)), contentAddressableStorage);
}


async function createRedis(config: RedisActionCacheConfig['redis'], deps: CreateBlobStoreDeps, at: string): Promise<RedisActionCache> {
  if (typeof config.url !== 'string' || !/^rediss?:\/\/./.test(config.url)) throw configError(`${at}.url`, 'must be a redis:// or rediss:// URL');
  let ttlMs: number | undefined;
  if (config.ttl !== undefined) {
    try {
      ttlMs = parseDurationMs(config.ttl);
    } catch (err) {
      throw configError(`${at}.ttl`, (err as Error).message);
    }
  }
  // ioredis is loaded only by configurations that use Redis (it is a tenth of a second of start-up).
  const { RedisActionCache } = await import('./redis-action-cache.js');
  const { actionCache, close } = RedisActionCache.connect(config.url, {
    keyPrefix: config.key_prefix,
    ttlMs,
    logger: (deps.logger ?? silentLogger).child('redis_action_cache'),
  });
  deps.onClose?.(close);
  return actionCache;
}
