/**
 * The configuration of an action cache (`storage.action_cache`): any blob store tree (results stored
 * as blobs keyed by action digest, or `grpc`, a remote ActionCache service), or `redis`, a Redis
 * server shared by every apiserver and scheduler of a fleet. Built by createActionCache.
 */
import type { BlobStoreConfig, DurationSetting } from '../blobstore/config.js';

/** ActionResults in Redis (see RedisActionCache). */
export interface RedisActionCacheConfig {
  redis: {
    /** `redis://[:password@]host:port[/db]` or `rediss://…` (TLS). */
    url: string;
    /** Prepended to every key. @default "bzutil:" */
    key_prefix?: string;
    /** Entries expire this long after they are written. @default never */
    ttl?: DurationSetting;
  };
}

export type ActionCacheConfig = BlobStoreConfig | RedisActionCacheConfig;
