/**
 * Driver job for Q1: the scheduler's queue module at scale, in its own process so that its RSS is
 * the queue's: `queued` executions are queued as the coordinator queues them (the in-memory queue
 * room, and for `sqlite` one write-through transaction each, the Action and Command kept in the file
 * instead of in memory), then `claims` times the claim of the next matching execution by a worker
 * that satisfies one of 8 platforms (claim from the room, Action read back, the lease written).
 * For `redis://…` the queue is the Redis build queue's own scripts (redis-scripts.ts): the same
 * executions are queued by its enqueue script (with the arguments RedisBuildQueue passes), and each
 * claim is its claim script (one round trip to a local redis-server) plus decoding the Action it
 * returns; the RSS is then the scheduler's, and Redis's own is reported beside it.
 */
import { Digest } from '../../src/lib/digest/digest.js';
import { reapi } from '../../src/lib/proto/index.js';
import { createStateStore } from '../../src/lib/scheduler/create-state-store.js';
import { InMemoryExecutionQueue } from '../../src/lib/scheduler/execution-queue.js';
import type { LoadedAction } from '../../src/lib/scheduler/load-action.js';
import { PlatformProperties } from '../../src/lib/scheduler/platform-properties.js';
import { platformPairs, readLoaded, RedisState, storeLoaded } from '../../src/lib/scheduler/redis/redis-state.js';
import { parseRedisUrl } from '../../src/lib/scheduler/redis/redis-url.js';
import type { Execution } from '../../src/lib/scheduler/scheduler-state.js';
import { platformText } from '../../src/lib/scheduler/state-codec.js';
import { storedExecution } from '../../src/lib/scheduler/state-journal.js';

export interface QueueScaleParams {
  /** `memory`, `sqlite:PATH` or `redis://HOST:PORT/DB`. */
  state: string;
  queued: number;
  claims: number;
}

export interface QueueScaleResult {
  fillSeconds: number;
  claimLatenciesMs: number[];
  rssBytes: number;
  heapUsedBytes: number;
  /** redis-server's RSS with the queue in it (redis only). */
  redisRssBytes?: number;
}

const PLATFORMS = 8;

const makePlatforms = () => Array.from({ length: PLATFORMS }, (_, i) => PlatformProperties.fromProto({ properties: [{ name: 'pool', value: `p${i}` }] }));

/** A realistic small compile action: a few dozen arguments and environment variables. */
function compileAction(seq: number, platform: PlatformProperties): LoadedAction {
  const hash = seq.toString(16).padStart(64, '0');
  return {
    action: reapi.Action.create({ commandDigest: { hash, sizeBytes: 900 }, inputRootDigest: { hash, sizeBytes: 300 } }),
    command: reapi.Command.create({
      arguments: ['/usr/bin/gcc', '-c', `src/file${seq}.c`, '-o', `out/file${seq}.o`, ...Array.from({ length: 30 }, (_, i) => `-Iinclude/dir${i}`)],
      environmentVariables: [{ name: 'PATH', value: '/usr/bin:/bin' }],
      outputFiles: [`out/file${seq}.o`],
    }),
    timeoutMs: 60_000,
    platform,
    sizeBytes: 1200,
  };
}

export async function queueScaleJob(params: QueueScaleParams): Promise<QueueScaleResult> {
  if (params.state.startsWith('redis://')) return redisQueueScale(params);
  const store = createStateStore(params.state);
  const queue = new InMemoryExecutionQueue<Execution>();
  const platforms = makePlatforms();
  const started = performance.now();
  for (let seq = 0; seq < params.queued; seq++) {
    const platform = platforms[seq % PLATFORMS]!;
    const hash = seq.toString(16).padStart(64, '0');
    const loaded = compileAction(seq, platform);
    const execution: Execution = {
      actionDigest: Digest.create('', 'sha256', hash, 200),
      loaded,
      platform,
      doNotCache: false,
      priority: 0,
      seq,
      timeoutMs: loaded.timeoutMs,
      queuedAtMs: Date.now(),
      queuedBytes: loaded.sizeBytes,
      stage: 'QUEUED',
      attempts: 0,
      cancelRequested: false,
      finishing: false,
      entries: new Set(),
    };
    store.putExecution(storedExecution(execution), loaded);
    if (store.holdsActions) execution.loaded = undefined;
    queue.push(execution);
  }
  const fillSeconds = (performance.now() - started) / 1000;
  globalThis.gc?.();
  const { rss, heapUsed } = process.memoryUsage();
  const claimLatenciesMs: number[] = [];
  for (let i = 0; i < params.claims; i++) {
    const t0 = performance.now();
    const [execution] = queue.claim(platforms[i % PLATFORMS]!, 1);
    if (!execution) throw new Error('The queue ran dry');
    const loaded = execution.loaded ?? store.loadAction(execution.seq);
    if (!loaded) throw new Error(`Execution ${execution.seq} lost its Action`);
    execution.stage = 'EXECUTING';
    execution.attempts++;
    store.putExecution(storedExecution(execution));
    claimLatenciesMs.push(performance.now() - t0);
  }
  store.close();
  return { fillSeconds, claimLatenciesMs, rssBytes: rss, heapUsedBytes: heapUsed };
}

/** Q1 on the Redis build queue's scripts, against the redis-server at `params.state`. */
async function redisQueueScale(params: QueueScaleParams): Promise<QueueScaleResult> {
  const target = parseRedisUrl(params.state);
  const state = new RedisState(target, 'bzutil:q1:');
  await state.open(target, () => {});
  try {
    const platforms = makePlatforms();
    const unlimited = params.queued + 1;
    const started = performance.now();
    // Queued as RedisBuildQueue.execute queues them (one enqueue script each), 500 in flight.
    const BATCH = 500;
    for (let first = 0; first < params.queued; first += BATCH) {
      const batch: Promise<void>[] = [];
      for (let i = first; i < Math.min(first + BATCH, params.queued); i++) {
        const platform = platforms[i % PLATFORMS]!;
        const loaded = compileAction(i, platform);
        const name = `operations/q1-${i}`;
        const digest = `${i.toString(16).padStart(64, '0')}/200`;
        const pairs = platformPairs(platform);
        batch.push(
          (async () => {
            // The arguments of RedisBuildQueue's enqueue call; doNotCache so each is its own execution.
            const [outcome] = (await state.run(
              'enqueue',
              Date.now(),
              name,
              digest,
              '1',
              platformText(platform),
              0,
              loaded.timeoutMs ?? '',
              storeLoaded(loaded),
              unlimited,
              unlimited,
              unlimited * loaded.sizeBytes,
              '',
              loaded.sizeBytes,
              pairs.length,
              ...pairs,
            )) as [string];
            if (outcome !== 'QUEUED') throw new Error(`Failed to queue execution ${i}: ${outcome}`);
          })(),
        );
      }
      await Promise.all(batch);
    }
    const fillSeconds = (performance.now() - started) / 1000;
    globalThis.gc?.();
    const { rss, heapUsed } = process.memoryUsage();
    const claimLatenciesMs: number[] = [];
    for (let i = 0; i < params.claims; i++) {
      const platform = platforms[i % PLATFORMS]!;
      const pairs = platformPairs(platform);
      const t0 = performance.now();
      // One worker per claim, so that no worker runs out of slots.
      // The take arguments of RedisBuildQueue: worker, slots, grace, budget, ids, tokens, platform.
      const [, claims] = (await state.run('take', Date.now(), `q1-worker-${i}`, 1, 5_000, 3 * 1024 * 1024, 1, `task-${i}`, `token-${i}`, pairs.length, ...pairs)) as [string[], [number, string, string][]];
      const claimed = claims[0];
      if (!claimed) throw new Error('The queue ran dry');
      if (!claimed[2] || !readLoaded(claimed[2], platform).command) throw new Error(`Execution ${claimed[1]} lost its Action`);
      claimLatenciesMs.push(performance.now() - t0);
    }
    const info = await state.commands.info('memory');
    const redisRssBytes = Number(/used_memory_rss:(\d+)/.exec(info)?.[1] ?? NaN);
    await state.commands.flushdb();
    return { fillSeconds, claimLatenciesMs, rssBytes: rss, heapUsedBytes: heapUsed, redisRssBytes };
  } finally {
    state.close();
  }
}
