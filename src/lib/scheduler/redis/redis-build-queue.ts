/**
 * A BuildQueue whose state lives in Redis, so that several schedulers share one queue (a fleet):
 * any of them answers for any operation, claims for any worker and accepts any worker's results.
 * Chosen by `scheduler.state: redis://HOST:PORT[/DB]` (see create-build-queue.ts).
 *
 * What is where:
 * - every state change is one Lua script (redis-scripts.ts): atomic across schedulers, so a queued
 *   execution is claimed once, a completion lands once and a lease is requeued once;
 * - changes are published on one channel; each scheduler wakes its own followers and held worker
 *   polls (redis-events.ts) and they read the state again;
 * - what is process-local stays here: the long-poll a worker holds on this scheduler and the
 *   names/platforms of the workers calling it;
 * - time's housekeeping (workers past their grace, tasks past their deadline, retention) is one
 *   script every schedulers runs every sweep interval: running it twice is harmless.
 *
 * Leases: a worker is alive while it synchronizes with any scheduler of the fleet; each scheduler
 * extends the grace (`workerGraceMs`) of the workers whose poll it holds. A worker whose scheduler
 * died reconnects to another one within the grace and keeps its running tasks, whose results are
 * accepted there; past the grace they are requeued under the same operation names.
 *
 * Clocks: deadlines are written with the writing scheduler's clock, so the fleet's clocks should
 * agree to well within `workerGraceMs` (NTP).
 */
import type { CallOptions } from '../../blobstore/blob-store.js';
import type { Digest } from '../../digest/digest.js';
import { Code, StatusError } from '../../errors/status-error.js';
import type { reapi, workerapi } from '../../proto/index.js';
import { durationToMs, msToDuration } from '../../proto/proto-time.js';
import { lookupActionCache } from '../action-cache-lookup.js';
import type { BuildQueue, ExecuteRequest, ListOperationsRequest, ListOperationsResult } from '../build-queue.js';
import type { InMemoryBuildQueueOptions } from '../build-queue-options.js';
import { BuildQueueBase } from '../build-queue-base.js';
import { type LoadedAction, loadActionToQueue } from '../load-action.js';
import { type QueueLimitBroken, queueFullError } from '../queue-limits.js';
import type { OperationSnapshot } from '../operation-snapshot.js';
import { formatOperationName, parseOperationName } from '../operation-names.js';
import { parseListRequest } from '../operation-table.js';
import { PlatformProperties } from '../platform-properties.js';
import { shuttingDown } from '../scheduler-state.js';
import { digestFromText, digestText, platformFromText, platformText } from '../state-codec.js';
import { normalizeResponse, SYNCHRONIZE_RESPONSE_BUDGET_BYTES, toTaskProto } from '../task-messages.js';
import { admitSynchronize, newLeaseToken, sameToken } from '../worker-admission.js';
import { RedisEvents, type Watch } from './redis-events.js';
import { platformPairs, readLoaded, readResponse, RedisState, storeLoaded, storeResponse } from './redis-state.js';
import type { RedisTarget } from './redis-url.js';

export interface RedisBuildQueueOptions extends Omit<InMemoryBuildQueueOptions, 'state'> {
  redis: RedisTarget;
  /** Prefix of every key and the channel; schedulers sharing a queue use the same. @default "bzutil:scheduler:" */
  keyPrefix?: string;
}

/** An operation still without an execution this long after it was created lost its scheduler. */
const CHECKING_TIMEOUT_MS = 10 * 60_000;
/** Most items one sweep handles of each kind (the script blocks Redis while it runs). */
const SWEEP_LIMIT = 500;
const LIST_BATCH = 500;
/** Tasks handed out whose completion this scheduler can admit without asking Redis (beyond: it asks). */
const MAX_HANDED_OUT = 10_000;

interface LocalWorker {
  id: string;
  name: string;
  platform: PlatformProperties;
  pairs: string[];
  slots: number;
  /** Answers the poll this scheduler holds for the worker, if any. */
  poll?: (response: workerapi.ISynchronizeResponse) => void;
  /** Unknown tasks the worker listed that it was already told to cancel (each once). */
  readonly unknownCancelled: Set<string>;
}

export class RedisBuildQueue extends BuildQueueBase implements BuildQueue {
  private readonly state: RedisState;
  private readonly events: RedisEvents;
  private readonly workers = new Map<string, LocalWorker>();
  /** Tasks this scheduler handed out and not yet completed here: their results need no lease lookup in Redis. */
  private readonly handedOut = new Map<string, HandedOut>();

  private constructor(opts: RedisBuildQueueOptions) {
    super(opts);
    this.state = new RedisState(opts.redis, opts.keyPrefix ?? 'bzutil:scheduler:');
    this.events = new RedisEvents(this.clock);
  }

  /** Connects to Redis and starts sweeping; the caller opens its ports only after this. */
  static async open(opts: RedisBuildQueueOptions): Promise<RedisBuildQueue> {
    const queue = new RedisBuildQueue(opts);
    await queue.state.open(opts.redis, (message) => queue.events.deliver(message));
    void queue.sweepLoop();
    return queue;
  }

  // ---------------------------------------------------------------------------------------------
  // Client side

  async *execute(request: ExecuteRequest, opts: CallOptions = {}): AsyncGenerator<OperationSnapshot> {
    this.throwIfClosed();
    const { actionDigest } = request;
    const id = this.newId();
    const name = formatOperationName(actionDigest.instanceName, id);
    // Watched from before the operation exists: no change to it can be missed.
    const watch = this.events.watch(`op ${name}`);
    try {
      const seen = watch.version();
      let first: OperationSnapshot | undefined;
      try {
        first = await this.start(name, request, opts.signal);
      } catch (err) {
        // The caller gets the error, never the name: nothing to keep.
        await this.state.run('forget', this.clock.now(), name).catch(() => {});
        throw err;
      }
      yield* this.follow(name, opts.signal, watch, first && { snapshot: first, seen });
    } finally {
      watch.close();
    }
  }

  async *waitExecution(name: string, opts: CallOptions = {}): AsyncGenerator<OperationSnapshot> {
    this.throwIfClosed();
    await this.getOperation(name);
    const watch = this.events.watch(`op ${name}`);
    try {
      yield* this.follow(name, opts.signal, watch);
    } finally {
      watch.close();
    }
  }

  async getOperation(name: string): Promise<OperationSnapshot> {
    const snapshot = await this.read(name);
    if (!snapshot) throw notFound(name);
    return snapshot;
  }

  async listOperations(request: ListOperationsRequest): Promise<ListOperationsResult> {
    const query = parseListRequest(request);
    const operations: OperationSnapshot[] = [];
    let after = query.afterSeq;
    let lastReturned = query.afterSeq;
    for (;;) {
      const batch = (await this.state.commands.zrangebyscore(this.state.prefix + 'ops', `(${after}`, '+inf', 'WITHSCORES', 'LIMIT', 0, LIST_BATCH)) as string[];
      if (batch.length === 0) return { operations, nextPageToken: '' };
      for (let i = 0; i < batch.length; i += 2) {
        const name = batch[i]!;
        const seq = Number(batch[i + 1]);
        after = seq;
        if (query.instanceName !== undefined && parseOperationName(name).instanceName !== query.instanceName) continue;
        const snapshot = await this.read(name);
        if (!snapshot) continue;
        if (query.done !== undefined && (snapshot.stage === 'COMPLETED') !== query.done) continue;
        if (operations.length === query.pageSize) return { operations, nextPageToken: String(lastReturned) };
        operations.push(snapshot);
        lastReturned = seq;
      }
    }
  }

  async cancelOperation(name: string): Promise<void> {
    const outcome = await this.state.run('cancel', this.clock.now(), name);
    if (outcome === 'NOTFOUND') throw notFound(name);
  }

  async deleteOperation(name: string): Promise<void> {
    const outcome = await this.state.run('delete', this.clock.now(), name);
    if (outcome === 'NOTFOUND') throw notFound(name);
    if (outcome === 'RUNNING') throw StatusError.failedPrecondition(`Failed to delete operation ${JSON.stringify(name)}: it has not finished; cancel it first`);
  }

  async waitOperation(name: string, timeoutMs: number, opts: CallOptions = {}): Promise<OperationSnapshot> {
    const deadline = this.clock.now() + Math.max(0, timeoutMs);
    const watch = this.events.watch(`op ${name}`);
    try {
      for (;;) {
        const seen = watch.version();
        const snapshot = await this.getOperation(name);
        const remainingMs = deadline - this.clock.now();
        if (snapshot.stage === 'COMPLETED' || remainingMs <= 0) return snapshot;
        await this.waitChange(watch, seen, remainingMs, opts.signal);
      }
    } finally {
      watch.close();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Worker side

  async synchronize(request: workerapi.ISynchronizeRequest, opts: CallOptions = {}): Promise<workerapi.ISynchronizeResponse> {
    this.throwIfClosed();
    const slots = admitSynchronize(request, this.limits.maxWorkerSlots, this.logger);
    const id = request.workerId!;
    let worker = this.workers.get(id);
    // A worker keeps one call outstanding; a new one supersedes whatever is still held.
    worker?.poll?.(this.emptyResponse());
    if (!worker) {
      worker = { id, name: '', platform: PlatformProperties.empty(), pairs: [], slots: 0, unknownCancelled: new Set() };
      this.workers.set(id, worker);
      this.logger.info('Worker joined', { workerId: id, workerName: request.workerName || id, slots });
    }
    worker.name = request.workerName || id;
    worker.platform = PlatformProperties.fromProto(request.platform);
    worker.pairs = platformPairs(worker.platform);
    worker.slots = slots;
    // Watched from before the state is read: a change published meanwhile wakes the held call.
    const watch = this.events.watch('work', `worker ${id}`);
    const seen = watch.version();
    try {
      const listed = request.runningTaskIds ?? [];
      const take = this.takeArguments(worker);
      const [cancels, unknown, claims] = (await this.state.run(
        'synchronize',
        this.clock.now(),
        id,
        this.limits.workerGraceMs,
        this.limits.maxAttempts,
        listed.length,
        ...listed,
        ...take.argv,
      )) as [string[], string[], Claim[]];
      // Tasks the worker runs that the queue does not give it: cancel each once (see WorkerRegistry.reconcile).
      const cancelIds = [...cancels];
      for (const taskId of unknown) {
        if (worker.unknownCancelled.has(taskId)) continue;
        worker.unknownCancelled.add(taskId);
        cancelIds.push(taskId);
      }
      for (const taskId of worker.unknownCancelled) if (!unknown.includes(taskId)) worker.unknownCancelled.delete(taskId);

      const first = await this.toResponse(worker, take, cancelIds, claims);
      if (first.tasks!.length || first.cancelTaskIds!.length || opts.signal?.aborted) return first;
      const requestedWaitMs = durationToMs(request.maxWait);
      const waitMs = requestedWaitMs > 0 ? Math.min(requestedWaitMs, this.limits.longPollMs) : this.limits.longPollMs;
      return await this.hold(worker, watch, seen, waitMs, opts.signal);
    } finally {
      watch.close();
    }
  }

  async completeTask(request: workerapi.ICompleteTaskRequest): Promise<void> {
    const taskId = request.taskId ?? '';
    const fields = { taskId, workerId: request.workerId };
    const mine = this.handedOut.get(taskId);
    if (mine && request.workerId === mine.workerId && sameToken(request.leaseToken ?? '', mine.leaseToken)) {
      this.handedOut.delete(taskId);
      // Handed out here, to this caller with this token: the lease holder, known without a round trip.
      // The finish script still completes the execution only if the task is its current attempt, and
      // as cancelled if it was cancelled meanwhile; a result of a lease lost meanwhile or of a
      // cancelled run is still a real run of the action, so it may enter the action cache.
      return this.finishTask(taskId, mine, request);
    }
    const found = (await this.state.run('task', this.clock.now(), taskId)) as string[] | null;
    if (!found) throw this.unknownTask(fields);
    const [, workerId, token, currentTask, stage, cancel, digest, queuedAt, noCache] = found as [string, string, string, string, string, string, string, string, string];
    if (request.workerId !== workerId || !sameToken(request.leaseToken ?? '', token)) {
      this.logger.warn('Refusing a result from a worker that does not hold the lease', { ...fields, holder: workerId });
      throw StatusError.permissionDenied(`Failed to complete task ${JSON.stringify(taskId)}: the caller does not hold its lease`);
    }
    const now = this.clock.now();
    if (currentTask !== taskId || stage !== 'EXECUTING') {
      await this.state.run('finish', now, taskId, '');
      return;
    }
    if (cancel === '1') {
      // The finish script records it as cancelled.
      await this.state.run('finish', now, taskId, '');
      return;
    }
    await this.finishTask(taskId, { workerId, actionDigest: digestFromText(digest), queuedAtMs: Number(queuedAt), noCache: noCache === '1' }, request);
  }

  /** Completes a task whose caller holds the lease: requeued if the worker could not run it, else its result cached (when it may be) and stored. */
  private async finishTask(taskId: string, task: Omit<HandedOut, 'leaseToken'>, request: workerapi.ICompleteTaskRequest): Promise<void> {
    const { actionDigest } = task;
    if ((request.response?.status?.code ?? Code.OK) === Code.UNAVAILABLE) {
      this.logger.warn('Requeuing an action its worker could not run', { taskId, workerId: task.workerId, message: request.response?.status?.message ?? '' });
      await this.state.run('lose', this.clock.now(), taskId, this.limits.maxAttempts, `worker reported UNAVAILABLE: ${request.response?.status?.message ?? ''}`);
      return;
    }
    const response = normalizeResponse({ actionDigest, queuedAtMs: task.queuedAtMs }, this.workers.get(task.workerId)?.name || task.workerId, request.response);
    if ((response.status!.code ?? Code.OK) === Code.OK && (response.result?.exitCode ?? 0) === 0 && !task.noCache) {
      try {
        await this.actionCache.updateActionResult(actionDigest, response.result!);
      } catch (err) {
        this.logger.error('Failed to store an action result in the action cache', { actionDigest: actionDigest.toString(), error: err });
        response.message = [response.message, `Failed to store the result in the action cache: ${(err as Error).message}`].filter(Boolean).join('; ');
      }
    }
    if (Number(await this.state.run('finish', this.clock.now(), taskId, storeResponse(response))) < 0) throw this.unknownTask({ taskId, workerId: task.workerId });
  }

  private unknownTask(fields: { taskId: string; workerId?: string | null }): StatusError {
    this.logger.info('Refusing the result of an unknown task', fields);
    return StatusError.notFound(`Failed to complete task ${JSON.stringify(fields.taskId)}: the scheduler has no such task (cancelled, or requeued after its worker was lost)`);
  }

  /** Counts for logs, metrics and tests: the queue is the fleet's, the workers this scheduler's. */
  async stats(): Promise<{ queuedOperations: number; workers: number }> {
    const queued = Number((await this.state.commands.get(this.state.prefix + 'qsize')) ?? 0);
    return { queuedOperations: queued, workers: this.workers.size };
  }

  close(): void {
    if (this.closing.signal.aborted) return;
    this.closing.abort();
    for (const worker of this.workers.values()) worker.poll?.(this.emptyResponse());
    this.events.wakeAll();
  }

  /** Drops the Redis connections (after close(), once running calls had their grace). */
  disconnect(): void {
    this.close();
    this.state.close();
  }

  // ---------------------------------------------------------------------------------------------

  /**
   * Creates the operation `name` and starts it: completed from the action cache, attached to the
   * action's execution in flight, or queued. Returns its snapshot when it is known without reading
   * the state again (completed or queued here), undefined when it joined.
   */
  private async start(name: string, request: ExecuteRequest, signal?: AbortSignal): Promise<OperationSnapshot | undefined> {
    const { actionDigest } = request;
    if (!request.skipCacheLookup) {
      const cached = await lookupActionCache(this.actionCache, actionDigest, this.logger, signal);
      if (cached) {
        const response: reapi.IExecuteResponse = { result: cached, cachedResult: true, status: { code: Code.OK } };
        await this.state.run('createCompleted', this.clock.now(), name, digestText(actionDigest), storeResponse(response));
        return { name, actionDigest, stage: 'COMPLETED', response };
      }
    }
    // Loaded before asking whether the action is in flight, so that creating, deduplicating and
    // queuing are one round trip; a joining operation has loaded it for nothing (a few CAS reads).
    let loaded: LoadedAction;
    try {
      loaded = await loadActionToQueue(this.cas, actionDigest, this.limits, signal);
    } catch (err) {
      // An execution in flight needs nothing of this caller's CAS (as in InMemoryBuildQueue).
      const [, joined] = (await this.state.run('submit', this.clock.now(), name, digestText(actionDigest))) as [number, string | null];
      if (joined) return undefined;
      throw err;
    }
    this.throwIfClosed();
    const pairs = platformPairs(loaded.platform);
    const [outcome, broken] = (await this.state.run(
      'enqueue',
      this.clock.now(),
      name,
      digestText(actionDigest),
      loaded.action.doNotCache ? '1' : '0',
      platformText(loaded.platform),
      request.priority,
      loaded.timeoutMs ?? '',
      storeLoaded(loaded),
      this.limits.maxQueuedOperations,
      this.limits.maxQueuedActionsPerInstance,
      this.limits.maxQueuedBytesPerInstance,
      actionDigest.instanceName,
      loaded.sizeBytes,
      pairs.length,
      ...pairs,
    )) as [string, QueueLimitBroken?];
    if (outcome === 'FULL') throw queueFullError(broken ?? 'total', actionDigest, this.limits);
    this.logger.debug('Queued action', { operation: name, actionDigest: actionDigest.toString(), outcome });
    return outcome === 'QUEUED' ? { name, actionDigest, stage: 'QUEUED', platform: loaded.platform } : undefined;
  }

  /** Yields the operation's snapshots until it completes: `first` (read before version `seen` of `watch`), then after each change. */
  private async *follow(name: string, signal: AbortSignal | undefined, watch: Watch, first?: { snapshot: OperationSnapshot; seen: number }): AsyncGenerator<OperationSnapshot> {
    let known = first;
    for (;;) {
      const seen = known?.seen ?? watch.version();
      const snapshot = known?.snapshot ?? (await this.getOperation(name));
      known = undefined;
      yield snapshot;
      if (snapshot.stage === 'COMPLETED') return;
      await this.waitChange(watch, seen, this.limits.keepAliveMs, signal);
    }
  }

  private async waitChange(watch: Watch, seen: number, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    this.throwIfClosed();
    await watch.waitPast(seen, timeoutMs, signal ? AbortSignal.any([signal, this.closing.signal]) : this.closing.signal).catch((err: unknown) => {
      if (signal?.aborted) throw err;
      throw shuttingDown();
    });
  }

  private async read(name: string): Promise<OperationSnapshot | undefined> {
    const found = (await this.state.run('get', this.clock.now(), name)) as [string, string, string, string, string?] | null;
    if (!found) return undefined;
    const [digest, own, stage, response, platform] = found;
    const base = { name, actionDigest: digestFromText(digest) };
    if (own) return { ...base, stage: 'COMPLETED', response: readResponse(own) };
    if (stage === 'COMPLETED') return { ...base, stage, response: readResponse(response) };
    return { ...base, stage: stage as OperationSnapshot['stage'], ...(platform ? { platform: platformFromText(platform) } : {}) };
  }

  /** Keeps what completing `taskId` needs, for at most MAX_HANDED_OUT tasks (the oldest forgotten first). */
  private remember(taskId: string, task: HandedOut): void {
    this.handedOut.set(taskId, task);
    if (this.handedOut.size > MAX_HANDED_OUT) this.handedOut.delete(this.handedOut.keys().next().value!);
  }

  /** The take arguments of the scripts (see take_work in redis-scripts.ts): an id and a lease token ready for each slot. */
  private takeArguments(worker: LocalWorker): Take {
    const taskIds = Array.from({ length: worker.slots }, () => this.newId());
    const leaseTokens = taskIds.map(() => newLeaseToken());
    return {
      taskIds,
      leaseTokens,
      argv: [worker.id, worker.slots, this.limits.workerGraceMs, SYNCHRONIZE_RESPONSE_BUDGET_BYTES, worker.slots, ...taskIds, ...leaseTokens, worker.pairs.length, ...worker.pairs],
    };
  }

  /** Pending cancellations and executions claimed for the worker's free slots (within the response budget), in one script. */
  private async takeWork(worker: LocalWorker): Promise<workerapi.ISynchronizeResponse> {
    const take = this.takeArguments(worker);
    const [cancels, claims] = (await this.state.run('take', this.clock.now(), ...take.argv)) as [string[], Claim[]];
    return this.toResponse(worker, take, cancels, claims);
  }

  /** The worker's answer: its cancellations and a task for each execution claimed. */
  private async toResponse(worker: LocalWorker, take: Take, cancelTaskIds: string[], claims: Claim[]): Promise<workerapi.ISynchronizeResponse> {
    const response = { tasks: [] as workerapi.ITask[], cancelTaskIds, lease: msToDuration(this.limits.workerGraceMs) };
    for (const [index, , loadedText, digest, queuedAt, firstOp, attempts] of claims) {
      const taskId = take.taskIds[index - 1]!;
      const leaseToken = take.leaseTokens[index - 1]!;
      const actionDigest = digestFromText(digest);
      if (!loadedText) {
        await this.state.run('finish', this.clock.now(), taskId, storeResponse({ status: StatusError.internal(`Failed to hand out action ${actionDigest}: its Action is no longer in the scheduler state`).toProto() }));
        continue;
      }
      const loaded = readLoaded(loadedText, PlatformProperties.empty());
      this.remember(taskId, { workerId: worker.id, leaseToken, actionDigest, queuedAtMs: Number(queuedAt), noCache: loaded.action.doNotCache === true });
      response.tasks.push(toTaskProto({ actionDigest, queuedAtMs: Number(queuedAt), operationName: firstOp }, loaded, taskId, leaseToken).task);
      this.logger.debug('Assigned task', { taskId, worker: worker.name, actionDigest: actionDigest.toString(), attempt: attempts });
    }
    return response;
  }

  /** Holds the worker's call until work or a cancellation for it appears (on any scheduler), or `waitMs`. */
  private hold(worker: LocalWorker, watch: Watch, seenBefore: number, waitMs: number, signal?: AbortSignal): Promise<workerapi.ISynchronizeResponse> {
    return new Promise((resolve) => {
      const stop = new AbortController();
      let settled = false;
      const answer = (response: workerapi.ISynchronizeResponse) => {
        if (settled) return;
        settled = true;
        stop.abort();
        if (worker.poll === answer) worker.poll = undefined;
        resolve(response);
      };
      worker.poll = answer;
      const deadline = this.clock.now() + waitMs;
      const abort = AbortSignal.any([stop.signal, this.closing.signal, ...(signal ? [signal] : [])]);
      void (async () => {
        try {
          let seen = seenBefore;
          for (;;) {
            const remainingMs = deadline - this.clock.now();
            if (remainingMs <= 0) break;
            await watch.waitPast(seen, remainingMs, abort);
            if (settled || abort.aborted) break;
            seen = watch.version();
            // Tasks claimed for a call superseded meanwhile are not listed by the worker's next calls:
            // reconciliation requeues them (as for a lost answer).
            const response = await this.takeWork(worker);
            if (settled) {
              // Superseded meanwhile: the worker's next call takes the cancellations.
              if (response.cancelTaskIds!.length) await this.state.commands.sadd(`${this.state.prefix}wcancel:${worker.id}`, ...response.cancelTaskIds!);
              break;
            }
            if (response.tasks!.length || response.cancelTaskIds!.length) return answer(response);
          }
        } catch (err) {
          if (!abort.aborted) this.logger.warn('Failed to hand out work to a waiting worker', { workerId: worker.id, error: err });
        }
        answer(this.emptyResponse());
      })();
    });
  }

  private async sweepLoop(): Promise<void> {
    const signal = this.closing.signal;
    while (!signal.aborted) {
      try {
        await this.clock.sleep(this.limits.sweepIntervalMs, signal);
      } catch {
        return;
      }
      try {
        const now = this.clock.now();
        const held = [...this.workers.values()].filter((w) => w.poll).map((w) => w.id);
        if (held.length) await this.state.run('heartbeat', now, this.limits.workerGraceMs, ...held);
        const [lost, expired] = (await this.state.run('sweep', now, this.limits.maxAttempts, now - this.limits.keepCompletedMs, now - CHECKING_TIMEOUT_MS, SWEEP_LIMIT)) as number[];
        if (lost || expired) this.logger.warn('Swept the shared queue', { workersLost: lost, tasksPastDeadline: expired });
        // Forget local workers that stopped calling this scheduler.
        for (const worker of this.workers.values()) if (!worker.poll && !(await this.state.commands.zscore(this.state.prefix + 'workers', worker.id))) this.workers.delete(worker.id);
      } catch (err) {
        if (!signal.aborted) this.logger.error('Failed to sweep the build queue', { error: err });
      }
    }
  }

  private emptyResponse(): workerapi.ISynchronizeResponse {
    return { tasks: [], cancelTaskIds: [], lease: msToDuration(this.limits.workerGraceMs) };
  }

}

/** What the scripts return for an execution claimed: its index among the take's ids, then seq, loaded, digest, queuedAt, firstOp, attempts. */
type Claim = [number, string, string, string, string, string, number];

/** A task as its scheduler handed it out. */
interface HandedOut {
  workerId: string;
  leaseToken: string;
  actionDigest: Digest;
  queuedAtMs: number;
  noCache: boolean;
}

interface Take {
  taskIds: string[];
  leaseTokens: string[];
  argv: (string | number)[];
}

function notFound(name: string): StatusError {
  return StatusError.notFound(`Failed to find operation ${JSON.stringify(name)}: it is unknown or has expired`);
}
