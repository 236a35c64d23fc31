/**
 * Results only from the lease holder: a completion by another worker, or with a wrong or missing
 * lease token, is refused and leaves the ActionCache untouched; a malformed Synchronize registers
 * nothing; a worker's slots are capped by the scheduler.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Code, StatusError } from '../../../src/lib/errors/status-error.js';
import type { workerapi } from '../../../src/lib/proto/index.js';
import type { InMemoryBuildQueue, InMemoryBuildQueueOptions } from '../../../src/lib/scheduler/in-memory-build-queue.js';
import { createQueue, createStores, nextSnapshot, okResponse, type TestStores, untilCompleted, uploadAction } from './scheduler-fixtures.js';

let stores: TestStores;
let queue: InMemoryBuildQueue;

function setup(opts: Partial<InMemoryBuildQueueOptions> = {}): void {
  queue?.close();
  ({ queue } = createQueue(stores, opts));
}

beforeEach(() => {
  stores = createStores();
  setup();
});

afterEach(() => queue.close());

function sync(workerId: string, slots = 1): Promise<workerapi.ISynchronizeResponse> {
  return queue.synchronize({ workerId, workerName: `${workerId}-name`, slots, platform: { properties: [] }, runningTaskIds: [] });
}

async function codeOf(p: Promise<unknown>): Promise<string> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(StatusError);
  return (err as StatusError).codeName;
}

describe('worker admission: completions', () => {
  it('refuses a completion from a non-holder, with a wrong token or with none, and the AC stays empty; the holder then completes', async () => {
    const { actionDigest } = await uploadAction(stores.cas);
    const op = queue.execute({ actionDigest, skipCacheLookup: false, priority: 0 })[Symbol.asyncIterator]();
    await nextSnapshot(op);
    const task = (await sync('holder')).tasks![0]!;
    expect(task.leaseToken).toMatch(/^[0-9a-f]{32}$/);
    // A second, registered worker (its poll stays held: nothing is left for it).
    void sync('rogue');
    const forged = okResponse(0, 'forged');

    expect(await codeOf(queue.completeTask({ workerId: 'rogue', taskId: task.taskId, leaseToken: task.leaseToken, response: forged }))).toBe('PERMISSION_DENIED');
    expect(await codeOf(queue.completeTask({ workerId: 'holder', taskId: task.taskId, leaseToken: 'f'.repeat(32), response: forged }))).toBe('PERMISSION_DENIED');
    expect(await codeOf(queue.completeTask({ workerId: 'holder', taskId: task.taskId, response: forged }))).toBe('PERMISSION_DENIED');
    expect(await codeOf(queue.completeTask({ workerId: '', taskId: task.taskId, leaseToken: task.leaseToken, response: forged }))).toBe('PERMISSION_DENIED');
    expect(await codeOf(queue.completeTask({ workerId: 'holder', taskId: 'no-such-task', leaseToken: task.leaseToken, response: forged }))).toBe('NOT_FOUND');

    expect(await codeOf(stores.actionCache.getActionResult(actionDigest))).toBe('NOT_FOUND');
    expect(queue.stats().executingOperations).toBe(1);

    await queue.completeTask({ workerId: 'holder', taskId: task.taskId, leaseToken: task.leaseToken, response: okResponse(0, 'real') });
    const done = await untilCompleted(op);
    expect(done.response?.status?.code ?? Code.OK).toBe(Code.OK);
    const cached = await stores.actionCache.getActionResult(actionDigest);
    expect(Buffer.from(cached.stdoutRaw ?? []).toString()).toBe('real');
  });

  it('gives every attempt a different token', async () => {
    for (const arg of ['a', 'b']) {
      const { actionDigest } = await uploadAction(stores.cas, { args: [arg] });
      await nextSnapshot(queue.execute({ actionDigest, skipCacheLookup: false, priority: 0 })[Symbol.asyncIterator]());
    }
    const tasks = (await sync('w1', 2)).tasks!;
    expect(tasks).toHaveLength(2);
    expect(tasks[0]!.leaseToken).not.toBe(tasks[1]!.leaseToken);
  });
});

describe('worker admission: Synchronize', () => {
  it.each([
    ['an empty worker id', { workerId: '' }],
    ['a worker id with control bytes', { workerId: '\u0000\u0001\u0002' }],
    ['a worker id with spaces', { workerId: 'a b' }],
    ['an over-long worker id', { workerId: 'x'.repeat(129) }],
    ['a worker name with control bytes', { workerId: 'ok', workerName: 'bad\u0007name' }],
  ])('registers nothing for %s', async (_label, fields) => {
    expect(await codeOf(queue.synchronize({ slots: 4, ...fields }))).toBe('INVALID_ARGUMENT');
    expect(queue.stats().workers).toBe(0);
  });

  it('caps the slots a worker claims at maxWorkerSlots', async () => {
    setup({ maxWorkerSlots: 2 });
    for (const arg of ['a', 'b', 'c']) {
      const { actionDigest } = await uploadAction(stores.cas, { args: [arg] });
      await nextSnapshot(queue.execute({ actionDigest, skipCacheLookup: false, priority: 0 })[Symbol.asyncIterator]());
    }
    const res = await sync('greedy', 10_000);
    expect(res.tasks).toHaveLength(2);
    expect(queue.stats().queuedOperations).toBe(1);
  });
});
