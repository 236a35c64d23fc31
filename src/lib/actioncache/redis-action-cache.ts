/**
 * An action cache in Redis, so that several apiservers and schedulers answer GetActionResult the
 * same: a result one scheduler stores is a hit on every apiserver of the fleet (Buildfarm keeps its
 * action cache in Redis for the same reason). Each ActionResult is one Redis string, encoded, under a
 * key naming the digest function, the action digest and the instance name, so instances never see
 * each other's results; entries expire after `ttlMs` when given (else Redis's own eviction policy,
 * e.g. `maxmemory-policy allkeys-lru`, bounds them).
 *
 * Redis errors map to gRPC codes here: unreachable (connection refused, reconnecting past the retry
 * budget) is UNAVAILABLE, Redis out of memory is RESOURCE_EXHAUSTED, any other reply error INTERNAL.
 * Messages never carry the URL (it may hold a password).
 */
import { Redis } from 'ioredis';
import type { Digest } from '../digest/digest.js';
import { StatusError } from '../errors/status-error.js';
import { reapi } from '../proto/index.js';
import { raceAbort } from '../util/abort.js';
import { type Logger, silentLogger } from '../util/logger.js';
import type { CallOptions } from '../blobstore/blob-store.js';
import { type ActionCache, BlobStoreActionCache } from './action-cache.js';

export interface RedisActionCacheOptions {
  /** Prepended to every key, so that several deployments can share one Redis. @default "bzutil:" */
  keyPrefix?: string;
  /** Entries expire this long after they are written. @default never (Redis's eviction policy applies) */
  ttlMs?: number;
  /** @default silentLogger */
  logger?: Logger;
}

/** The command retries ioredis makes while reconnecting before a call fails UNAVAILABLE. */
const MAX_RETRIES_PER_REQUEST = 2;

export class RedisActionCache implements ActionCache {
  static readonly DEFAULT_KEY_PREFIX = 'bzutil:';
  private readonly keyPrefix: string;
  private readonly ttlMs: number | undefined;

  constructor(
    private readonly redis: Redis,
    opts: RedisActionCacheOptions = {},
  ) {
    this.keyPrefix = opts.keyPrefix ?? RedisActionCache.DEFAULT_KEY_PREFIX;
    if (opts.ttlMs !== undefined && !(Number.isSafeInteger(opts.ttlMs) && opts.ttlMs > 0)) throw new TypeError(`ttlMs must be a positive integer, got ${opts.ttlMs}`);
    this.ttlMs = opts.ttlMs;
  }

  /**
   * Connects to `url` (`redis://[:password@]host:port[/db]`, or `rediss://` for TLS). The connection
   * is made in the background and re-made when lost; calls made meanwhile wait for it briefly, then
   * fail UNAVAILABLE. `close` ends it.
   */
  static connect(url: string, opts: RedisActionCacheOptions = {}): { actionCache: RedisActionCache; close: () => Promise<void> } {
    const logger = opts.logger ?? silentLogger;
    const redis = new Redis(url, {
      maxRetriesPerRequest: MAX_RETRIES_PER_REQUEST,
      connectTimeout: 5_000,
      retryStrategy: (attempt) => Math.min(100 * attempt, 2_000),
    });
    // Logged once per outage (ioredis emits an error for every reconnect attempt).
    let down = false;
    redis.on('error', (err: Error) => {
      if (down) return;
      down = true;
      logger.warn('Action cache in Redis is unreachable; retrying', { error: err.message });
    });
    redis.on('ready', () => {
      if (down) logger.info('Action cache in Redis is reachable again');
      down = false;
    });
    const close = async () => {
      if (redis.status === 'ready') await redis.quit().catch(() => redis.disconnect());
      else redis.disconnect();
    };
    return { actionCache: new RedisActionCache(redis, opts), close };
  }

  /** The Redis key of an action's result: prefix, digest function, hash and size, then the instance name (which may contain any character). */
  keyOf(actionDigest: Digest): string {
    return `${this.keyPrefix}ac:${actionDigest.digestFunction}:${actionDigest.hash}-${actionDigest.sizeBytes}:${actionDigest.instanceName}`;
  }

  async getActionResult(actionDigest: Digest, opts: CallOptions = {}): Promise<reapi.IActionResult> {
    let bytes: Buffer | null;
    try {
      bytes = await raceAbort(this.redis.getBuffer(this.keyOf(actionDigest)), opts.signal);
    } catch (err) {
      throw redisError(err, `Failed to get action result for action ${actionDigest.toString()}`);
    }
    if (bytes === null) throw StatusError.notFound(`No action result for action ${actionDigest.toString()}`);
    if (bytes.length > BlobStoreActionCache.MAX_ACTION_RESULT_BYTES) {
      throw StatusError.internal(`Action result stored for action ${actionDigest.toString()} is ${bytes.length} bytes, over the ${BlobStoreActionCache.MAX_ACTION_RESULT_BYTES}-byte limit`);
    }
    try {
      return reapi.ActionResult.decode(bytes);
    } catch (err) {
      throw StatusError.internal(`Failed to decode action result stored for action ${actionDigest.toString()}: ${(err as Error).message}`, err);
    }
  }

  async updateActionResult(actionDigest: Digest, result: reapi.IActionResult, opts: CallOptions = {}): Promise<void> {
    const bytes = Buffer.from(reapi.ActionResult.encode(result).finish());
    if (bytes.length > BlobStoreActionCache.MAX_ACTION_RESULT_BYTES) {
      throw StatusError.resourceExhausted(`Action result for action ${actionDigest.toString()} is ${bytes.length} bytes, over the ${BlobStoreActionCache.MAX_ACTION_RESULT_BYTES}-byte limit`);
    }
    const key = this.keyOf(actionDigest);
    try {
      const set = this.ttlMs === undefined ? this.redis.set(key, bytes) : this.redis.set(key, bytes, 'PX', this.ttlMs);
      await raceAbort(set, opts.signal);
    } catch (err) {
      throw redisError(err, `Failed to store action result for action ${actionDigest.toString()}`);
    }
  }
}

/** A Redis failure as a StatusError (see the module comment); aborts pass through. */
function redisError(err: unknown, prefix: string): unknown {
  if (err instanceof Error && err.name === 'AbortError') return err;
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof Error && err.name === 'ReplyError') {
    if (message.startsWith('OOM')) return StatusError.resourceExhausted(`${prefix}: Redis is out of memory`);
    return StatusError.internal(`${prefix}: Redis answered ${message.split('\n')[0]}`, err);
  }
  return StatusError.unavailable(`${prefix}: Redis is unreachable (${message.split('\n')[0]})`);
}
