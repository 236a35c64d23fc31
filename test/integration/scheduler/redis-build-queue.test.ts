/**
 * RedisBuildQueue against a real redis-server (started on a free loopback port): two queue
 * instances on one Redis play two schedulers of a fleet. Each sees the other's operations, claims
 * are exactly-once under contention, a silent worker's lease expires and its action is requeued
 * under the same operation name, and a follower on one scheduler is woken by a completion on the
 * other. No timing is asserted: waits are bounded loops on outcomes.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Code, StatusError } from '../../../src/lib/errors/status-error.js';
import type { workerapi } from '../../../src/lib/proto/index.js';
import type { OperationSnapshot } from '../../../src/lib/scheduler/operation-snapshot.js';
import { RedisBuildQueue, type RedisBuildQueueOptions } from '../../../src/lib/scheduler/redis/redis-build-queue.js';
import { parseRedisUrl } from '../../../src/lib/scheduler/redis/redis-url.js';
import { startScheduler } from '../../../src/server/scheduler.js';
import { silentLogger } from '../../../src/lib/util/logger.js';
import { hasRedisServer, type RedisServer, startRedis } from '../../helpers/redis-server.js';
import { createStores, nextSnapshot, okResponse, type TestStores, untilCompleted, uploadAction } from '../../unit/scheduler/scheduler-fixtures.js';

const available = hasRedisServer();
if (!available) console.warn('SKIPPING redis-build-queue tests: redis-server is not installed (CI installs it)');

describe.skipIf(!available)('RedisBuildQueue (two schedulers on one Redis)', () => {
  let redis: RedisServer;
  let stores: TestStores;
  let prefix: string;
  let testNo = 0;
  const queues: RedisBuildQueue[] = [];

  beforeAll(async () => {
    redis = await startRedis();
  }, 30_000);
  afterAll(async () => {
    await redis?.stop();
  });
  beforeEach(() => {
    stores = createStores();
    // A fresh key space per test on the shared redis-server.
    prefix = `test${++testNo}:`;
  });
  afterEach(() => {
    for (const q of queues.splice(0)) q.disconnect();
  });

  async function open(opts: Partial<RedisBuildQueueOptions> = {}): Promise<RedisBuildQueue> {
    const queue = await RedisBuildQueue.open({
      contentAddressableStorage: stores.cas,
      actionCache: stores.actionCache,
      redis: parseRedisUrl(redis.url),
      keyPrefix: prefix,
      sweepIntervalMs: 50,
      workerGraceMs: 400,
      longPollMs: 2_000,
      keepAliveMs: 5_000,
      ...opts,
    });
    queues.push(queue);
    return queue;
  }

  function sync(queue: RedisBuildQueue, workerId: string, opts: { slots?: number; running?: string[]; waitMs?: number; platform?: [string, string][] } = {}): Promise<workerapi.ISynchronizeResponse> {
    const waitMs = opts.waitMs ?? 1;
    return queue.synchronize({
      workerId,
      workerName: `${workerId}-name`,
      slots: opts.slots ?? 1,
      runningTaskIds: opts.running ?? [],
      platform: { properties: (opts.platform ?? []).map(([name, value]) => ({ name, value })) },
      maxWait: { seconds: Math.floor(waitMs / 1000), nanos: (waitMs % 1000) * 1e6 },
    });
  }

  /** Starts an execution and returns its follower after the QUEUED snapshot. */
  async function submit(queue: RedisBuildQueue, args: string[], extra: { priority?: number; platform?: [string, string][]; timeoutMs?: number } = {}) {
    const action = await uploadAction(stores.cas, { args, ...(extra.platform ? { platform: extra.platform } : {}), ...(extra.timeoutMs !== undefined ? { timeoutMs: extra.timeoutMs } : {}) });
    const it = queue.execute({ actionDigest: action.actionDigest, skipCacheLookup: false, priority: extra.priority ?? 0 })[Symbol.asyncIterator]();
    let first = await nextSnapshot(it);
    while (first.stage !== 'QUEUED') first = await nextSnapshot(it);
    return { it, name: first.name, action };
  }

  async function eventually<T>(probe: () => Promise<T | undefined>, what: string, attempts = 200): Promise<T> {
    for (let i = 0; i < attempts; i++) {
      const value = await probe();
      if (value !== undefined) return value;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`Gave up waiting for ${what}`);
  }

  it('lets scheduler B answer, list and cancel the operations of scheduler A', async () => {
    const a = await open();
    const b = await open();
    const queued = await submit(a, ['/bin/echo', 'one']);

    const seen = await b.getOperation(queued.name);
    expect(seen.stage).toBe('QUEUED');
    expect(seen.actionDigest.hash).toBe(queued.action.actionDigest.hash);
    const listed = await b.listOperations({ filter: 'done=false' });
    expect(listed.operations.map((o) => o.name)).toEqual([queued.name]);

    await b.cancelOperation(queued.name);
    const done = await untilCompleted(queued.it);
    expect(done.response?.status?.code).toBe(Code.CANCELLED);
    expect((await a.getOperation(queued.name)).stage).toBe('COMPLETED');
    await expect(b.getOperation('operations/unknown')).rejects.toMatchObject({ code: Code.NOT_FOUND });
  });

  it('deduplicates an in-flight action across schedulers', async () => {
    const a = await open();
    const b = await open();
    const first = await submit(a, ['/bin/echo', 'same']);
    const second = await submit(b, ['/bin/echo', 'same']);
    expect(second.name).not.toBe(first.name);

    const [task] = (await sync(b, 'w1')).tasks!;
    expect(task).toBeDefined();
    await a.completeTask({ taskId: task!.taskId, workerId: 'w1', leaseToken: task!.leaseToken, response: okResponse(0, 'shared') });
    for (const follower of [first, second]) {
      const done = await untilCompleted(follower.it);
      expect(done.response?.status?.code ?? 0).toBe(Code.OK);
      expect(done.response?.result?.executionMetadata?.worker).toBe('w1');
    }
    // Nothing else was queued: a second claim finds no work.
    expect((await sync(a, 'w2')).tasks).toEqual([]);
  });

  it('hands every queued action to exactly one of the workers polling both schedulers', async () => {
    const a = await open();
    const b = await open();
    const count = 24;
    const submitted = [];
    for (let i = 0; i < count; i++) submitted.push(await submit(i % 2 ? a : b, ['/bin/echo', `job-${i}`]));

    // Six workers, three per scheduler, all claiming at once until the queue is empty.
    const claimed: string[] = [];
    await Promise.all(
      ['w1', 'w2', 'w3', 'w4', 'w5', 'w6'].map(async (workerId, i) => {
        const queue = i % 2 ? a : b;
        for (let round = 0; round < count; round++) {
          const response = await sync(queue, workerId, { slots: 2 });
          for (const task of response.tasks!) {
            claimed.push(task.operationName!);
            await queue.completeTask({ taskId: task.taskId, workerId, leaseToken: task.leaseToken, response: okResponse() });
          }
          if (response.tasks!.length === 0) break;
        }
      }),
    );
    expect(claimed.length).toBe(count);
    expect(new Set(claimed).size).toBe(count);
    expect(new Set(claimed)).toEqual(new Set(submitted.map((s) => s.name)));
  });

  it('hands out lower priority values first, across schedulers', async () => {
    const a = await open();
    const b = await open();
    const low = await submit(a, ['/bin/echo', 'later'], { priority: 5 });
    const high = await submit(b, ['/bin/echo', 'first'], { priority: -5 });
    const first = (await sync(a, 'w1')).tasks![0]!;
    expect(first.operationName).toBe(high.name);
    const second = (await sync(b, 'w2')).tasks![0]!;
    expect(second.operationName).toBe(low.name);
  });

  it('matches platforms: a worker gets only actions whose properties it offers', async () => {
    const a = await open();
    const gpu = await submit(a, ['/bin/echo', 'gpu'], { platform: [['gpu', 'yes']] });
    expect((await sync(a, 'plain')).tasks).toEqual([]);
    const task = (await sync(a, 'gpu-worker', { platform: [['gpu', 'yes'], ['OSFamily', 'Linux']] })).tasks![0];
    expect(task?.operationName).toBe(gpu.name);
  });

  it('wakes a follower on scheduler B when a worker completes on scheduler A', async () => {
    const a = await open();
    const b = await open();
    const queued = await submit(a, ['/bin/echo', 'wake']);
    const follower = b.waitExecution(queued.name)[Symbol.asyncIterator]();
    expect((await nextSnapshot(follower)).stage).toBe('QUEUED');

    const task = (await sync(a, 'w1')).tasks![0]!;
    expect((await nextSnapshot(follower)).stage).toBe('EXECUTING');
    await a.completeTask({ taskId: task.taskId, workerId: 'w1', leaseToken: task.leaseToken, response: okResponse(0, 'from A') });
    const done = await untilCompleted(follower);
    expect(Buffer.from(done.response!.result!.stdoutRaw!).toString()).toBe('from A');
  });

  it('wakes a worker held on scheduler B when work is queued on scheduler A', async () => {
    const a = await open();
    const b = await open();
    const held = sync(b, 'w1', { waitMs: 5_000 });
    const queued = await submit(a, ['/bin/echo', 'held']);
    const response = await held;
    expect(response.tasks!.map((t) => t.operationName)).toEqual([queued.name]);
  });

  it('requeues the action of a worker not heard from within its grace, under the same operation', async () => {
    const a = await open();
    const b = await open();
    const queued = await submit(a, ['/bin/echo', 'lost']);
    const lost = (await sync(a, 'w-lost')).tasks![0]!;
    expect((await b.getOperation(queued.name)).stage).toBe('EXECUTING');

    // w-lost never calls again: the sweepers requeue its task once the grace has passed.
    await eventually(async () => ((await b.getOperation(queued.name)).stage === 'QUEUED' ? true : undefined), 'the task to be requeued');
    const retry = (await sync(b, 'w-new')).tasks![0]!;
    expect(retry.operationName).toBe(queued.name);
    expect(retry.taskId).not.toBe(lost.taskId);

    // The lost worker's late result is refused; the new one's is accepted.
    await expect(a.completeTask({ taskId: lost.taskId, workerId: 'w-lost', leaseToken: lost.leaseToken, response: okResponse(0, 'late') })).rejects.toMatchObject({ code: Code.NOT_FOUND });
    await b.completeTask({ taskId: retry.taskId, workerId: 'w-new', leaseToken: retry.leaseToken, response: okResponse(0, 'retried') });
    const done = await untilCompleted(queued.it);
    expect(Buffer.from(done.response!.result!.stdoutRaw!).toString()).toBe('retried');
  });

  it('keeps the lease of a worker that moves to scheduler B within its grace', async () => {
    const a = await open({ workerGraceMs: 3_000 });
    const b = await open({ workerGraceMs: 3_000 });
    const queued = await submit(a, ['/bin/echo', 'moved']);
    const task = (await sync(a, 'w1')).tasks![0]!;
    a.close(); // scheduler A goes away

    // The worker reports to B, still listing its task (twice: a task missing from the list after the
    // call that handed it out would count as lost).
    expect((await sync(b, 'w1', { running: [task.taskId] })).cancelTaskIds).toEqual([]);
    expect((await sync(b, 'w1', { running: [task.taskId] })).cancelTaskIds).toEqual([]);
    expect((await b.getOperation(queued.name)).stage).toBe('EXECUTING');
    await b.completeTask({ taskId: task.taskId, workerId: 'w1', leaseToken: task.leaseToken, response: okResponse(0, 'kept') });
    const done = await b.getOperation(queued.name);
    expect(done.stage).toBe('COMPLETED');
    expect(Buffer.from(done.response!.result!.stdoutRaw!).toString()).toBe('kept');
  });

  it('fails a task running past its timeout plus the grace DEADLINE_EXCEEDED, though its worker moved to scheduler B, and tells the worker to cancel it', async () => {
    const a = await open({ workerGraceMs: 300 });
    const b = await open({ workerGraceMs: 300 });
    const queued = await submit(a, ['/bin/sleep', '60'], { timeoutMs: 200 });
    const task = (await sync(a, 'w-slow')).tasks![0]!;

    // The worker stays alive (it synchronizes with B, listing its task) but the action overruns
    // 200 ms + 300 ms: a sweeper fails it and B's answer tells the worker to stop it.
    await eventually(async () => ((await sync(b, 'w-slow', { running: [task.taskId!] })).cancelTaskIds!.includes(task.taskId!) ? true : undefined), 'the cancellation');
    const done = await untilCompleted(queued.it);
    expect(done.response!.status!.code).toBe(Code.DEADLINE_EXCEEDED);
    expect(done.response!.status!.message).toMatch(/past its timeout of 200 ms/);
    // Its late result changes nothing.
    await expect(b.completeTask({ taskId: task.taskId, workerId: 'w-slow', leaseToken: task.leaseToken, response: okResponse(0, 'late') })).rejects.toMatchObject({ code: Code.NOT_FOUND });
    expect((await a.getOperation(queued.name)).response!.status!.code).toBe(Code.DEADLINE_EXCEEDED);
  });

  it('forgets finished operations after the retention, on every scheduler', async () => {
    const a = await open({ keepCompletedMs: 300 });
    const b = await open({ keepCompletedMs: 300 });
    const queued = await submit(a, ['/bin/echo', 'short-lived']);
    const task = (await sync(b, 'w1')).tasks![0]!;
    await b.completeTask({ taskId: task.taskId, workerId: 'w1', leaseToken: task.leaseToken, response: okResponse(0, 'kept a while') });
    // Finished: both answer with the result until the retention has passed, then NOT_FOUND.
    expect((await a.getOperation(queued.name)).stage).toBe('COMPLETED');
    const gone = await eventually(async () => b.getOperation(queued.name).then(() => undefined, (err: unknown) => err), 'the operation to be forgotten');
    expect(gone).toMatchObject({ code: Code.NOT_FOUND });
    await expect(a.getOperation(queued.name)).rejects.toMatchObject({ code: Code.NOT_FOUND });
    await expect(a.waitExecution(queued.name)[Symbol.asyncIterator]().next()).rejects.toMatchObject({ code: Code.NOT_FOUND });
    expect((await b.listOperations({ filter: 'done=true' })).operations.map((o) => o.name)).not.toContain(queued.name);
  });

  it('hands queued work to a worker held at full slots as soon as a result frees a slot, on another scheduler', async () => {
    const a = await open({ longPollMs: 10_000 });
    const b = await open({ longPollMs: 10_000 });
    const first = await submit(a, ['/bin/echo', 'first']);
    const second = await submit(a, ['/bin/echo', 'second']);
    const task = (await sync(a, 'w1')).tasks![0]!;
    expect(task.operationName).toBe(first.name);
    // Its only slot is busy: the call is held on A although work is queued.
    const held = sync(a, 'w1', { running: [task.taskId!], waitMs: 10_000 });
    await new Promise((r) => setTimeout(r, 200));
    // The result, handed in on B, frees the slot: A's held call takes the queued action then, not
    // at the end of its 10 s wait.
    await b.completeTask({ taskId: task.taskId, workerId: 'w1', leaseToken: task.leaseToken, response: okResponse(0, 'one') });
    const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 3_000));
    const answer = await Promise.race([held, timeout]);
    expect(answer).not.toBe('timeout');
    expect((answer as workerapi.ISynchronizeResponse).tasks!.map((t) => t.operationName)).toEqual([second.name]);
  });

  it('fills every free slot of a worker in one call, never more than its free slots', async () => {
    const a = await open();
    const b = await open();
    const submitted = [];
    for (let i = 0; i < 4; i++) submitted.push(await submit(i % 2 ? a : b, ['/bin/echo', `slot-${i}`]));
    const first = await sync(a, 'w1', { slots: 3 });
    expect(first.tasks!.map((t) => t.operationName)).toEqual(submitted.slice(0, 3).map((s) => s.name));
    expect(new Set(first.tasks!.map((t) => t.taskId)).size).toBe(3);
    expect(new Set(first.tasks!.map((t) => t.leaseToken)).size).toBe(3);
    // All three slots are busy: the fourth stays queued.
    const busy = await sync(b, 'w1', { slots: 3, running: first.tasks!.map((t) => t.taskId!) });
    expect(busy.tasks).toEqual([]);
    // One result frees one slot: the next call takes exactly the fourth.
    const done = first.tasks![1]!;
    await b.completeTask({ taskId: done.taskId, workerId: 'w1', leaseToken: done.leaseToken, response: okResponse(0, 'two') });
    const running = first.tasks!.filter((t) => t !== done).map((t) => t.taskId!);
    const next = await sync(a, 'w1', { slots: 3, running });
    expect(next.tasks!.map((t) => t.operationName)).toEqual([submitted[3]!.name]);
    // Each claimed task completes with its own lease token on either scheduler.
    for (const task of [first.tasks![0]!, first.tasks![2]!, next.tasks![0]!]) {
      await (task === next.tasks![0] ? a : b).completeTask({ taskId: task.taskId, workerId: 'w1', leaseToken: task.leaseToken, response: okResponse(0, task.taskId!) });
    }
    for (const s of submitted) expect((await untilCompleted(s.it)).response!.status?.code ?? Code.OK).toBe(Code.OK);
  });

  it('does not lose a completion that lands between Execute queuing the action and its caller reading on', async () => {
    // A keep-alive far beyond the test's timeout: only the change notification can end the wait.
    const a = await open({ keepAliveMs: 120_000 });
    const b = await open({ keepAliveMs: 120_000 });
    const queued = await submit(a, ['/bin/echo', 'fast']);
    // The worker takes and finishes the action on B before the caller asks for the next snapshot.
    const task = (await sync(b, 'w1')).tasks![0]!;
    await b.completeTask({ taskId: task.taskId, workerId: 'w1', leaseToken: task.leaseToken, response: okResponse(0, 'raced') });
    // Time for the notifications to reach scheduler A before its caller reads on.
    await new Promise((r) => setTimeout(r, 300));
    const done = await untilCompleted(queued.it);
    expect(Buffer.from(done.response!.result!.stdoutRaw!).toString()).toBe('raced');
  }, 20_000);

  it('answers an action cache hit at once, and any scheduler knows the completed operation', async () => {
    const a = await open();
    const b = await open();
    const action = await uploadAction(stores.cas, { args: ['/bin/echo', 'cached'] });
    await stores.actionCache.updateActionResult(action.actionDigest, okResponse(0, 'from the cache').result!);
    const it = a.execute({ actionDigest: action.actionDigest, skipCacheLookup: false, priority: 0 })[Symbol.asyncIterator]();
    const hit = await nextSnapshot(it);
    expect(hit.stage).toBe('COMPLETED');
    expect(hit.response!.cachedResult).toBe(true);
    expect(Buffer.from(hit.response!.result!.stdoutRaw!).toString()).toBe('from the cache');
    const seen = await b.getOperation(hit.name);
    expect(seen.stage).toBe('COMPLETED');
    expect(seen.response!.cachedResult).toBe(true);
    expect((await b.listOperations({ name: 'operations' })).operations.map((o) => o.name)).toContain(hit.name);
  });

  it('hands an action queued on a scheduler straight to a worker waiting there, in the queuing script', async () => {
    const a = await open({ longPollMs: 10_000 });
    const state = (a as unknown as { state: { run: (name: string, ...args: unknown[]) => Promise<unknown> } }).state;
    const held = sync(a, 'w1', { waitMs: 10_000 });
    await new Promise((r) => setTimeout(r, 100));
    const scripts: string[] = [];
    const run = state.run.bind(state);
    state.run = (name: string, ...args: unknown[]) => {
      scripts.push(name);
      return run(name, ...args);
    };
    const queued = await submit(a, ['/bin/echo', 'direct']);
    const response = await held;
    expect(response.tasks!.map((t) => t.operationName)).toEqual([queued.name]);
    // The worker's held poll did not need a take script of its own.
    expect(scripts.filter((n) => n === 'take')).toEqual([]);
    await a.completeTask({ taskId: response.tasks![0]!.taskId, workerId: 'w1', leaseToken: response.tasks![0]!.leaseToken, response: okResponse(0, 'direct') });
    expect(Buffer.from((await untilCompleted(queued.it)).response!.result!.stdoutRaw!).toString()).toBe('direct');
  });

  it('gives each of two waiting workers one of two actions queued at once', async () => {
    const a = await open({ longPollMs: 10_000 });
    const held = [sync(a, 'w1', { waitMs: 10_000 }), sync(a, 'w2', { waitMs: 10_000 })];
    await new Promise((r) => setTimeout(r, 100));
    const queued = await Promise.all([submit(a, ['/bin/echo', 'one']), submit(a, ['/bin/echo', 'two'])]);
    const answers = await Promise.all(held);
    expect(answers.map((r) => r.tasks!.length)).toEqual([1, 1]);
    expect(answers.flatMap((r) => r.tasks!.map((t) => t.operationName)).sort()).toEqual(queued.map((q) => q.name).sort());
  });

  it('keeps work claimed for a worker whose poll ended meanwhile for its next call', async () => {
    const a = await open({ longPollMs: 10_000 });
    const state = (a as unknown as { state: { run: (name: string, ...args: unknown[]) => Promise<unknown> } }).state;
    const first = sync(a, 'w1', { waitMs: 10_000 });
    await new Promise((r) => setTimeout(r, 100));
    let second: Promise<workerapi.ISynchronizeResponse> | undefined;
    const run = state.run.bind(state);
    state.run = async (name: string, ...args: unknown[]) => {
      const reply = await run(name, ...args);
      // The worker's next call supersedes the held one after the queuing script claimed work for it,
      // before the claim is handed over.
      if (name === 'enqueue' && !second) second = sync(a, 'w1', { waitMs: 10_000 });
      return reply;
    };
    const queued = await submit(a, ['/bin/echo', 'kept']);
    const answers = [await first, await second!];
    const handed = answers.flatMap((r) => r.tasks!);
    expect(handed.map((t) => t.operationName)).toEqual([queued.name]);
    const task = handed[0]!;
    await a.completeTask({ taskId: task.taskId, workerId: 'w1', leaseToken: task.leaseToken, response: okResponse(0, 'kept') });
    expect(Buffer.from((await untilCompleted(queued.it)).response!.result!.stdoutRaw!).toString()).toBe('kept');
  }, 20_000);

  it('refuses a result from a caller without the lease', async () => {
    const a = await open();
    const b = await open();
    await submit(a, ['/bin/echo', 'guarded']);
    const task = (await sync(a, 'w1')).tasks![0]!;
    await expect(b.completeTask({ taskId: task.taskId, workerId: 'w1', leaseToken: 'f'.repeat(32), response: okResponse() })).rejects.toSatisfy(
      (err: unknown) => err instanceof StatusError && err.code === Code.PERMISSION_DENIED,
    );
    await expect(b.completeTask({ taskId: task.taskId, workerId: 'intruder', leaseToken: task.leaseToken, response: okResponse() })).rejects.toMatchObject({ code: Code.PERMISSION_DENIED });
  });

  it('tells the worker running a cancelled action to stop, through the scheduler it polls', async () => {
    const a = await open();
    const b = await open();
    const queued = await submit(a, ['/bin/echo', 'cancel me']);
    const task = (await sync(b, 'w1')).tasks![0]!;
    const held = sync(b, 'w1', { running: [task.taskId], waitMs: 5_000 });
    await a.cancelOperation(queued.name);
    expect((await held).cancelTaskIds).toEqual([task.taskId]);
    await b.completeTask({ taskId: task.taskId, workerId: 'w1', leaseToken: task.leaseToken, response: { status: { code: Code.CANCELLED } } });
    const done: OperationSnapshot = await untilCompleted(queued.it);
    expect(done.response?.status?.code).toBe(Code.CANCELLED);
  });

  it('records as cancelled an action cancelled while it ran, even when its worker reports success to the scheduler that handed it out', async () => {
    const a = await open();
    const b = await open();
    const queued = await submit(a, ['/bin/echo', 'cancel me too']);
    const task = (await sync(a, 'w1')).tasks![0]!;
    await b.cancelOperation(queued.name);
    await a.completeTask({ taskId: task.taskId, workerId: 'w1', leaseToken: task.leaseToken, response: okResponse(0, 'finished anyway') });
    const done = await untilCompleted(queued.it);
    expect(done.response?.status?.code).toBe(Code.CANCELLED);
    expect(done.response?.result).toBeFalsy();
  });

  it('refuses a wrong lease token on the scheduler that handed the task out, and still takes the holder\'s result there', async () => {
    const a = await open();
    const queued = await submit(a, ['/bin/echo', 'guarded here']);
    const task = (await sync(a, 'w1')).tasks![0]!;
    await expect(a.completeTask({ taskId: task.taskId, workerId: 'w1', leaseToken: 'f'.repeat(32), response: okResponse(0, 'forged') })).rejects.toMatchObject({ code: Code.PERMISSION_DENIED });
    await expect(a.completeTask({ taskId: task.taskId, workerId: 'intruder', leaseToken: task.leaseToken, response: okResponse(0, 'forged') })).rejects.toMatchObject({ code: Code.PERMISSION_DENIED });
    await a.completeTask({ taskId: task.taskId, workerId: 'w1', leaseToken: task.leaseToken, response: okResponse(0, 'genuine') });
    const done = await untilCompleted(queued.it);
    expect(Buffer.from(done.response!.result!.stdoutRaw!).toString()).toBe('genuine');
    // A second report of the same task finds nothing to complete.
    await expect(a.completeTask({ taskId: task.taskId, workerId: 'w1', leaseToken: task.leaseToken, response: okResponse(0, 'again') })).rejects.toMatchObject({ code: Code.NOT_FOUND });
    expect(Buffer.from((await a.getOperation(queued.name)).response!.result!.stdoutRaw!).toString()).toBe('genuine');
  });

  it('deletes only finished operations and forgets them on every scheduler', async () => {
    const a = await open();
    const b = await open();
    const queued = await submit(a, ['/bin/echo', 'delete']);
    await expect(b.deleteOperation(queued.name)).rejects.toMatchObject({ code: Code.FAILED_PRECONDITION });
    await b.cancelOperation(queued.name);
    await b.deleteOperation(queued.name);
    await expect(a.getOperation(queued.name)).rejects.toMatchObject({ code: Code.NOT_FOUND });
  });

  it('fails UNAVAILABLE at open when Redis does not answer, without the password in the message', async () => {
    await expect(
      RedisBuildQueue.open({
        contentAddressableStorage: stores.cas,
        actionCache: stores.actionCache,
        redis: parseRedisUrl('redis://:hunter2@127.0.0.1:1/0'),
      }),
    ).rejects.toSatisfy((err: unknown) => err instanceof StatusError && err.code === Code.UNAVAILABLE && !err.message.includes('hunter2'));
  });

  it('is what a scheduler started with state redis:// runs, and two such schedulers share operations', async () => {
    const common = { ...stores && { contentAddressableStorage: stores.cas, actionCache: stores.actionCache }, listenAddress: '127.0.0.1:0', workerListenAddress: '127.0.0.1:0', state: redis.url, logger: silentLogger };
    const a = await startScheduler(common);
    const b = await startScheduler(common);
    try {
      expect(a.buildQueue).toBeInstanceOf(RedisBuildQueue);
      const action = await uploadAction(stores.cas, { args: ['/bin/echo', 'via factory'] });
      const it = a.buildQueue.execute({ actionDigest: action.actionDigest, skipCacheLookup: true, priority: 0 })[Symbol.asyncIterator]();
      let snapshot = await nextSnapshot(it);
      while (snapshot.stage !== 'QUEUED') snapshot = await nextSnapshot(it);
      expect((await b.buildQueue.getOperation(snapshot.name)).stage).toBe('QUEUED');
      await b.buildQueue.cancelOperation(snapshot.name);
      await untilCompleted(it);
    } finally {
      await Promise.all([a.close(100), b.close(100)]);
    }
  });

  it('limits queued actions and bytes per instance across schedulers, and frees room on claim and cancel', async () => {
    const a = await open({ maxQueuedActionsPerInstance: 2 });
    const b = await open({ maxQueuedActionsPerInstance: 2 });
    const queueOn = async (queue: RedisBuildQueue, args: string[], instanceName: string) => {
      const action = await uploadAction(stores.cas, { args, instanceName });
      const it = queue.execute({ actionDigest: action.actionDigest, skipCacheLookup: true, priority: 0 })[Symbol.asyncIterator]();
      return nextSnapshot(it);
    };
    await queueOn(a, ['1'], 'main');
    await queueOn(b, ['2'], 'main');
    // Two queued through two schedulers: the third is refused by either, naming the limit.
    const refused = await queueOn(a, ['3'], 'main').catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(StatusError);
    expect((refused as StatusError).code).toBe(Code.RESOURCE_EXHAUSTED);
    expect((refused as StatusError).message).toContain('scheduler.max_queued_actions_per_instance');
    // Another instance has its own room.
    expect((await queueOn(b, ['3'], 'other')).stage).toBe('QUEUED');
    // A worker claims one of main's: main has room again.
    expect((await sync(a, 'w1', { slots: 1 })).tasks).toHaveLength(1);
    const queued = await queueOn(b, ['4'], 'main');
    expect(queued.stage).toBe('QUEUED');
    await expect(queueOn(a, ['5'], 'main')).rejects.toSatisfy((err: unknown) => err instanceof StatusError && err.code === Code.RESOURCE_EXHAUSTED);
    // Cancelling a queued one frees its place.
    await a.cancelOperation(queued.name);
    expect((await queueOn(a, ['5'], 'main')).stage).toBe('QUEUED');

    // Bytes: room for one of these actions, not two.
    prefix = `${prefix}bytes:`;
    const c = await open({ maxQueuedBytesPerInstance: 1500 });
    expect((await queueOn(c, ['x'.repeat(1000)], 'main')).stage).toBe('QUEUED');
    await expect(queueOn(c, ['y'.repeat(1000)], 'main')).rejects.toSatisfy(
      (err: unknown) => err instanceof StatusError && err.code === Code.RESOURCE_EXHAUSTED && err.message.includes('scheduler.max_queued_bytes_per_instance'),
    );
  });
});

