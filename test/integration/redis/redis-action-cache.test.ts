/** RedisActionCache against a real redis-server started on a free loopback port. */
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CompletenessCheckingActionCache } from '../../../src/lib/actioncache/completeness-checking-action-cache.js';
import { RedisActionCache } from '../../../src/lib/actioncache/redis-action-cache.js';
import { MemoryBlobStore } from '../../../src/lib/blobstore/memory-blob-store.js';
import { createStorage, type Storage } from '../../../src/lib/config/create-storage.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code, type StatusError } from '../../../src/lib/errors/status-error.js';
import { reapi } from '../../../src/lib/proto/index.js';
import { bytes, expectCode, rejectionOf } from '../../helpers/blob-store-contract.js';
import { freePort, hasRedisServer, startRedis, type RedisServer } from '../../helpers/redis-server.js';

describe.runIf(hasRedisServer())('RedisActionCache', () => {
  let server: RedisServer;
  const closers: (() => Promise<void>)[] = [];
  beforeAll(async () => {
    server = await startRedis();
  });
  afterEach(async () => {
    for (const c of closers.splice(0)) await c();
  });
  afterAll(async () => {
    await server?.stop();
  });

  const open = (opts: { keyPrefix?: string; ttlMs?: number; url?: string } = {}) => {
    const { actionCache, close } = RedisActionCache.connect(opts.url ?? server.url, opts);
    closers.push(close);
    return actionCache;
  };
  const raw = () => {
    const redis = new Redis(server.url);
    closers.push(async () => void (await redis.quit()));
    return redis;
  };
  const actionDigest = Digest.ofBytes(bytes('an encoded Action'));
  const result: reapi.IActionResult = { exitCode: 7, outputFiles: [{ path: 'out/a', digest: Digest.ofBytes(bytes('a')).toProto() }] };

  it('returns what was stored, to another connection too (as another apiserver would)', async () => {
    await open().updateActionResult(actionDigest, result);
    const got = await open().getActionResult(actionDigest);
    expect(got.exitCode).toBe(7);
    expect(got.outputFiles?.[0]?.path).toBe('out/a');
  });

  it('misses with NOT_FOUND naming the action', async () => {
    const err = (await rejectionOf(open().getActionResult(Digest.ofBytes(bytes('never run'))))) as StatusError;
    expectCode(err, Code.NOT_FOUND);
    expect(err.message).toContain(Digest.ofBytes(bytes('never run')).toString());
  });

  it('keeps instance names and key prefixes apart, and names the digest function in the key', async () => {
    const cache = open({ keyPrefix: 'scoping:' });
    const inA = Digest.ofBytes(bytes('scoped action'), { instanceName: 'a' });
    await cache.updateActionResult(inA, { exitCode: 1 });
    expectCode(await rejectionOf(cache.getActionResult(inA.withInstanceName('b'))), Code.NOT_FOUND);
    expectCode(await rejectionOf(cache.getActionResult(inA.withInstanceName(''))), Code.NOT_FOUND);
    expectCode(await rejectionOf(open({ keyPrefix: 'other:' }).getActionResult(inA)), Code.NOT_FOUND);
    expect((await cache.getActionResult(inA)).exitCode).toBe(1);
    // The key names all of them.
    const keys = await raw().keys('scoping:*');
    expect(keys).toEqual([cache.keyOf(inA)]);
    expect(keys[0]).toBe(`scoping:ac:sha256:${inA.hash}-${inA.sizeBytes}:a`);
  });

  it('sets the TTL it is given, and none without one', async () => {
    const redis = raw();
    const withTtl = open({ keyPrefix: 'ttl:', ttlMs: 3_600_000 });
    await withTtl.updateActionResult(actionDigest, result);
    const ttl = await redis.pttl(withTtl.keyOf(actionDigest));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(3_600_000);
    const forever = open({ keyPrefix: 'nottl:' });
    await forever.updateActionResult(actionDigest, result);
    expect(await redis.pttl(forever.keyOf(actionDigest))).toBe(-1);
  });

  it('answers INTERNAL, not a bogus result, for an entry that does not decode', async () => {
    const cache = open({ keyPrefix: 'corrupt:' });
    await raw().set(cache.keyOf(actionDigest), Buffer.from([0xff, 0xff, 0xff]));
    expectCode(await rejectionOf(cache.getActionResult(actionDigest)), Code.INTERNAL);
  });

  it('fails UNAVAILABLE when Redis cannot be reached, without the URL in the message', async () => {
    const port = await freePort();
    const cache = open({ url: `redis://:hunter2@127.0.0.1:${port}` });
    const err = (await rejectionOf(cache.getActionResult(actionDigest))) as StatusError;
    expectCode(err, Code.UNAVAILABLE);
    expect(err.message).not.toContain('hunter2');
  });

  it('is built by createStorage from storage.action_cache.redis, checking completeness against the CAS', async () => {
    const storage: Storage = await createStorage({ cas: { memory: { max_size_bytes: '1MiB' } }, action_cache: { redis: { url: server.url, key_prefix: 'factory:', ttl: '1h' } } });
    closers.push(() => storage.close());
    expect(storage.actionCache).toBeInstanceOf(CompletenessCheckingActionCache);
    const output = bytes('an output');
    const withOutput: reapi.IActionResult = { outputFiles: [{ path: 'o', digest: Digest.ofBytes(output).toProto() }] };
    await storage.actionCache!.updateActionResult(actionDigest, withOutput);
    // The output is not in the CAS yet: a miss, so the action runs again rather than Bazel failing to download.
    expectCode(await rejectionOf(storage.actionCache!.getActionResult(actionDigest)), Code.NOT_FOUND);
    await storage.contentAddressableStorage.put(Digest.ofBytes(output), output);
    expect((await storage.actionCache!.getActionResult(actionDigest)).outputFiles?.[0]?.path).toBe('o');
    expect(await raw().exists(`factory:ac:sha256:${actionDigest.hash}-${actionDigest.sizeBytes}:`)).toBe(1);
  });

  it('works under a CompletenessCheckingActionCache over a MemoryBlobStore, as the apiserver wires it', async () => {
    const cas = new MemoryBlobStore({ maxSizeBytes: 1 << 20 });
    const cache = new CompletenessCheckingActionCache(open({ keyPrefix: 'cc:' }), cas);
    await cache.updateActionResult(actionDigest, { exitCode: 2 });
    expect((await cache.getActionResult(actionDigest)).exitCode).toBe(2);
  });
});
