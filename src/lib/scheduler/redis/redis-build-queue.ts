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
 * - what is process-local stays in this process: the long-poll a worker holds on this scheduler, the
 *   names/platforms of the workers calling it and the tasks it handed out (redis-worker-side.ts);
 * - a scheduler wakes its own waiters from its scripts' answers, and learns of the others' changes
 *   through the subscription; the operations it completes are handed to its own followers directly;
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
import { Code, StatusError } from '../../errors/status-error.js';
import type { reapi, workerapi } from '../../proto/index.js';
import { lookupActionCache } from '../action-cache-lookup.js';
import type { BuildQueue, ExecuteRequest, ListOperationsRequest, ListOperationsResult } from '../build-queue.js';
import type { InMemoryBuildQueueOptions } from '../build-queue-options.js';
import { BuildQueueBase } from '../build-queue-base.js';
import { type LoadedAction, loadActionToQueue } from '../load-action.js';
import { type QueueLimitBroken, queueFullError } from '../queue-limits.js';
import type { OperationSnapshot } from '../operation-snapshot.js';
import { formatOperationName, parseOperationName } from '../operation-names.js';
import { parseListRequest } from '../operation-table.js';
import { shuttingDown } from '../scheduler-state.js';
import { digestFromText, digestText, platformFromText, platformText } from '../state-codec.js';
import { RedisEvents, type Watch } from './redis-events.js';
import { type Claim, RedisWorkerSide } from './redis-worker-side.js';
import { platformPairs, readResponse, RedisState, storeLoaded, storeResponse } from './redis-state.js';
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
/** Completed snapshots kept for local followers not yet woken. */
const MAX_HINTS = 4096;

export class RedisBuildQueue extends BuildQueueBase implements BuildQueue {
  private readonly state: RedisState;
  private readonly events: RedisEvents;
  private readonly workerSide: RedisWorkerSide;
  /** Operations completed by this scheduler, by name, for its followers (see hintCompleted). */
  private readonly completedHints = new Map<string, OperationSnapshot>();

  private constructor(opts: RedisBuildQueueOptions) {
    super(opts);
    this.state = new RedisState(opts.redis, opts.keyPrefix ?? 'bzutil:scheduler:');
    this.events = new RedisEvents(this.clock);
    this.workerSide = new RedisWorkerSide({
      state: this.state,
      events: this.events,
      actionCache: this.actionCache,
      clock: this.clock,
      logger: this.logger,
      newId: this.newId,
      limits: this.limits,
      closing: this.closing.signal,
      onCompleted: (snapshot) => this.hintCompleted(snapshot),
    });
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
  // Worker side (redis-worker-side.ts)

  synchronize(request: workerapi.ISynchronizeRequest, opts: CallOptions = {}): Promise<workerapi.ISynchronizeResponse> {
    this.throwIfClosed();
    return this.workerSide.synchronize(request, opts);
  }

  completeTask(request: workerapi.ICompleteTaskRequest): Promise<void> {
    return this.workerSide.completeTask(request);
  }

  private takeHint(name: string): OperationSnapshot | undefined {
    const hinted = this.completedHints.get(name);
    if (hinted) this.completedHints.delete(name);
    return hinted;
  }

  /**
   * Keeps a completed operation's snapshot for its followers on this scheduler (if it has any): the
   * woken follower yields it instead of reading the state again. A completed snapshot cannot go
   * stale (at worst the operation was deleted since: it did complete). At most MAX_HINTS are kept.
   */
  private hintCompleted(snapshot: OperationSnapshot): void {
    if (!this.events.isWatched(`op ${snapshot.name}`)) return;
    this.completedHints.set(snapshot.name, snapshot);
    if (this.completedHints.size > MAX_HINTS) this.completedHints.delete(this.completedHints.keys().next().value!);
  }

  /** Counts for logs, metrics and tests: the queue is the fleet's, the workers this scheduler's. */
  async stats(): Promise<{ queuedOperations: number; workers: number }> {
    const queued = Number((await this.state.commands.get(this.state.prefix + 'qsize')) ?? 0);
    return { queuedOperations: queued, workers: this.workerSide.size };
  }

  close(): void {
    if (this.closing.signal.aborted) return;
    this.closing.abort();
    this.workerSide.releasePolls();
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
      if (await this.state.run('submit', this.clock.now(), name, digestText(actionDigest))) return undefined;
      throw err;
    }
    this.throwIfClosed();
    const pairs = platformPairs(loaded.platform);
    // A worker of this scheduler waiting for work gets it from the same script (no second round trip).
    const idle = this.workerSide.reserveIdle();
    let taken: [string[], Claim[]] | undefined;
    try {
      const [outcome, second, claims] = (await this.state.run(
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
        ...(idle?.take.argv ?? []),
      )) as [string, (QueueLimitBroken | string[])?, Claim[]?];
      if (outcome === 'FULL') throw queueFullError((second as QueueLimitBroken | undefined) ?? 'total', actionDigest, this.limits);
      if (outcome === 'QUEUED' && claims) taken = [second as string[], claims];
      this.logger.debug('Queued action', { operation: name, actionDigest: actionDigest.toString(), outcome });
      return outcome === 'QUEUED' ? { name, actionDigest, stage: 'QUEUED', platform: loaded.platform } : undefined;
    } finally {
      if (idle) await this.workerSide.handOver(idle, taken);
    }
  }

  /** Yields the operation's snapshots until it completes: `first` (read before version `seen` of `watch`), then after each change. */
  private async *follow(name: string, signal: AbortSignal | undefined, watch: Watch, first?: { snapshot: OperationSnapshot; seen: number }): AsyncGenerator<OperationSnapshot> {
    let known = first;
    for (;;) {
      const seen = known?.seen ?? watch.version();
      const snapshot = known?.snapshot ?? this.takeHint(name) ?? (await this.getOperation(name));
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
        const held = this.workerSide.heldWorkerIds();
        if (held.length) await this.state.run('heartbeat', now, this.limits.workerGraceMs, ...held);
        const [lost, expired] = (await this.state.run('sweep', now, this.limits.maxAttempts, now - this.limits.keepCompletedMs, now - CHECKING_TIMEOUT_MS, SWEEP_LIMIT)) as number[];
        if (lost || expired) this.logger.warn('Swept the shared queue', { workersLost: lost, tasksPastDeadline: expired });
        await this.workerSide.forgetGoneWorkers();
      } catch (err) {
        if (!signal.aborted) this.logger.error('Failed to sweep the build queue', { error: err });
      }
    }
  }

}

function notFound(name: string): StatusError {
  return StatusError.notFound(`Failed to find operation ${JSON.stringify(name)}: it is unknown or has expired`);
}
