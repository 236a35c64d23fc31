import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Code, StatusError } from '../../../src/lib/errors/status-error.js';
import type { workerapi } from '../../../src/lib/proto/index.js';
import type { ExecuteRequest } from '../../../src/lib/scheduler/build-queue.js';
import type { InMemoryBuildQueue, InMemoryBuildQueueOptions } from '../../../src/lib/scheduler/in-memory-build-queue.js';
import type { OperationSnapshot } from '../../../src/lib/scheduler/operation-snapshot.js';
import type { FakeClock } from '../../../src/lib/util/clock.js';
import type { Digest } from '../../../src/lib/digest/digest.js';
import {
  createQueue,
  createStores,
  flush,
  nextSnapshot,
  okResponse,
  type TestStores,
  untilCompleted,
  uploadAction,
} from './scheduler-fixtures.js';

let stores: TestStores;
let queue: InMemoryBuildQueue;
let clock: FakeClock;

function setup(opts: Partial<InMemoryBuildQueueOptions> = {}): void {
  queue?.close();
  ({ queue, clock } = createQueue(stores, opts));
}

beforeEach(() => {
  stores = createStores();
  setup();
});

afterEach(() => {
  queue.close();
});

function request(actionDigest: Digest, extra: Partial<ExecuteRequest> = {}): ExecuteRequest {
  return { actionDigest, skipCacheLookup: false, priority: 0, ...extra };
}

function start(actionDigest: Digest, extra: Partial<ExecuteRequest> = {}): AsyncIterator<OperationSnapshot> {
  return queue.execute(request(actionDigest, extra))[Symbol.asyncIterator]();
}

function sync(
  workerId: string,
  opts: { slots?: number; platform?: [string, string][]; running?: string[]; signal?: AbortSignal } = {},
): Promise<workerapi.ISynchronizeResponse> {
  return queue.synchronize(
    {
      workerId,
      workerName: `${workerId}-name`,
      slots: opts.slots ?? 1,
      platform: { properties: (opts.platform ?? []).map(([name, value]) => ({ name, value })) },
      runningTaskIds: opts.running ?? [],
    },
    { signal: opts.signal },
  );
}

/** Resolves to whether `p` has settled after pending continuations ran. */
async function isSettled(p: Promise<unknown>): Promise<boolean> {
  let settled = false;
  p.then(
    () => (settled = true),
    () => (settled = true),
  );
  await flush();
  return settled;
}

async function expectStatus(p: Promise<unknown>, code: Code): Promise<StatusError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(StatusError);
  expect((err as StatusError).codeName).toBe(Code[code]);
  return err as StatusError;
}

describe('InMemoryBuildQueue: execution flow', () => {
  it('hands the worker the input Directories it checked, root first, so the worker does not fetch them again', async () => {
    const { actionDigest, inputRootDigest } = await uploadAction(stores.cas);
    const op = start(actionDigest);
    await nextSnapshot(op);
    const task = (await sync('w1')).tasks![0]!;
    const resolved = task.inputDirectories ?? [];
    expect(resolved).toHaveLength(3);
    expect(resolved[0]!.digest?.hash).toBe(inputRootDigest.hash);
    expect(resolved[0]!.directory?.files?.map((f) => f.name)).toEqual(['a.txt']);
    expect(resolved.map((r) => r.directory?.directories?.[0]?.name ?? r.directory?.files?.[0]?.name)).toEqual(['sub', 'deep', 'b.txt']);
  });

  it('leaves the Directories out of the task when the tree is larger than the hand-over budget', async () => {
    setup({ maxHandOverBytes: 1 });
    const { actionDigest } = await uploadAction(stores.cas);
    const op = start(actionDigest);
    await nextSnapshot(op);
    const task = (await sync('w1')).tasks![0]!;
    expect(task.inputDirectories ?? []).toEqual([]);
  });

  it('queues an action, hands it to a worker, and completes with the reported result', async () => {
    const { actionDigest } = await uploadAction(stores.cas);
    const op = start(actionDigest);
    const queued = await nextSnapshot(op);
    expect(queued.stage).toBe('QUEUED');
    expect(queued.name).toMatch(/^operations\/id-\d+$/);

    const res = await sync('w1');
    expect(res.tasks).toHaveLength(1);
    const task = res.tasks![0]!;
    expect(task.operationName).toBe(queued.name);
    expect(task.actionDigest?.hash).toBe(actionDigest.hash);
    expect(task.command?.arguments).toEqual(['/bin/echo', 'hello']);
    // The default timeout (1 h) applies when the Action sets none.
    expect(task.timeout).toEqual({ seconds: 3600, nanos: 0 });
    expect((await nextSnapshot(op)).stage).toBe('EXECUTING');

    await queue.completeTask({ workerId: 'w1', taskId: task.taskId, leaseToken: task.leaseToken, response: okResponse(0, 'hi') });
    const done = await nextSnapshot(op);
    expect(done.stage).toBe('COMPLETED');
    expect(done.response?.status?.code).toBe(Code.OK);
    expect(done.response?.cachedResult).toBe(false);
    expect(new TextDecoder().decode(done.response?.result?.stdoutRaw ?? new Uint8Array())).toBe('hi');
    // The scheduler stamps what it knows into ExecutedActionMetadata.
    expect(done.response?.result?.executionMetadata?.queuedTimestamp?.seconds).toBe(Math.floor(1_700_000_000_000 / 1000));
    expect(done.response?.result?.executionMetadata?.worker).toBe('w1-name');
    expect((await op.next()).done).toBe(true);
  });

  it('names operations after their instance', async () => {
    const { actionDigest } = await uploadAction(stores.cas, { instanceName: 'main/ci' });
    const first = await nextSnapshot(start(actionDigest));
    expect(first.name).toMatch(/^main\/ci\/operations\/id-\d+$/);
    expect(queue.getOperation(first.name).actionDigest.instanceName).toBe('main/ci');
  });

  it('answers a pending long-poll as soon as work arrives', async () => {
    const poll = sync('w1');
    expect(await isSettled(poll)).toBe(false);
    const { actionDigest } = await uploadAction(stores.cas);
    const op = start(actionDigest);
    await nextSnapshot(op);
    // No clock advance: the queue itself answered the held call.
    const res = await poll;
    expect(res.tasks).toHaveLength(1);
    expect(res.lease).toEqual({ seconds: 5, nanos: 0 });
  });

  it('ends an idle long-poll empty after longPollMs', async () => {
    const poll = sync('w1');
    await clock.advance(9_999);
    expect(await isSettled(poll)).toBe(false);
    await clock.advance(1);
    const res = await poll;
    expect(res.tasks).toEqual([]);
    expect(res.cancelTaskIds).toEqual([]);
  });

  it('runs lower priority values first, then in arrival order', async () => {
    const specs = [
      { args: ['a'], priority: 5 },
      { args: ['b'], priority: 0 },
      { args: ['c'], priority: 5 },
      { args: ['d'], priority: -1 },
      { args: ['e'], priority: 0 },
    ];
    for (const s of specs) {
      const { actionDigest } = await uploadAction(stores.cas, { args: s.args });
      await nextSnapshot(start(actionDigest, { priority: s.priority }));
    }
    const res = await sync('w1', { slots: 5 });
    expect(res.tasks!.map((t) => t.command!.arguments![0])).toEqual(['d', 'b', 'e', 'a', 'c']);
  });

  it('never hands a worker more tasks than its free slots', async () => {
    for (const a of ['a', 'b', 'c']) {
      const { actionDigest } = await uploadAction(stores.cas, { args: [a] });
      await nextSnapshot(start(actionDigest));
    }
    const first = await sync('w1', { slots: 2 });
    expect(first.tasks).toHaveLength(2);
    const running = first.tasks!.map((t) => t.taskId!);
    // Both slots are busy: the next call is held rather than answered with a third task.
    const held = sync('w1', { slots: 2, running });
    expect(await isSettled(held)).toBe(false);
    await queue.completeTask({ workerId: 'w1', taskId: running[0], leaseToken: first.tasks![0]!.leaseToken, response: okResponse() });
    const next = await held;
    expect(next.tasks!.map((t) => t.command!.arguments![0])).toEqual(['c']);
  });
});

describe('InMemoryBuildQueue: action cache', () => {
  it('completes a cached action at once without a worker', async () => {
    const { actionDigest } = await uploadAction(stores.cas);
    await stores.actionCache.updateActionResult(actionDigest, { exitCode: 0, stdoutRaw: new TextEncoder().encode('cached') });
    const op = start(actionDigest);
    const first = await nextSnapshot(op);
    expect(first.stage).toBe('COMPLETED');
    expect(first.response?.cachedResult).toBe(true);
    expect(first.response?.result?.exitCode).toBe(0);
    expect(queue.stats().queuedOperations).toBe(0);
    expect((await op.next()).done).toBe(true);
  });

  it('executes despite a cached result when skipCacheLookup is set', async () => {
    const { actionDigest } = await uploadAction(stores.cas);
    await stores.actionCache.updateActionResult(actionDigest, { exitCode: 0 });
    const first = await nextSnapshot(start(actionDigest, { skipCacheLookup: true }));
    expect(first.stage).toBe('QUEUED');
  });

  it('writes only successful results of cacheable actions to the action cache', async () => {
    const cases = [
      { args: ['ok'], response: okResponse(0), cached: true },
      { args: ['exit1'], response: okResponse(1), cached: false },
      { args: ['timeout'], response: { ...okResponse(0), status: { code: Code.DEADLINE_EXCEEDED, message: 'Failed to run: timed out' } }, cached: false },
      { args: ['nocache'], response: okResponse(0), cached: false, doNotCache: true },
    ];
    for (const c of cases) {
      const { actionDigest } = await uploadAction(stores.cas, { args: c.args, doNotCache: c.doNotCache });
      const op = start(actionDigest);
      await nextSnapshot(op);
      const res = await sync('w1');
      await queue.completeTask({ workerId: 'w1', taskId: res.tasks![0]!.taskId, leaseToken: res.tasks![0]!.leaseToken, response: c.response });
      const done = await untilCompleted(op);
      // The worker's status is kept as it was reported.
      expect(done.response?.status?.code).toBe(c.response.status?.code);
      const hit = await stores.actionCache.getActionResult(actionDigest).then(
        () => true,
        (e: StatusError) => (e.code === Code.NOT_FOUND ? false : Promise.reject(e)),
      );
      expect({ args: c.args, cached: hit }).toEqual({ args: c.args, cached: c.cached });
    }
  });

  it('turns a success without an ActionResult into an INTERNAL status and caches nothing', async () => {
    const { actionDigest } = await uploadAction(stores.cas);
    const op = start(actionDigest);
    await nextSnapshot(op);
    const res = await sync('w1');
    await queue.completeTask({ workerId: 'w1', taskId: res.tasks![0]!.taskId, leaseToken: res.tasks![0]!.leaseToken, response: { status: { code: 0 } } });
    const done = await untilCompleted(op);
    expect(done.response?.status?.code).toBe(Code.INTERNAL);
    await expectStatus(stores.actionCache.getActionResult(actionDigest), Code.NOT_FOUND);
  });
});

describe('InMemoryBuildQueue: in-flight deduplication', () => {
  it('runs concurrent identical Executes once and gives both callers the result', async () => {
    const { actionDigest } = await uploadAction(stores.cas);
    const a = start(actionDigest);
    const b = start(actionDigest);
    // Both validate concurrently; the second to finish joins the first's execution.
    const [qa, qb] = await Promise.all([nextSnapshot(a), nextSnapshot(b)]);
    expect(qa.stage).toBe('QUEUED');
    expect(qb.stage).toBe('QUEUED');
    expect(qa.name).not.toBe(qb.name);

    const res = await sync('w1', { slots: 4 });
    expect(res.tasks).toHaveLength(1);
    await queue.completeTask({ workerId: 'w1', taskId: res.tasks![0]!.taskId, leaseToken: res.tasks![0]!.leaseToken, response: okResponse(0, 'shared') });
    const [da, db] = await Promise.all([untilCompleted(a), untilCompleted(b)]);
    for (const d of [da, db]) {
      expect(d.response?.status?.code).toBe(Code.OK);
      expect(new TextDecoder().decode(d.response!.result!.stdoutRaw!)).toBe('shared');
    }
  });

  it('joins an execution that is already running', async () => {
    const { actionDigest } = await uploadAction(stores.cas);
    const a = start(actionDigest);
    await nextSnapshot(a);
    const res = await sync('w1', { slots: 4 });
    expect(res.tasks).toHaveLength(1);
    const b = start(actionDigest);
    expect((await nextSnapshot(b)).stage).toBe('EXECUTING');
    expect(queue.stats().queuedOperations).toBe(0);
  });

  it('does not deduplicate do_not_cache actions', async () => {
    const { actionDigest } = await uploadAction(stores.cas, { doNotCache: true });
    const a = start(actionDigest);
    const b = start(actionDigest);
    await Promise.all([nextSnapshot(a), nextSnapshot(b)]);
    const res = await sync('w1', { slots: 4 });
    expect(res.tasks).toHaveLength(2);
  });

  it('cancelling one of two sharing operations leaves the execution running for the other', async () => {
    const { actionDigest } = await uploadAction(stores.cas);
    const a = start(actionDigest);
    const b = start(actionDigest);
    const [qa] = await Promise.all([nextSnapshot(a), nextSnapshot(b)]);
    queue.cancelOperation(qa.name);
    const cancelled = await untilCompleted(a);
    expect(cancelled.response?.status?.code).toBe(Code.CANCELLED);
    const res = await sync('w1');
    expect(res.tasks).toHaveLength(1);
    await queue.completeTask({ workerId: 'w1', taskId: res.tasks![0]!.taskId, leaseToken: res.tasks![0]!.leaseToken, response: okResponse() });
    expect((await untilCompleted(b)).response?.status?.code).toBe(Code.OK);
  });
});

describe('InMemoryBuildQueue: validation', () => {
  it('reports a missing file deep in the input tree as a MISSING precondition violation', async () => {
    const { actionDigest, deepFileDigest } = await uploadAction(stores.cas, { omit: ['deepFile'] });
    const err = await expectStatus(nextSnapshot(start(actionDigest)), Code.FAILED_PRECONDITION);
    expect(err.preconditionViolations().map((v) => [v.type, v.subject])).toEqual([['MISSING', `blobs/${deepFileDigest.hash}/${deepFileDigest.sizeBytes}`]]);
    // A failed Execute leaves no operation behind.
    expect(queue.stats().operations).toBe(0);
  });

  it('reports a missing Command', async () => {
    const { actionDigest, commandDigest } = await uploadAction(stores.cas, { omit: ['command'] });
    const err = await expectStatus(nextSnapshot(start(actionDigest)), Code.FAILED_PRECONDITION);
    expect(err.preconditionViolations().map((v) => v.subject)).toEqual([commandDigest.toMissingSubject()]);
  });

  it('reports a missing Action', async () => {
    const { actionDigest } = await uploadAction(stores.cas, { omit: ['action'] });
    const err = await expectStatus(nextSnapshot(start(actionDigest)), Code.FAILED_PRECONDITION);
    expect(err.preconditionViolations().map((v) => v.subject)).toEqual([actionDigest.toMissingSubject()]);
  });

  it('reports every missing blob at once: Command and an input Directory', async () => {
    const { actionDigest, commandDigest } = await uploadAction(stores.cas, { omit: ['command', 'subDirectory'] });
    const err = await expectStatus(nextSnapshot(start(actionDigest)), Code.FAILED_PRECONDITION);
    const subjects = err.preconditionViolations().map((v) => v.subject);
    expect(subjects).toHaveLength(2);
    expect(subjects[0]).toBe(commandDigest.toMissingSubject());
    expect(subjects[1]).toMatch(/^blobs\/[0-9a-f]{64}\/\d+$/);
  });

  it('rejects a timeout above maxTimeoutMs with INVALID_ARGUMENT', async () => {
    setup({ maxTimeoutMs: 60_000, defaultTimeoutMs: 30_000 });
    const { actionDigest } = await uploadAction(stores.cas, { timeoutMs: 60_001 });
    const err = await expectStatus(nextSnapshot(start(actionDigest)), Code.INVALID_ARGUMENT);
    expect(err.fieldViolations().map((v) => v.field)).toEqual(['action.timeout']);
  });

  it('passes the Action timeout to the worker', async () => {
    const { actionDigest } = await uploadAction(stores.cas, { timeoutMs: 90_500 });
    await nextSnapshot(start(actionDigest));
    const res = await sync('w1');
    expect(res.tasks![0]!.timeout).toEqual({ seconds: 90, nanos: 500_000_000 });
  });

  it('refuses new actions with RESOURCE_EXHAUSTED once the queue is full', async () => {
    setup({ maxQueuedOperations: 2 });
    for (const a of ['a', 'b']) {
      const { actionDigest } = await uploadAction(stores.cas, { args: [a] });
      await nextSnapshot(start(actionDigest));
    }
    const { actionDigest } = await uploadAction(stores.cas, { args: ['c'] });
    await expectStatus(nextSnapshot(start(actionDigest)), Code.RESOURCE_EXHAUSTED);
  });

  it('limits queued actions per instance, naming the limit, and frees room when a worker takes one', async () => {
    setup({ maxQueuedActionsPerInstance: 2 });
    for (const a of ['a', 'b']) {
      const { actionDigest } = await uploadAction(stores.cas, { args: [a], instanceName: 'main' });
      await nextSnapshot(start(actionDigest));
    }
    const third = await uploadAction(stores.cas, { args: ['c'], instanceName: 'main' });
    const err = await expectStatus(nextSnapshot(start(third.actionDigest)), Code.RESOURCE_EXHAUSTED);
    expect(err.message).toContain('scheduler.max_queued_actions_per_instance');
    expect(err.message).toContain('"main"');
    // Another instance has its own room.
    const other = await uploadAction(stores.cas, { args: ['c'], instanceName: 'other' });
    expect((await nextSnapshot(start(other.actionDigest))).stage).toBe('QUEUED');
    // A worker takes one of main's: main may queue again.
    expect((await sync('w1', { slots: 1 })).tasks).toHaveLength(1);
    expect((await nextSnapshot(start(third.actionDigest))).stage).toBe('QUEUED');
  });

  it('limits queued bytes per instance, counting the Action and Command', async () => {
    const first = await uploadAction(stores.cas, { args: ['a'.repeat(1000)], instanceName: 'main' });
    const second = await uploadAction(stores.cas, { args: ['b'.repeat(1000)], instanceName: 'main' });
    // Room for one action of this size, not two.
    setup({ maxQueuedBytesPerInstance: 1500 });
    const queued = await nextSnapshot(start(first.actionDigest));
    expect(queued.stage).toBe('QUEUED');
    const err = await expectStatus(nextSnapshot(start(second.actionDigest)), Code.RESOURCE_EXHAUSTED);
    expect(err.message).toContain('scheduler.max_queued_bytes_per_instance');
    // Cancelling the queued one frees its bytes.
    queue.cancelOperation(queued.name);
    expect((await nextSnapshot(start(second.actionDigest))).stage).toBe('QUEUED');
  });
});

describe('InMemoryBuildQueue: platforms', () => {
  it('runs an action only on a worker offering all of its properties', async () => {
    const { actionDigest } = await uploadAction(stores.cas, {
      platform: [
        ['OSFamily', 'linux'],
        ['ISA', 'x86-64-v3'],
      ],
    });
    await nextSnapshot(start(actionDigest));
    const partial = sync('partial', { platform: [['OSFamily', 'linux']] });
    expect(await isSettled(partial)).toBe(false);
    const capable = await sync('capable', {
      platform: [
        ['OSFamily', 'linux'],
        ['ISA', 'x86-64'],
        ['ISA', 'x86-64-v3'],
        ['pool', 'default'],
      ],
    });
    expect(capable.tasks).toHaveLength(1);
    await clock.advance(10_000);
    expect((await partial).tasks).toEqual([]);
  });

  it('falls back to the deprecated Command.platform when the Action has none', async () => {
    const { actionDigest } = await uploadAction(stores.cas, { commandPlatform: [['OSFamily', 'windows']] });
    await nextSnapshot(start(actionDigest));
    const linux = sync('linux', { platform: [['OSFamily', 'linux']] });
    expect(await isSettled(linux)).toBe(false);
    expect((await sync('windows', { platform: [['OSFamily', 'windows']] })).tasks).toHaveLength(1);
  });

  it('fails an action no connected worker can run after platformQueueTimeoutMs', async () => {
    const { actionDigest } = await uploadAction(stores.cas, { platform: [['gpu', 'a100']] });
    const op = start(actionDigest);
    const queued = await nextSnapshot(op);
    void sync('cpu-only', { platform: [['OSFamily', 'linux']] });
    await clock.advance(59_000);
    expect(queue.getOperation(queued.name).stage).toBe('QUEUED');
    await clock.advance(2_000);
    const done = await untilCompleted(op);
    expect(done.response?.status?.code).toBe(Code.FAILED_PRECONDITION);
    expect(done.response?.status?.message).toContain('gpu=a100');
  });
});

describe('InMemoryBuildQueue: worker loss', () => {
  it('by default requeues a silent worker\'s task after the 5 s worker grace, not a 30 s lease', async () => {
    setup({});
    const { actionDigest } = await uploadAction(stores.cas);
    const op = start(actionDigest);
    const { name } = await nextSnapshot(op);
    expect((await sync('frozen')).tasks).toHaveLength(1);
    expect((await nextSnapshot(op)).stage).toBe('EXECUTING');
    await clock.advance(4_000);
    expect(queue.getOperation(name).stage).toBe('EXECUTING');
    await clock.advance(2_000);
    expect((await nextSnapshot(op)).stage).toBe('QUEUED');
    expect((await sync('healthy')).tasks).toHaveLength(1);
  });

  it('requeues the task of a worker whose lease expires, then fails with UNAVAILABLE after maxAttempts', async () => {
    setup({ maxAttempts: 2, workerLeaseMs: 5_000 });
    const { actionDigest } = await uploadAction(stores.cas);
    const op = start(actionDigest);
    await nextSnapshot(op);

    // Attempt 1: w1 takes the task and goes silent.
    const first = await sync('w1');
    expect(first.tasks).toHaveLength(1);
    expect((await nextSnapshot(op)).stage).toBe('EXECUTING');
    await clock.advance(6_000);
    expect((await nextSnapshot(op)).stage).toBe('QUEUED');
    expect(queue.stats().workers).toBe(0);

    // Attempt 2 under a new task id: w2 takes it and goes silent too.
    const second = await sync('w2');
    expect(second.tasks![0]!.taskId).not.toBe(first.tasks![0]!.taskId);
    await clock.advance(6_000);
    const done = await untilCompleted(op);
    expect(done.response?.status?.code).toBe(Code.UNAVAILABLE);

    // A late result from the lost worker is refused (its task is gone) and changes nothing.
    await expectStatus(queue.completeTask({ workerId: 'w1', taskId: first.tasks![0]!.taskId, leaseToken: first.tasks![0]!.leaseToken, response: okResponse() }), Code.NOT_FOUND);
    expect(queue.getOperation(done.name).response?.status?.code).toBe(Code.UNAVAILABLE);
  });

  it('requeues a task its worker reports as UNAVAILABLE (e.g. shutting down) and runs it elsewhere', async () => {
    const { actionDigest } = await uploadAction(stores.cas);
    const op = start(actionDigest);
    await nextSnapshot(op);
    const first = await sync('w1');
    expect((await nextSnapshot(op)).stage).toBe('EXECUTING');

    // w1 stops before running it and says so.
    await queue.completeTask({
      workerId: 'w1',
      taskId: first.tasks![0]!.taskId, leaseToken: first.tasks![0]!.leaseToken,
      response: { status: StatusError.unavailable('Worker is shutting down').toProto() },
    });
    expect((await nextSnapshot(op)).stage).toBe('QUEUED');

    // w2 takes the new attempt and finishes it.
    const second = await sync('w2');
    expect(second.tasks).toHaveLength(1);
    await queue.completeTask({ workerId: 'w2', taskId: second.tasks![0]!.taskId, leaseToken: second.tasks![0]!.leaseToken, response: okResponse() });
    const done = await untilCompleted(op);
    expect(done.response?.status?.code ?? Code.OK).toBe(Code.OK);
  });

  it('keeps a worker alive while its long-poll is outstanding', async () => {
    setup({ workerLeaseMs: 5_000, longPollMs: 60_000 });
    const { actionDigest } = await uploadAction(stores.cas);
    const op = start(actionDigest);
    await nextSnapshot(op);
    const res = await sync('w1', { slots: 2 });
    void sync('w1', { slots: 2, running: [res.tasks![0]!.taskId!] });
    await clock.advance(20_000);
    expect((await nextSnapshot(op)).stage).toBe('EXECUTING');
    expect(queue.stats().workers).toBe(1);
  });

  it('requeues a task the worker stops reporting after a full Synchronize round', async () => {
    const { actionDigest } = await uploadAction(stores.cas);
    const op = start(actionDigest);
    await nextSnapshot(op);
    const res = await sync('w1', { slots: 1 });
    const taskId = res.tasks![0]!.taskId!;
    // The next call may not list it yet (the task was handed out in answer to the previous call).
    const held = sync('w1', { slots: 1, running: [] });
    expect(await isSettled(held)).toBe(false);
    expect(queue.stats().executingOperations).toBe(1);
    // One round later it is lost: requeued and, the slot being free, handed out again.
    const again = await sync('w1', { slots: 1, running: [] });
    expect(again.tasks).toHaveLength(1);
    expect(again.tasks![0]!.taskId).not.toBe(taskId);
  });

  it('asks a worker once to cancel a task it runs that the scheduler does not know', async () => {
    const res = await sync('w1', { running: ['stale-task'] });
    expect(res.cancelTaskIds).toEqual(['stale-task']);
    // While the worker still lists it (killing, reporting), the call is held rather than answered again.
    const held = sync('w1', { running: ['stale-task'] });
    expect(await isSettled(held)).toBe(false);
    await clock.advance(10_000);
    expect((await held).cancelTaskIds).toEqual([]);
  });
});

describe('InMemoryBuildQueue: cancellation', () => {
  it('completes a queued operation with CANCELLED at once', async () => {
    const { actionDigest } = await uploadAction(stores.cas);
    const op = start(actionDigest);
    const queued = await nextSnapshot(op);
    queue.cancelOperation(queued.name);
    const done = await untilCompleted(op);
    expect(done.response?.status?.code).toBe(Code.CANCELLED);
    expect(queue.stats().queuedOperations).toBe(0);
    // Nothing is left for a worker.
    const poll = sync('w1');
    expect(await isSettled(poll)).toBe(false);
  });

  it('tells the worker to kill an executing task and completes with CANCELLED when it reports', async () => {
    const { actionDigest } = await uploadAction(stores.cas);
    const op = start(actionDigest);
    await nextSnapshot(op);
    const res = await sync('w1');
    const taskId = res.tasks![0]!.taskId!;
    const executing = await nextSnapshot(op);
    const poll = sync('w1', { running: [taskId] });
    expect(await isSettled(poll)).toBe(false);

    queue.cancelOperation(executing.name);
    // The held poll is answered at once with the cancellation.
    expect((await poll).cancelTaskIds).toEqual([taskId]);
    expect(queue.getOperation(executing.name).stage).toBe('EXECUTING');

    await queue.completeTask({ workerId: 'w1', taskId, leaseToken: res.tasks![0]!.leaseToken, response: okResponse(0) });
    const done = await untilCompleted(op);
    expect(done.response?.status?.code).toBe(Code.CANCELLED);
    await expectStatus(stores.actionCache.getActionResult(actionDigest), Code.NOT_FOUND);
  });

  it('completes an executing operation with CANCELLED at once when its worker is gone', async () => {
    setup({ workerLeaseMs: 5_000, maxAttempts: 1 });
    const { actionDigest } = await uploadAction(stores.cas);
    const op = start(actionDigest);
    const queued = await nextSnapshot(op);
    await sync('w1');
    // The worker has no call outstanding; cancel before the lease runs out.
    queue.cancelOperation(queued.name);
    await clock.advance(6_000);
    const done = await untilCompleted(op);
    expect(done.response?.status?.code).toBe(Code.CANCELLED);
  });

  it('does nothing for a finished operation and NOT_FOUND for an unknown one', async () => {
    const { actionDigest } = await uploadAction(stores.cas);
    await stores.actionCache.updateActionResult(actionDigest, { exitCode: 0 });
    const done = await nextSnapshot(start(actionDigest));
    queue.cancelOperation(done.name);
    expect(queue.getOperation(done.name).response?.cachedResult).toBe(true);
    expect(() => queue.cancelOperation('operations/unknown')).toThrow(StatusError);
  });
});

describe('InMemoryBuildQueue: following operations', () => {
  it('repeats the current state every 30 s while waiting', async () => {
    const { actionDigest } = await uploadAction(stores.cas);
    const op = start(actionDigest);
    const first = await nextSnapshot(op);
    const next = nextSnapshot(op);
    await clock.advance(29_000);
    expect(await isSettled(next)).toBe(false);
    await clock.advance(1_000);
    const again = await next;
    expect(again).toMatchObject({ name: first.name, stage: 'QUEUED' });
  });

  it('lets WaitExecution reattach: current state at once, then updates', async () => {
    const { actionDigest } = await uploadAction(stores.cas);
    const queued = await nextSnapshot(start(actionDigest));
    const follower = queue.waitExecution(queued.name)[Symbol.asyncIterator]();
    expect((await nextSnapshot(follower)).stage).toBe('QUEUED');
    const res = await sync('w1');
    expect((await nextSnapshot(follower)).stage).toBe('EXECUTING');
    await queue.completeTask({ workerId: 'w1', taskId: res.tasks![0]!.taskId, leaseToken: res.tasks![0]!.leaseToken, response: okResponse() });
    expect((await nextSnapshot(follower)).stage).toBe('COMPLETED');
    expect((await follower.next()).done).toBe(true);
  });

  it('fails WaitExecution and GetOperation with NOT_FOUND for unknown names', async () => {
    await expectStatus(queue.waitExecution('operations/nope')[Symbol.asyncIterator]().next(), Code.NOT_FOUND);
    expect(() => queue.getOperation('operations/nope')).toThrow(/Failed to find operation/);
  });

  it('waitOperation resolves when done, or with the current state at the timeout', async () => {
    const { actionDigest } = await uploadAction(stores.cas);
    const queued = await nextSnapshot(start(actionDigest));
    const timedOut = queue.waitOperation(queued.name, 5_000);
    await clock.advance(5_000);
    expect((await timedOut).stage).toBe('QUEUED');

    const waiting = queue.waitOperation(queued.name, 60_000);
    const res = await sync('w1');
    await queue.completeTask({ workerId: 'w1', taskId: res.tasks![0]!.taskId, leaseToken: res.tasks![0]!.leaseToken, response: okResponse() });
    expect((await waiting).stage).toBe('COMPLETED');
  });

  it('lists operations in pages in creation order', async () => {
    const names: string[] = [];
    for (const a of ['a', 'b', 'c', 'd', 'e']) {
      const { actionDigest } = await uploadAction(stores.cas, { args: [a] });
      names.push((await nextSnapshot(start(actionDigest))).name);
    }
    const seen: string[] = [];
    let pageToken = '';
    for (let i = 0; i < 5; i++) {
      const page = queue.listOperations({ pageSize: 2, pageToken });
      seen.push(...page.operations.map((o) => o.name));
      pageToken = page.nextPageToken;
      if (!pageToken) break;
    }
    expect(seen).toEqual(names);
    expect(queue.listOperations({ filter: 'done=true' }).operations).toEqual([]);
    expect(() => queue.listOperations({ filter: 'stage=QUEUED' })).toThrow(StatusError);
  });

  it('forgets finished operations after keepCompletedMs, or on DeleteOperation', async () => {
    setup({ keepCompletedMs: 10_000 });
    const { actionDigest } = await uploadAction(stores.cas);
    await stores.actionCache.updateActionResult(actionDigest, { exitCode: 0 });
    const a = await nextSnapshot(start(actionDigest));
    const b = await nextSnapshot(start(actionDigest));
    queue.deleteOperation(b.name);
    expect(() => queue.getOperation(b.name)).toThrow(/unknown or has expired/);
    await clock.advance(9_000);
    expect(queue.getOperation(a.name).stage).toBe('COMPLETED');
    await clock.advance(2_000);
    expect(() => queue.getOperation(a.name)).toThrow(/unknown or has expired/);
  });

  it('refuses to delete a running operation', async () => {
    const { actionDigest } = await uploadAction(stores.cas);
    const queued = await nextSnapshot(start(actionDigest));
    expect(() => queue.deleteOperation(queued.name)).toThrow(/has not finished/);
  });

  it('ends followers with UNAVAILABLE on close', async () => {
    const { actionDigest } = await uploadAction(stores.cas);
    const op = start(actionDigest);
    await nextSnapshot(op);
    const next = nextSnapshot(op);
    queue.close();
    await expectStatus(next, Code.UNAVAILABLE);
  });
});
