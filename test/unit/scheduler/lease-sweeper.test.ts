import { describe, expect, it } from 'vitest';
import { Digest } from '../../../src/lib/digest/digest.js';
import { InMemoryExecutionQueue } from '../../../src/lib/scheduler/execution-queue.js';
import { LeaseSweeper } from '../../../src/lib/scheduler/lease-sweeper.js';
import { InMemoryOperationTable } from '../../../src/lib/scheduler/operation-table.js';
import { PlatformProperties } from '../../../src/lib/scheduler/platform-properties.js';
import type { Execution, OperationEntry, WorkerState } from '../../../src/lib/scheduler/scheduler-state.js';
import { WorkerRegistry } from '../../../src/lib/scheduler/worker-registry.js';
import { FakeClock } from '../../../src/lib/util/clock.js';
import { silentLogger } from '../../../src/lib/util/logger.js';

function setup() {
  const clock = new FakeClock(0);
  const table = new InMemoryOperationTable();
  const queue = new InMemoryExecutionQueue<Execution>();
  const workers = new WorkerRegistry(clock, silentLogger);
  const events: string[] = [];
  const sweeper = new LeaseSweeper({
    clock,
    logger: silentLogger,
    intervalMs: 1000,
    workerLeaseMs: 5000,
    platformQueueTimeoutMs: 3000,
    keepCompletedMs: 10_000,
    table,
    queue,
    workers,
    loseWorker: (w: WorkerState, reason) => {
      workers.remove(w);
      events.push(`lost ${w.id}: ${reason}`);
    },
    failUnschedulable: (e, waitedMs) => events.push(`unschedulable ${e.seq} after ${waitedMs}`),
    forget: (entry: OperationEntry) => events.push(`forgot ${entry.name}`),
    dispatch: () => events.push('dispatch'),
  });
  return { clock, table, queue, workers, events, sweeper };
}

const gpu = PlatformProperties.fromProto({ properties: [{ name: 'gpu', value: '1' }] });

describe('LeaseSweeper', () => {
  it('removes a worker whose lease ran out, and keeps one that holds a poll', async () => {
    const { clock, workers, events, sweeper } = setup();
    workers.register({ workerId: 'idle' });
    const polling = workers.register({ workerId: 'polling' });
    void workers.hold(polling, 60_000, undefined, () => ({}), () => ({}));
    await clock.advance(5000);
    sweeper.sweep();
    expect(events).toEqual(['lost idle: worker "idle" did not synchronize for 5000 ms', 'dispatch']);
    expect(workers.isLive(polling)).toBe(true);
  });

  it('fails a queued execution no worker can run after the platform timeout, counted from the first sweep that saw it', async () => {
    const { clock, queue, events, sweeper } = setup();
    const execution = { seq: 7, priority: 0, platform: gpu, actionDigest: Digest.empty(), queuedBytes: 100 } as Execution;
    queue.push(execution);
    sweeper.sweep();
    await clock.advance(2999);
    sweeper.sweep();
    expect(events.filter((e) => e.startsWith('unschedulable'))).toEqual([]);
    await clock.advance(1);
    sweeper.sweep();
    expect(events).toContain('unschedulable 7 after 3000');
    expect(queue.size).toBe(0);
  });

  it('forgets finished operations after keepCompletedMs and stops when aborted', async () => {
    const { clock, table, events, sweeper } = setup();
    const entry: OperationEntry = { name: 'operations/done', seq: 0, actionDigest: undefined as never, version: 0, listeners: new Set() };
    table.insert(entry);
    table.markCompleted(entry, 0);
    const stop = new AbortController();
    const running = sweeper.run(stop.signal);
    await clock.advance(9000);
    expect(events).not.toContain('forgot operations/done');
    await clock.advance(1000);
    expect(events).toContain('forgot operations/done');
    stop.abort();
    await expect(running).resolves.toBeUndefined();
  });
});
