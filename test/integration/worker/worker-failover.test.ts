/**
 * `serve worker --scheduler a,b`: a real worker polling two schedulers that share one Redis queue
 * (a real redis-server on a free loopback port). When its scheduler goes away it moves to the other
 * one (and back again later), and an action it is running keeps its lease: the result is accepted
 * by the other scheduler and the action ran once.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { BlobStore } from '../../../src/lib/blobstore/blob-store.js';
import { StatusError } from '../../../src/lib/errors/status-error.js';
import { encodeWithDigest } from '../../../src/lib/digest/encode-with-digest.js';
import { reapi } from '../../../src/lib/proto/index.js';
import type { OperationSnapshot } from '../../../src/lib/scheduler/operation-snapshot.js';
import { silentLogger } from '../../../src/lib/util/logger.js';
import { type Scheduler, startScheduler } from '../../../src/server/scheduler.js';
import { parseSchedulerAddresses } from '../../../src/server/scheduler-failover.js';
import { startWorker, type WorkerHandle } from '../../../src/server/worker.js';
import { hasRedisServer, type RedisServer, startRedis } from '../../helpers/redis-server.js';
import { newMemoryStore, putTree } from '../../unit/worker/worker-test-helpers.js';

const available = hasRedisServer();
if (!available) console.warn('SKIPPING worker-failover tests: redis-server is not installed (CI installs it)');

describe('parseSchedulerAddresses', () => {
  it('splits a comma-separated list and refuses empty entries', () => {
    expect(parseSchedulerAddresses('a:9098, b:9098')).toEqual(['a:9098', 'b:9098']);
    expect(parseSchedulerAddresses('unix:/run/w.sock')).toEqual(['unix:/run/w.sock']);
    expect(() => parseSchedulerAddresses('a:9098,,b:9098')).toThrow(StatusError);
  });
});

describe.skipIf(!available)('worker failing over between the schedulers of a fleet', () => {
  let redis: RedisServer;
  let dir: string;
  let store: BlobStore;
  let results: Map<string, reapi.IActionResult>;
  const schedulers: Scheduler[] = [];
  let worker: WorkerHandle | undefined;

  beforeEach(async () => {
    redis = await startRedis();
    dir = mkdtempSync(path.join(tmpdir(), 'bzutil-failover-'));
    store = newMemoryStore();
    results = new Map();
  }, 30_000);
  afterEach(async () => {
    await worker?.close();
    await Promise.all(schedulers.splice(0).map((s) => s.close(100)));
    await redis.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function scheduler(workerListenAddress = '127.0.0.1:0'): Promise<Scheduler> {
    const s = await startScheduler({
      listenAddress: '127.0.0.1:0',
      workerListenAddress,
      contentAddressableStorage: store,
      actionCache: {
        getActionResult: async (d) => {
          const r = results.get(d.key);
          if (!r) throw StatusError.notFound('miss');
          return r;
        },
        updateActionResult: async (d, r) => void results.set(d.key, r),
      },
      state: redis.url,
      workerGraceMs: 5_000,
      longPollMs: 1_000,
      sweepIntervalMs: 100,
      logger: silentLogger,
      serveStorage: false,
    });
    schedulers.push(s);
    return s;
  }

  async function stop(s: Scheduler): Promise<void> {
    schedulers.splice(schedulers.indexOf(s), 1);
    await s.close(100);
  }

  async function begin(via: Scheduler, script: string): Promise<AsyncIterator<OperationSnapshot>> {
    const cmd = encodeWithDigest(reapi.Command, { arguments: ['/bin/sh', '-c', script] });
    await store.put(cmd.digest, cmd.bytes);
    const inputRoot = await putTree(store, {});
    const action = encodeWithDigest(reapi.Action, { commandDigest: cmd.digest.toProto(), inputRootDigest: inputRoot.toProto(), doNotCache: true });
    await store.put(action.digest, action.bytes);
    return via.buildQueue.execute({ actionDigest: action.digest, skipCacheLookup: true, priority: 0 })[Symbol.asyncIterator]();
  }

  async function until(it: AsyncIterator<OperationSnapshot>, stage: OperationSnapshot['stage']): Promise<OperationSnapshot> {
    for (let i = 0; i < 100; i++) {
      const next = await it.next();
      if (next.done) break;
      if (next.value.stage === stage) return next.value;
    }
    throw new Error(`The operation never reached ${stage}`);
  }

  async function run(via: Scheduler, script: string): Promise<reapi.IExecuteResponse> {
    return (await until(await begin(via, script), 'COMPLETED')).response!;
  }

  async function startPollingWorker(addresses: string[]): Promise<void> {
    worker = await startWorker({
      schedulerAddress: addresses.join(','),
      contentAddressableStorage: store,
      slots: 1,
      workDir: path.join(dir, 'work'),
      platform: {},
      workerId: 'failover-worker',
      logger: silentLogger,
      maxBackoffMs: 500,
      // The actions write to a host directory of this test, which the bwrap sandbox forbids.
      runner: 'local',
    });
  }

  it('moves to the other scheduler when its scheduler goes away, and back again', async () => {
    const a = await scheduler();
    const b = await scheduler();
    await startPollingWorker([a.workerAddress, b.workerAddress]);
    expect((await run(a, 'exit 0')).result?.exitCode).toBe(0);

    const aWorkerAddress = a.workerAddress;
    await stop(a);
    expect((await run(b, 'exit 3')).result?.exitCode).toBe(3);

    // A comes back on its address and B goes away: the worker goes round the list to A.
    const a2 = await scheduler(aWorkerAddress);
    await stop(b);
    expect((await run(a2, 'exit 4')).result?.exitCode).toBe(4);
  });

  it('keeps the lease of an action running while its scheduler goes away: the other one accepts its result', async () => {
    const a = await scheduler();
    const b = await scheduler();
    await startPollingWorker([a.workerAddress, b.workerAddress]);
    const runs = path.join(dir, 'runs');
    // Submitted through B, handed out through A (the worker polls the first of its list).
    const op = await begin(b, `echo ran >> ${runs}; sleep 2; echo finished >> ${runs}`);
    await until(op, 'EXECUTING');
    await stop(a);

    const done = await until(op, 'COMPLETED');
    expect(done.response?.status?.code ?? 0).toBe(0);
    expect(done.response?.result?.exitCode).toBe(0);
    // Not requeued and run again: one attempt, which finished, on the worker that kept its lease.
    expect(readFileSync(runs, 'utf8')).toBe('ran\nfinished\n');
  });
});
