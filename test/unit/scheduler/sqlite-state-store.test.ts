/**
 * The build queue over a SQLite state store: what a scheduler restarted on the same file still
 * knows (issue 12). A "crash" here is dropping the queue and closing the connection without any
 * shutdown step of the queue: every state change was committed when it happened, which is exactly
 * what a SIGKILL leaves behind (the kill -9 of a real process is in test/e2e/scheduler-restart).
 * The same flows also run over `memory` to show the store changes nothing a client sees.
 */
import * as fs from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Code, StatusError } from '../../../src/lib/errors/status-error.js';
import type { workerapi } from '../../../src/lib/proto/index.js';
import { createStateStore } from '../../../src/lib/scheduler/create-state-store.js';
import type { InMemoryBuildQueue, InMemoryBuildQueueOptions } from '../../../src/lib/scheduler/in-memory-build-queue.js';
import type { OperationSnapshot } from '../../../src/lib/scheduler/operation-snapshot.js';
import { SqliteStateStore } from '../../../src/lib/scheduler/sqlite-state-store.js';
import type { SchedulerStateStore } from '../../../src/lib/scheduler/state-store.js';
import { FakeClock } from '../../../src/lib/util/clock.js';
import { createQueue, createStores, flush, nextSnapshot, okResponse, type TestStores, untilCompleted, uploadAction } from './scheduler-fixtures.js';

let dir: string;
let dbPath: string;
let stores: TestStores;
let clock: FakeClock;
const open: { queue: InMemoryBuildQueue; state: SchedulerStateStore }[] = [];

beforeEach(async () => {
  dir = await fs.mkdtemp(path.join(tmpdir(), 'bzutil-state-'));
  dbPath = path.join(dir, 'sub', 'scheduler.db');
  stores = createStores();
  clock = new FakeClock(1_700_000_000_000);
});

afterEach(async () => {
  for (const { queue, state } of open.splice(0)) {
    queue.close();
    state.close();
  }
  await fs.rm(dir, { recursive: true, force: true });
});

/** A scheduler on `setting`; ids are prefixed by `generation` so a restarted one names things anew. */
function startScheduler(setting: string, generation: number, opts: Partial<InMemoryBuildQueueOptions> = {}): InMemoryBuildQueue {
  const state = createStateStore(setting);
  let next = 0;
  const { queue } = createQueue(stores, { clock, state, newId: () => `g${generation}-${++next}`, ...opts });
  open.push({ queue, state });
  return queue;
}

/** Drops the newest scheduler the way SIGKILL would: no queue shutdown, the file as last committed. */
function crash(): void {
  const { state } = open.pop()!;
  state.close();
}

function sync(queue: InMemoryBuildQueue, workerId: string, running: string[] = []): Promise<workerapi.ISynchronizeResponse> {
  return queue.synchronize({ workerId, workerName: workerId, slots: 1, platform: { properties: [] }, runningTaskIds: running });
}

async function queued(queue: InMemoryBuildQueue, args: string[]): Promise<{ name: string; stream: AsyncIterator<OperationSnapshot> }> {
  const { actionDigest } = await uploadAction(stores.cas, { args });
  const stream = queue.execute({ actionDigest, skipCacheLookup: false, priority: 0 })[Symbol.asyncIterator]();
  const first = await nextSnapshot(stream);
  expect(first.stage).toBe('QUEUED');
  return { name: first.name, stream };
}

describe.each(['memory', 'sqlite'])('the build queue over %s state', (kind) => {
  const setting = () => (kind === 'memory' ? 'memory' : `sqlite:${dbPath}`);

  it('queues, hands out (Action and Command intact) and completes', async () => {
    const queue = startScheduler(setting(), 1);
    const op = await queued(queue, ['/bin/echo', kind]);
    const task = (await sync(queue, 'w1')).tasks![0]!;
    expect(task.command?.arguments).toEqual(['/bin/echo', kind]);
    expect(task.inputDirectories).toHaveLength(3);
    expect(task.operationName).toBe(op.name);
    await queue.completeTask({ workerId: 'w1', taskId: task.taskId, leaseToken: task.leaseToken, response: okResponse(0, 'out') });
    const done = await untilCompleted(op.stream);
    expect(done.response?.result?.exitCode).toBe(0);
    expect(queue.getOperation(op.name).stage).toBe('COMPLETED');
  });
});

describe('scheduler-side deadlines', () => {
  it('fails a task running past its timeout plus the grace with DEADLINE_EXCEEDED, tells the worker to cancel, ignores a late result', async () => {
    const queue = startScheduler(`sqlite:${dbPath}`, 1, { workerGraceMs: 5_000, workerLeaseMs: 60_000, sweepIntervalMs: 1_000 });
    const { actionDigest } = await uploadAction(stores.cas, { args: ['slow'], timeoutMs: 10_000 });
    const stream = queue.execute({ actionDigest, skipCacheLookup: false, priority: 0 })[Symbol.asyncIterator]();
    const name = (await nextSnapshot(stream)).name;
    const task = (await sync(queue, 'w1')).tasks![0]!;
    await clock.advance(14_000);
    expect(queue.getOperation(name).stage).toBe('EXECUTING');
    await clock.advance(1_000);
    const done = queue.getOperation(name);
    expect(done.stage).toBe('COMPLETED');
    expect(done.response?.status?.code).toBe(Code.DEADLINE_EXCEEDED);
    expect((await sync(queue, 'w1', [task.taskId])).cancelTaskIds).toEqual([task.taskId]);
    // The lease ended with the deadline: a late result is refused as a task the scheduler no longer has.
    await expect(queue.completeTask({ workerId: 'w1', taskId: task.taskId, leaseToken: task.leaseToken, response: okResponse() })).rejects.toMatchObject({ code: Code.NOT_FOUND });
    expect(queue.getOperation(name).response?.status?.code).toBe(Code.DEADLINE_EXCEEDED);
  });
});

describe('SqliteStateStore: restart on the same file', () => {
  const setting = () => `sqlite:${dbPath}`;

  it('answers every operation named before, and a queued action stays queued and completes', async () => {
    const first = startScheduler(setting(), 1);
    const finished = await queued(first, ['finished']);
    const task = (await sync(first, 'w1')).tasks![0]!;
    await first.completeTask({ workerId: 'w1', taskId: task.taskId, leaseToken: task.leaseToken, response: okResponse(0, 'first') });
    await untilCompleted(finished.stream);
    const waiting = await queued(first, ['waiting']);
    crash();

    const second = startScheduler(setting(), 2);
    expect(second.stats()).toMatchObject({ operations: 2, queuedOperations: 1 });
    const before = second.getOperation(finished.name);
    expect(before.stage).toBe('COMPLETED');
    expect(Buffer.from(before.response!.result!.stdoutRaw!).toString()).toBe('first');
    expect(second.getOperation(waiting.name).stage).toBe('QUEUED');

    // The queued one: its Action and Command come back from the file, and WaitExecution reattaches.
    const follow = second.waitExecution(waiting.name)[Symbol.asyncIterator]();
    expect((await nextSnapshot(follow)).stage).toBe('QUEUED');
    const again = (await sync(second, 'w1')).tasks![0]!;
    expect(again.command?.arguments).toEqual(['waiting']);
    expect(again.operationName).toBe(waiting.name);
    await second.completeTask({ workerId: 'w1', taskId: again.taskId, leaseToken: again.leaseToken, response: okResponse(0, 'second') });
    const done = await untilCompleted(follow);
    expect(Buffer.from(done.response!.result!.stdoutRaw!).toString()).toBe('second');

    // New operations do not reuse the restored sequence numbers (ListOperations order).
    const third = await queued(second, ['third']);
    const names = second.listOperations({}).operations.map((o) => o.name);
    expect(names).toEqual([finished.name, waiting.name, third.name]);
  });

  it('accepts the result of a running action whose worker comes back within the grace', async () => {
    const first = startScheduler(setting(), 1);
    const op = await queued(first, ['long']);
    const task = (await sync(first, 'w1')).tasks![0]!;
    crash();

    const second = startScheduler(setting(), 2, { workerGraceMs: 5_000 });
    expect(second.getOperation(op.name).stage).toBe('EXECUTING');
    await clock.advance(4_000);
    // The worker still runs it and says so: it keeps its lease.
    const poll = sync(second, 'w1', [task.taskId]);
    await flush();
    await second.completeTask({ workerId: 'w1', taskId: task.taskId, leaseToken: task.leaseToken, response: okResponse(0, 'kept') });
    await clock.advance(30_000);
    await poll;
    const done = second.getOperation(op.name);
    expect(done.stage).toBe('COMPLETED');
    expect(Buffer.from(done.response!.result!.stdoutRaw!).toString()).toBe('kept');
  });

  it('requeues at once under the same name when the worker comes back without the task (it restarted)', async () => {
    const first = startScheduler(setting(), 1);
    const op = await queued(first, ['lost']);
    const task = (await sync(first, 'w1')).tasks![0]!;
    crash();

    const second = startScheduler(setting(), 2);
    const response = await sync(second, 'w1', []);
    expect(response.tasks).toHaveLength(1);
    expect(response.tasks![0]!.taskId).not.toBe(task.taskId);
    expect(response.tasks![0]!.operationName).toBe(op.name);
  });

  it('requeues a running action past the grace when its worker does not come back', async () => {
    const first = startScheduler(setting(), 1);
    const op = await queued(first, ['orphan']);
    await sync(first, 'w1');
    crash();

    const second = startScheduler(setting(), 2, { workerGraceMs: 2_000, sweepIntervalMs: 500 });
    await clock.advance(1_000);
    expect(second.getOperation(op.name).stage).toBe('EXECUTING');
    await clock.advance(1_500);
    expect(second.getOperation(op.name).stage).toBe('QUEUED');
    const other = (await sync(second, 'w2')).tasks![0]!;
    expect(other.operationName).toBe(op.name);
  });

  it('forgets finished operations after the retention, also across a restart', async () => {
    const first = startScheduler(setting(), 1, { keepCompletedMs: 60_000 });
    const op = await queued(first, ['short-lived']);
    const task = (await sync(first, 'w1')).tasks![0]!;
    await first.completeTask({ workerId: 'w1', taskId: task.taskId, leaseToken: task.leaseToken, response: okResponse() });
    crash();

    const second = startScheduler(setting(), 2, { keepCompletedMs: 60_000, sweepIntervalMs: 1_000 });
    expect(second.getOperation(op.name).stage).toBe('COMPLETED');
    await clock.advance(61_000);
    expect(() => second.getOperation(op.name)).toThrow(expect.objectContaining({ code: Code.NOT_FOUND }));
    crash();
    const third = startScheduler(setting(), 3);
    expect(() => third.getOperation(op.name)).toThrow(StatusError);
    expect(third.stats().operations).toBe(0);
  });

  it('keeps a queued Action out of memory and drops it from the file once done', async () => {
    const queue = startScheduler(setting(), 1);
    await queued(queue, ['stored']);
    const state = open[0]!.state;
    expect(state.loadAction(0)?.command.arguments).toEqual(['stored']);
    const task = (await sync(queue, 'w1')).tasks![0]!;
    await queue.completeTask({ workerId: 'w1', taskId: task.taskId, leaseToken: task.leaseToken, response: okResponse() });
    expect(state.loadAction(0)).toBeUndefined();
  });

  it('refuses a second process on the same file with a clear message, and opens it once the first is gone', () => {
    const a = new SqliteStateStore(dbPath);
    let err: unknown;
    try {
      new SqliteStateStore(dbPath).close();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StatusError);
    expect((err as StatusError).code).toBe(Code.FAILED_PRECONDITION);
    expect((err as StatusError).message).toMatch(/in use by another bzutil scheduler/);
    expect((err as StatusError).message).not.toContain(dir);
    a.close();
    new SqliteStateStore(dbPath).close();
  });

  it('versions its schema, and refuses a file written by a newer bzutil', () => {
    new SqliteStateStore(dbPath).close();
    const db = new Database(dbPath);
    expect(db.pragma('user_version', { simple: true })).toBe(SqliteStateStore.schemaVersion);
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    db.pragma(`user_version = ${SqliteStateStore.schemaVersion + 1}`);
    db.close();
    expect(() => new SqliteStateStore(dbPath)).toThrow(/newer than this bzutil/);
  });

  it('refuses an unknown state setting', () => {
    expect(() => createStateStore('redis://localhost:6379')).toThrow(expect.objectContaining({ code: Code.INVALID_ARGUMENT }));
  });
});
