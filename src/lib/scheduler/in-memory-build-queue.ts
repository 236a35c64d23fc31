/**
 * The scheduler's state in one process, after Buildbarn's InMemoryBuildQueue: operations, the queue
 * of executions waiting for a worker, and the workers with their leases and tasks.
 *
 * Vocabulary: an *operation* is what a client sees (one per Execute call, with its own name); an
 * *execution* is the work behind it. Concurrent Execute calls of the same cacheable action share one
 * execution (in-flight deduplication), so the action runs once and every caller gets the result. A
 * *task* is one attempt of an execution on one worker; when a worker is lost its tasks are requeued
 * as new tasks, up to `maxAttempts`.
 *
 * Workers pull work with a long-poll Synchronize (see proto/bzutil/worker/v1/worker.proto). Every
 * event that creates work for a waiting worker (an action queued, a slot freed, a cancellation)
 * answers that worker's pending poll at once, so dispatch never waits for a timer. A single sweeper
 * runs every `sweepIntervalMs` for the things that are about time only: expired worker leases,
 * actions no connected worker can run, and forgetting old finished operations.
 */
import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import type { ActionCache } from '../actioncache/action-cache.js';
import type { BlobStore, CallOptions } from '../blobstore/blob-store.js';
import type { Digest } from '../digest/digest.js';
import { digestFunctionToProto } from '../digest/digest-function.js';
import { Code, hasCode, isAbortError, StatusError } from '../errors/status-error.js';
import { type reapi, workerapi } from '../proto/index.js';
import { type Clock, systemClock } from '../util/clock.js';
import { type Logger, silentLogger } from '../util/logger.js';
import type { BuildQueue, ExecuteRequest, ListOperationsRequest, ListOperationsResult } from './build-queue.js';
import { type LoadedAction, loadAction } from './load-action.js';
import type { ExecutionStage, OperationSnapshot } from './operation-snapshot.js';
import { PlatformProperties } from './platform-properties.js';
import { durationToMs, msToDuration, msToTimestamp } from './proto-time.js';

export interface InMemoryBuildQueueOptions {
  /** Where Actions, Commands and input trees are read from (and checked for completeness). */
  contentAddressableStorage: BlobStore;
  /** Looked up before executing (unless skip_cache_lookup) and written after successful executions. */
  actionCache: ActionCache;
  /** @default systemClock */
  clock?: Clock;
  /** @default silentLogger */
  logger?: Logger;
  /** Timeout of actions that set none. @default 1 h */
  defaultTimeoutMs?: number;
  /** Actions asking for more are rejected with INVALID_ARGUMENT. @default 3 h */
  maxTimeoutMs?: number;
  /** Executions waiting for a worker; beyond it Execute fails with RESOURCE_EXHAUSTED. @default 10000 */
  maxQueuedOperations?: number;
  /** A queued action no connected worker can run fails (FAILED_PRECONDITION) after this. @default 60 s */
  platformQueueTimeoutMs?: number;
  /** A worker that has no Synchronize outstanding for this long is gone. @default 30 s */
  workerLeaseMs?: number;
  /** Attempts of an execution before a lost worker fails it with UNAVAILABLE. @default 3 */
  maxAttempts?: number;
  /** How long finished operations stay queryable. @default 1 h */
  keepCompletedMs?: number;
  /** Longest a Synchronize call is held when there is nothing to do. @default 10 s */
  longPollMs?: number;
  /** Execute and WaitExecution streams repeat the current state at least this often. @default 30 s */
  keepAliveMs?: number;
  /** Period of the sweeper (leases, platform timeouts, expiry). @default 1 s */
  sweepIntervalMs?: number;
  /** Generates operation and task ids. @default crypto.randomUUID */
  newId?: () => string;
}

/** Largest Action or Command accepted, so that a task (both, plus framing) fits a 4 MiB message. */
const MAX_ACTION_MESSAGE_BYTES = 1536 * 1024;
/** Tasks handed out in one Synchronize response stop here (a single task may exceed it). */
const SYNCHRONIZE_RESPONSE_BUDGET_BYTES = 3 * 1024 * 1024;
const DEFAULT_PAGE_SIZE = 100;
const MAX_PAGE_SIZE = 1000;

interface OperationEntry {
  readonly name: string;
  /** Creation order; the ListOperations page token. */
  readonly seq: number;
  readonly actionDigest: Digest;
  /** The execution this operation follows; absent while the cache is checked and inputs validated. */
  execution?: Execution;
  /** Set when the operation finished on its own: cache hit, or cancelled while sharing an execution. */
  ownResponse?: reapi.IExecuteResponse;
  completedAtMs?: number;
  /** Bumped on every visible change; followers compare it to know whether to report. */
  version: number;
  readonly listeners: Set<() => void>;
}

interface Execution {
  readonly actionDigest: Digest;
  /** Dropped once completed; the snapshot does not need it. */
  loaded?: LoadedAction;
  readonly platform: PlatformProperties;
  readonly doNotCache: boolean;
  readonly priority: number;
  /** Arrival order, the tie-breaker within a priority (kept on requeue, so retries go first). */
  readonly seq: number;
  readonly queuedAtMs: number;
  stage: Exclude<ExecutionStage, 'CACHE_CHECK'>;
  attempts: number;
  task?: TaskState;
  cancelRequested: boolean;
  /** The worker reported; the result is being written to the action cache. */
  finishing: boolean;
  response?: reapi.IExecuteResponse;
  readonly entries: Set<OperationEntry>;
  /** Since when no connected worker has had the platform this execution needs. */
  unsatisfiableSinceMs?: number;
}

interface TaskState {
  readonly id: string;
  readonly execution: Execution;
  readonly worker: WorkerState;
  /** The worker's Synchronize count when the task was handed out, for reconciliation. */
  readonly assignedInSync: number;
}

interface WorkerState {
  readonly id: string;
  name: string;
  platform: PlatformProperties;
  slots: number;
  readonly tasks: Map<string, TaskState>;
  /** Task ids to send in the next Synchronize response's cancel_task_ids. */
  readonly pendingCancels: Set<string>;
  /** Tasks the worker reported that the scheduler does not know, already told to cancel. */
  readonly unknownTasksCancelled: Set<string>;
  poll?: PendingPoll;
  syncCount: number;
  /** When the worker last called or was last answered; the lease runs from here while no poll is held. */
  lastSeenMs: number;
}

interface PendingPoll {
  answer(response: workerapi.ISynchronizeResponse): void;
}

export class InMemoryBuildQueue implements BuildQueue {
  private readonly cas: BlobStore;
  private readonly actionCache: ActionCache;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly newId: () => string;
  private readonly defaultTimeoutMs: number;
  private readonly maxTimeoutMs: number;
  private readonly maxQueuedOperations: number;
  private readonly platformQueueTimeoutMs: number;
  private readonly workerLeaseMs: number;
  private readonly maxAttempts: number;
  private readonly keepCompletedMs: number;
  private readonly longPollMs: number;
  private readonly keepAliveMs: number;
  private readonly sweepIntervalMs: number;

  /** Every known operation by name, in creation order. */
  private readonly operations = new Map<string, OperationEntry>();
  /** Queued and running cacheable executions by action digest key, for deduplication. */
  private readonly inFlight = new Map<string, Execution>();
  /** Executions waiting for a worker, sorted by (priority, seq). */
  private readonly queue: Execution[] = [];
  private readonly workers = new Map<string, WorkerState>();
  private readonly tasks = new Map<string, TaskState>();
  /** Finished operations in completion order, for expiry; `completedHead` is the first live index. */
  private completed: OperationEntry[] = [];
  private completedHead = 0;
  private nextSeq = 0;
  private readonly closing = new AbortController();

  constructor(opts: InMemoryBuildQueueOptions) {
    this.cas = opts.contentAddressableStorage;
    this.actionCache = opts.actionCache;
    this.clock = opts.clock ?? systemClock;
    this.logger = opts.logger ?? silentLogger;
    this.newId = opts.newId ?? randomUUID;
    this.defaultTimeoutMs = positive('defaultTimeoutMs', opts.defaultTimeoutMs, 60 * 60_000);
    this.maxTimeoutMs = positive('maxTimeoutMs', opts.maxTimeoutMs, 3 * 60 * 60_000);
    this.maxQueuedOperations = positive('maxQueuedOperations', opts.maxQueuedOperations, 10_000);
    this.platformQueueTimeoutMs = positive('platformQueueTimeoutMs', opts.platformQueueTimeoutMs, 60_000);
    this.workerLeaseMs = positive('workerLeaseMs', opts.workerLeaseMs, 30_000);
    this.maxAttempts = positive('maxAttempts', opts.maxAttempts, 3);
    this.keepCompletedMs = positive('keepCompletedMs', opts.keepCompletedMs, 60 * 60_000);
    this.longPollMs = positive('longPollMs', opts.longPollMs, 10_000);
    this.keepAliveMs = positive('keepAliveMs', opts.keepAliveMs, 30_000);
    this.sweepIntervalMs = positive('sweepIntervalMs', opts.sweepIntervalMs, 1_000);
    if (this.defaultTimeoutMs > this.maxTimeoutMs) {
      throw StatusError.invalidArgument(
        `Failed to create build queue: defaultTimeoutMs ${this.defaultTimeoutMs} exceeds maxTimeoutMs ${this.maxTimeoutMs}`,
        [{ field: 'defaultTimeoutMs', description: 'Must not exceed maxTimeoutMs' }],
      );
    }
    // Every follower and held poll listens for close; there may be thousands.
    setMaxListeners(0, this.closing.signal);
    void this.runSweeper();
  }

  /** Counts for logs, metrics and tests. */
  stats(): { queuedOperations: number; executingOperations: number; workers: number; operations: number } {
    return { queuedOperations: this.queue.length, executingOperations: this.tasks.size, workers: this.workers.size, operations: this.operations.size };
  }

  // ---------------------------------------------------------------------------------------------
  // Client side

  async *execute(request: ExecuteRequest, opts: CallOptions = {}): AsyncGenerator<OperationSnapshot> {
    this.throwIfClosed();
    const entry = this.createEntry(request.actionDigest);
    try {
      await this.startOrJoin(entry, request, opts.signal);
    } catch (err) {
      this.forget(entry);
      throw err;
    }
    yield* this.follow(entry, opts.signal);
  }

  async *waitExecution(name: string, opts: CallOptions = {}): AsyncGenerator<OperationSnapshot> {
    this.throwIfClosed();
    yield* this.follow(this.lookup(name), opts.signal);
  }

  getOperation(name: string): OperationSnapshot {
    return this.snapshot(this.lookup(name));
  }

  listOperations(request: ListOperationsRequest): ListOperationsResult {
    const pageSize = Math.min(request.pageSize && request.pageSize > 0 ? request.pageSize : DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
    let after = -1;
    if (request.pageToken) {
      after = /^\d+$/.test(request.pageToken) ? Number(request.pageToken) : NaN;
      if (!Number.isSafeInteger(after)) {
        throw StatusError.invalidArgument(`Failed to list operations: page token ${JSON.stringify(request.pageToken)} is malformed`, [
          { field: 'page_token', description: 'Must be the next_page_token of a previous response' },
        ]);
      }
    }
    const filter = (request.filter ?? '').replace(/\s+/g, '');
    if (filter !== '' && filter !== 'done=true' && filter !== 'done=false') {
      throw StatusError.invalidArgument(`Failed to list operations: filter ${JSON.stringify(request.filter)} is not supported`, [
        { field: 'filter', description: 'Must be empty, "done=true" or "done=false"' },
      ]);
    }
    const prefix = request.name ? request.name + '/' : '';
    const operations: OperationSnapshot[] = [];
    let nextPageToken = '';
    let lastSeq = after;
    for (const entry of this.operations.values()) {
      if (entry.seq <= after || !entry.name.startsWith(prefix)) continue;
      const snapshot = this.snapshot(entry);
      if (filter && (snapshot.stage === 'COMPLETED') !== (filter === 'done=true')) continue;
      if (operations.length === pageSize) {
        // There is at least one more: the next page starts after the last one returned.
        nextPageToken = String(lastSeq);
        break;
      }
      operations.push(snapshot);
      lastSeq = entry.seq;
    }
    return { operations, nextPageToken };
  }

  cancelOperation(name: string): void {
    const entry = this.lookup(name);
    if (this.snapshot(entry).stage === 'COMPLETED') return;
    const execution = entry.execution;
    if (!execution) {
      // Still checking the cache or validating inputs: startOrJoin sees ownResponse and stops.
      this.completeEntry(entry, cancelledResponse('The operation was cancelled before it was queued'));
      return;
    }
    const sharing = [...execution.entries].some((e) => e !== entry && !e.ownResponse);
    if (sharing) {
      // Other callers still want this execution: only this operation ends.
      execution.entries.delete(entry);
      this.completeEntry(entry, cancelledResponse('The operation was cancelled; the execution continues for other callers'));
      return;
    }
    this.cancelExecution(execution);
  }

  deleteOperation(name: string): void {
    const entry = this.lookup(name);
    if (this.snapshot(entry).stage !== 'COMPLETED') {
      throw StatusError.failedPrecondition(`Failed to delete operation ${JSON.stringify(name)}: it has not finished; cancel it first`);
    }
    this.forget(entry);
  }

  async waitOperation(name: string, timeoutMs: number, opts: CallOptions = {}): Promise<OperationSnapshot> {
    const entry = this.lookup(name);
    const deadline = this.clock.now() + Math.max(0, timeoutMs);
    for (;;) {
      const snapshot = this.snapshot(entry);
      const remainingMs = deadline - this.clock.now();
      if (snapshot.stage === 'COMPLETED' || remainingMs <= 0) return snapshot;
      await this.waitForChange(entry, entry.version, remainingMs, opts.signal);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Worker side

  async synchronize(request: workerapi.ISynchronizeRequest, opts: CallOptions = {}): Promise<workerapi.ISynchronizeResponse> {
    this.throwIfClosed();
    const workerId = request.workerId ?? '';
    if (!workerId) {
      throw StatusError.invalidArgument('Failed to synchronize worker: worker_id is empty', [
        { field: 'worker_id', description: 'Must identify the worker process' },
      ]);
    }
    let worker = this.workers.get(workerId);
    if (!worker) {
      worker = {
        id: workerId,
        name: workerId,
        platform: PlatformProperties.empty(),
        slots: 0,
        tasks: new Map(),
        pendingCancels: new Set(),
        unknownTasksCancelled: new Set(),
        syncCount: 0,
        lastSeenMs: this.clock.now(),
      };
      this.workers.set(workerId, worker);
    }
    // A worker keeps one call outstanding; a new one supersedes whatever is still held.
    worker.poll?.answer(this.emptyResponse());
    const isNew = worker.syncCount === 0;
    worker.syncCount++;
    worker.lastSeenMs = this.clock.now();
    worker.name = request.workerName || workerId;
    worker.platform = PlatformProperties.fromProto(request.platform);
    worker.slots = Math.max(0, request.slots ?? 0);
    if (isNew) this.logger.info('Worker joined', { workerId, workerName: worker.name, slots: worker.slots, platform: worker.platform.toString() });
    this.reconcile(worker, request.runningTaskIds ?? []);
    // Tasks reconciliation requeued may suit other waiting workers.
    this.dispatch();

    const response = this.takeWork(worker);
    if (response.tasks?.length || response.cancelTaskIds?.length) return response;
    if (opts.signal?.aborted) return this.emptyResponse();

    const requestedWaitMs = durationToMs(request.maxWait);
    const waitMs = requestedWaitMs > 0 ? Math.min(requestedWaitMs, this.longPollMs) : this.longPollMs;
    const w = worker;
    return new Promise((resolve) => {
      const timer = new AbortController();
      let settled = false;
      const onAbort = () => poll.answer(this.emptyResponse());
      const poll: PendingPoll = {
        answer: (r) => {
          if (settled) return;
          settled = true;
          timer.abort();
          opts.signal?.removeEventListener('abort', onAbort);
          if (w.poll === poll) w.poll = undefined;
          // From here the worker must call again within its lease.
          w.lastSeenMs = this.clock.now();
          resolve(r);
        },
      };
      w.poll = poll;
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      this.clock.sleep(waitMs, timer.signal).then(
        () => {
          // Checked before takeWork: tasks taken for an already answered call would be lost.
          if (!settled) poll.answer(this.takeWork(w));
        },
        () => {},
      );
    });
  }

  async completeTask(request: workerapi.ICompleteTaskRequest): Promise<void> {
    const task = this.tasks.get(request.taskId ?? '');
    if (!task || (request.workerId && request.workerId !== task.worker.id)) {
      // Typically a task cancelled or requeued after its worker was presumed lost; nobody waits for it.
      this.logger.debug('Ignoring the result of an unknown task', { taskId: request.taskId, workerId: request.workerId });
      return;
    }
    this.releaseTask(task);
    if (this.workers.get(task.worker.id) === task.worker) task.worker.lastSeenMs = this.clock.now();
    const execution = task.execution;
    if (execution.task !== task || execution.stage !== 'EXECUTING') {
      this.dispatch();
      return;
    }
    if ((request.response?.status?.code ?? Code.OK) === Code.UNAVAILABLE && !execution.cancelRequested) {
      // The worker could not run it (shutting down, or no free slot): another attempt, on any worker,
      // may succeed, exactly as when a worker disappears.
      this.loseTask(task, `worker reported UNAVAILABLE: ${request.response?.status?.message ?? ''}`);
      this.dispatch();
      return;
    }
    execution.task = undefined;
    const response = this.normalizeResponse(execution, task.worker, request.response);
    if (execution.cancelRequested) {
      this.completeExecution(execution, { ...response, status: cancelledResponse('The operation was cancelled while it ran').status });
      this.dispatch();
      return;
    }
    execution.finishing = true;
    // Hand the freed slot its next task before waiting for the action cache.
    this.dispatch();
    const status = response.status!;
    if ((status.code ?? Code.OK) === Code.OK && (response.result?.exitCode ?? 0) === 0 && !execution.doNotCache) {
      try {
        await this.actionCache.updateActionResult(execution.actionDigest, response.result!);
      } catch (err) {
        this.logger.error('Failed to store an action result in the action cache', { actionDigest: execution.actionDigest.toString(), error: err });
        response.message = [response.message, `Failed to store the result in the action cache: ${(err as Error).message}`].filter(Boolean).join('; ');
      }
    }
    this.completeExecution(execution, response);
  }

  close(): void {
    if (this.closing.signal.aborted) return;
    this.closing.abort();
    for (const worker of this.workers.values()) worker.poll?.answer(this.emptyResponse());
  }

  // ---------------------------------------------------------------------------------------------
  // Execution lifecycle

  private createEntry(actionDigest: Digest): OperationEntry {
    const id = this.newId();
    const name = actionDigest.instanceName ? `${actionDigest.instanceName}/operations/${id}` : `operations/${id}`;
    if (this.operations.has(name)) throw StatusError.internal(`Failed to create operation: name ${JSON.stringify(name)} is already in use`);
    const entry: OperationEntry = { name, seq: this.nextSeq++, actionDigest, version: 0, listeners: new Set() };
    this.operations.set(name, entry);
    return entry;
  }

  private async startOrJoin(entry: OperationEntry, request: ExecuteRequest, signal?: AbortSignal): Promise<void> {
    const { actionDigest } = request;
    if (!request.skipCacheLookup) {
      const cached = await this.lookupActionCache(actionDigest, signal);
      if (entry.ownResponse) return;
      if (cached) {
        this.completeEntry(entry, { result: cached, cachedResult: true, status: { code: Code.OK } });
        return;
      }
    }
    if (this.join(entry)) return;
    const loaded = await loadAction(this.cas, actionDigest, {
      defaultTimeoutMs: this.defaultTimeoutMs,
      maxTimeoutMs: this.maxTimeoutMs,
      maxMessageBytes: MAX_ACTION_MESSAGE_BYTES,
      signal,
    });
    throwIfAborted(signal);
    this.throwIfClosed();
    if (entry.ownResponse) return;
    // Another caller may have queued the same action while we validated.
    if (!loaded.action.doNotCache && this.join(entry)) return;
    this.enqueue(entry, request, loaded);
  }

  private join(entry: OperationEntry): boolean {
    const execution = this.inFlight.get(entry.actionDigest.key);
    if (!execution) return false;
    this.attach(entry, execution);
    this.logger.debug('Joined an in-flight execution', { operation: entry.name, actionDigest: entry.actionDigest.toString() });
    return true;
  }

  private enqueue(entry: OperationEntry, request: ExecuteRequest, loaded: LoadedAction): void {
    if (this.queue.length >= this.maxQueuedOperations) {
      throw StatusError.resourceExhausted(
        `Failed to queue action ${request.actionDigest}: the queue already holds the maximum of ${this.maxQueuedOperations} operations`,
      );
    }
    const execution: Execution = {
      actionDigest: request.actionDigest,
      loaded,
      platform: loaded.platform,
      doNotCache: loaded.action.doNotCache,
      priority: request.priority,
      seq: entry.seq,
      queuedAtMs: this.clock.now(),
      stage: 'QUEUED',
      attempts: 0,
      cancelRequested: false,
      finishing: false,
      entries: new Set(),
    };
    if (!this.anyWorkerSatisfies(execution.platform)) execution.unsatisfiableSinceMs = this.clock.now();
    if (!execution.doNotCache) this.inFlight.set(request.actionDigest.key, execution);
    this.insertIntoQueue(execution);
    this.attach(entry, execution);
    this.logger.debug('Queued action', { operation: entry.name, actionDigest: request.actionDigest.toString(), priority: request.priority });
    this.dispatch();
  }

  private attach(entry: OperationEntry, execution: Execution): void {
    entry.execution = execution;
    execution.entries.add(entry);
    if (execution.stage === 'COMPLETED') this.markCompleted(entry);
    this.bump(entry);
  }

  private cancelExecution(execution: Execution): void {
    if (execution.stage === 'QUEUED') {
      this.removeFromQueue(execution);
      this.completeExecution(execution, cancelledResponse('The operation was cancelled while queued'));
      return;
    }
    if (execution.stage !== 'EXECUTING' || execution.finishing || execution.cancelRequested) return;
    execution.cancelRequested = true;
    if (this.inFlight.get(execution.actionDigest.key) === execution) this.inFlight.delete(execution.actionDigest.key);
    const task = execution.task;
    if (!task || this.workers.get(task.worker.id) !== task.worker) {
      if (task) this.releaseTask(task);
      this.completeExecution(execution, cancelledResponse('The operation was cancelled; its worker is gone'));
      return;
    }
    // The worker kills it on its next Synchronize answer and then reports through CompleteTask.
    task.worker.pendingCancels.add(task.id);
    this.dispatch();
  }

  private completeExecution(execution: Execution, response: reapi.IExecuteResponse): void {
    execution.stage = 'COMPLETED';
    execution.response = response;
    execution.task = undefined;
    execution.finishing = false;
    execution.loaded = undefined;
    if (this.inFlight.get(execution.actionDigest.key) === execution) this.inFlight.delete(execution.actionDigest.key);
    for (const entry of execution.entries) {
      if (entry.ownResponse) continue;
      this.markCompleted(entry);
      this.bump(entry);
    }
  }

  private completeEntry(entry: OperationEntry, response: reapi.IExecuteResponse): void {
    entry.ownResponse = response;
    this.markCompleted(entry);
    this.bump(entry);
  }

  private markCompleted(entry: OperationEntry): void {
    if (entry.completedAtMs !== undefined) return;
    entry.completedAtMs = this.clock.now();
    this.completed.push(entry);
  }

  private notifyExecution(execution: Execution): void {
    for (const entry of execution.entries) if (!entry.ownResponse) this.bump(entry);
  }

  private bump(entry: OperationEntry): void {
    entry.version++;
    for (const listener of [...entry.listeners]) listener();
  }

  private forget(entry: OperationEntry): void {
    if (this.operations.get(entry.name) === entry) this.operations.delete(entry.name);
    entry.execution?.entries.delete(entry);
  }

  private snapshot(entry: OperationEntry): OperationSnapshot {
    const base = { name: entry.name, actionDigest: entry.actionDigest };
    if (entry.ownResponse) return { ...base, stage: 'COMPLETED', response: entry.ownResponse };
    const execution = entry.execution;
    if (!execution) return { ...base, stage: 'CACHE_CHECK' };
    if (execution.stage === 'COMPLETED') return { ...base, stage: 'COMPLETED', response: execution.response ?? {} };
    return { ...base, stage: execution.stage };
  }

  private lookup(name: string): OperationEntry {
    const entry = this.operations.get(name);
    if (!entry) throw StatusError.notFound(`Failed to find operation ${JSON.stringify(name)}: it is unknown or has expired`);
    return entry;
  }

  /** Yields the entry's state now, then on every change or keep-alive, until it is COMPLETED. */
  private async *follow(entry: OperationEntry, signal?: AbortSignal): AsyncGenerator<OperationSnapshot> {
    for (;;) {
      const seen = entry.version;
      const snapshot = this.snapshot(entry);
      yield snapshot;
      if (snapshot.stage === 'COMPLETED') return;
      await this.waitForChange(entry, seen, this.keepAliveMs, signal);
    }
  }

  /** Resolves when `entry` changes past `seenVersion` or after `timeoutMs`; rejects on abort or close. */
  private waitForChange(entry: OperationEntry, seenVersion: number, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (entry.version !== seenVersion) return resolve();
      if (signal?.aborted) return reject(abortReason(signal));
      if (this.closing.signal.aborted) return reject(shuttingDown());
      const timer = new AbortController();
      let settled = false;
      const finish = (err?: unknown) => {
        if (settled) return;
        settled = true;
        entry.listeners.delete(onChange);
        timer.abort();
        signal?.removeEventListener('abort', onAbort);
        this.closing.signal.removeEventListener('abort', onClose);
        if (err === undefined) resolve();
        else reject(err);
      };
      const onChange = () => finish();
      const onAbort = () => finish(abortReason(signal!));
      const onClose = () => finish(shuttingDown());
      entry.listeners.add(onChange);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.closing.signal.addEventListener('abort', onClose, { once: true });
      this.clock.sleep(timeoutMs, timer.signal).then(
        () => finish(),
        () => {},
      );
    });
  }

  private async lookupActionCache(actionDigest: Digest, signal?: AbortSignal): Promise<reapi.IActionResult | undefined> {
    try {
      return await this.actionCache.getActionResult(actionDigest, { signal });
    } catch (err) {
      if (hasCode(err, Code.NOT_FOUND)) return undefined;
      if (signal?.aborted || isAbortError(err)) throw err;
      // The cache is an optimisation: an unreachable cache must not stop builds.
      this.logger.warn('Failed to look up the action cache; executing the action', { actionDigest: actionDigest.toString(), error: err });
      return undefined;
    }
  }

  /** The worker's response with the scheduler's invariants: a status always, a result on success. */
  private normalizeResponse(execution: Execution, worker: WorkerState, reported: reapi.IExecuteResponse | null | undefined): reapi.IExecuteResponse {
    const response: reapi.IExecuteResponse = { ...(reported ?? {}), cachedResult: false };
    let status = response.status ?? { code: Code.OK };
    if ((status.code ?? Code.OK) === Code.OK && !response.result) {
      status = { code: Code.INTERNAL, message: `Failed to execute action ${execution.actionDigest}: worker ${JSON.stringify(worker.name)} reported success without an ActionResult` };
    }
    response.status = status;
    if (response.result) {
      const metadata: reapi.IExecutedActionMetadata = { ...(response.result.executionMetadata ?? {}) };
      metadata.queuedTimestamp ??= msToTimestamp(execution.queuedAtMs);
      if (!metadata.worker) metadata.worker = worker.name;
      response.result = { ...response.result, executionMetadata: metadata };
    }
    return response;
  }

  // ---------------------------------------------------------------------------------------------
  // Queue and workers

  private insertIntoQueue(execution: Execution): void {
    // Binary search for the first element that sorts after `execution`.
    let lo = 0;
    let hi = this.queue.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const other = this.queue[mid]!;
      if (other.priority < execution.priority || (other.priority === execution.priority && other.seq < execution.seq)) lo = mid + 1;
      else hi = mid;
    }
    this.queue.splice(lo, 0, execution);
  }

  private removeFromQueue(execution: Execution): void {
    const i = this.queue.indexOf(execution);
    if (i >= 0) this.queue.splice(i, 1);
  }

  private anyWorkerSatisfies(platform: PlatformProperties): boolean {
    for (const worker of this.workers.values()) if (worker.platform.satisfies(platform)) return true;
    return false;
  }

  /** Answers every waiting worker that now has something to do. */
  private dispatch(): void {
    for (const worker of this.workers.values()) {
      if (!worker.poll) continue;
      const hasWork = this.queue.length > 0 && worker.slots - worker.tasks.size > 0;
      if (!hasWork && worker.pendingCancels.size === 0) continue;
      const response = this.takeWork(worker);
      if (response.tasks?.length || response.cancelTaskIds?.length) worker.poll.answer(response);
    }
  }

  /** Pending cancellations plus queued executions the worker can run, up to its free slots. */
  private takeWork(worker: WorkerState): workerapi.ISynchronizeResponse {
    const response = { tasks: [] as workerapi.ITask[], cancelTaskIds: [...worker.pendingCancels], lease: msToDuration(this.workerLeaseMs) };
    worker.pendingCancels.clear();
    let freeSlots = worker.slots - worker.tasks.size;
    let budgetBytes = SYNCHRONIZE_RESPONSE_BUDGET_BYTES;
    const fits = new Map<string, boolean>();
    for (let i = 0; i < this.queue.length && freeSlots > 0; ) {
      const execution = this.queue[i]!;
      let ok = fits.get(execution.platform.key);
      if (ok === undefined) fits.set(execution.platform.key, (ok = worker.platform.satisfies(execution.platform)));
      if (!ok) {
        i++;
        continue;
      }
      const taskId = this.newId();
      const task = this.toTaskProto(execution, taskId);
      const sizeBytes = workerapi.Task.encode(task).finish().length;
      if (response.tasks.length > 0 && sizeBytes > budgetBytes) break;
      budgetBytes -= sizeBytes;
      this.queue.splice(i, 1);
      this.assign(execution, worker, taskId);
      response.tasks.push(task);
      freeSlots--;
    }
    return response;
  }

  private toTaskProto(execution: Execution, taskId: string): workerapi.ITask {
    const loaded = execution.loaded!;
    const primary = execution.entries.values().next().value as OperationEntry | undefined;
    return {
      taskId,
      operationName: primary?.name ?? '',
      instanceName: execution.actionDigest.instanceName,
      digestFunction: digestFunctionToProto(execution.actionDigest.digestFunction),
      actionDigest: execution.actionDigest.toProto(),
      action: loaded.action,
      command: loaded.command,
      timeout: msToDuration(loaded.timeoutMs),
      queuedTimestamp: msToTimestamp(execution.queuedAtMs),
    };
  }

  private assign(execution: Execution, worker: WorkerState, taskId: string): void {
    const task: TaskState = { id: taskId, execution, worker, assignedInSync: worker.syncCount };
    execution.stage = 'EXECUTING';
    execution.attempts++;
    execution.task = task;
    execution.unsatisfiableSinceMs = undefined;
    worker.tasks.set(taskId, task);
    this.tasks.set(taskId, task);
    this.logger.debug('Assigned task', { taskId, worker: worker.name, actionDigest: execution.actionDigest.toString(), attempt: execution.attempts });
    this.notifyExecution(execution);
  }

  private releaseTask(task: TaskState): void {
    this.tasks.delete(task.id);
    task.worker.tasks.delete(task.id);
    task.worker.pendingCancels.delete(task.id);
  }

  /**
   * Compares what the worker says it runs with what it was given. A task missing from the list is
   * lost only if it was handed out before the worker's previous Synchronize: one that was handed out
   * in answer to that very call may legitimately not be listed yet (or its CompleteTask may be in
   * flight). Tasks the worker runs that the scheduler does not know are cancelled.
   */
  private reconcile(worker: WorkerState, runningTaskIds: readonly string[]): void {
    const listed = new Set(runningTaskIds);
    for (const task of [...worker.tasks.values()]) {
      if (!listed.has(task.id) && task.assignedInSync < worker.syncCount - 1) {
        this.loseTask(task, `worker ${JSON.stringify(worker.name)} no longer reports task ${task.id}`);
      }
    }
    // Each unknown task is cancelled once: the worker lists it until the kill and its report are
    // done, and answering every such call at once with the same cancellation would make it spin.
    for (const id of listed) {
      if (worker.tasks.has(id) || worker.unknownTasksCancelled.has(id)) continue;
      worker.pendingCancels.add(id);
      worker.unknownTasksCancelled.add(id);
    }
    for (const id of worker.unknownTasksCancelled) if (!listed.has(id)) worker.unknownTasksCancelled.delete(id);
  }

  /** Requeues the execution of a task whose worker lost it, or fails it after `maxAttempts`. */
  private loseTask(task: TaskState, reason: string): void {
    this.releaseTask(task);
    const execution = task.execution;
    if (execution.task !== task) return;
    execution.task = undefined;
    if (execution.cancelRequested) {
      this.completeExecution(execution, cancelledResponse('The operation was cancelled; its worker is gone'));
      return;
    }
    if (execution.attempts >= this.maxAttempts) {
      this.logger.warn('Giving up on an action after losing its worker', { actionDigest: execution.actionDigest.toString(), attempts: execution.attempts, reason });
      this.completeExecution(execution, {
        status: StatusError.unavailable(`Failed to execute action ${execution.actionDigest}: lost its worker on all ${execution.attempts} attempts; last: ${reason}`).toProto(),
      });
      return;
    }
    this.logger.warn('Requeuing an action after losing its worker', { actionDigest: execution.actionDigest.toString(), attempts: execution.attempts, reason });
    execution.stage = 'QUEUED';
    if (!this.anyWorkerSatisfies(execution.platform)) execution.unsatisfiableSinceMs = this.clock.now();
    this.insertIntoQueue(execution);
    this.notifyExecution(execution);
  }

  private removeWorker(worker: WorkerState, reason: string): void {
    this.workers.delete(worker.id);
    worker.poll?.answer(this.emptyResponse());
    this.logger.warn('Worker lost', { workerId: worker.id, workerName: worker.name, runningTasks: worker.tasks.size, reason });
    for (const task of [...worker.tasks.values()]) this.loseTask(task, reason);
  }

  private emptyResponse(): workerapi.ISynchronizeResponse {
    return { tasks: [], cancelTaskIds: [], lease: msToDuration(this.workerLeaseMs) };
  }

  // ---------------------------------------------------------------------------------------------
  // Time-based housekeeping

  private async runSweeper(): Promise<void> {
    const signal = this.closing.signal;
    while (!signal.aborted) {
      try {
        await this.clock.sleep(this.sweepIntervalMs, signal);
      } catch {
        return;
      }
      try {
        this.sweep();
      } catch (err) {
        this.logger.error('Failed to sweep the build queue', { error: err });
      }
    }
  }

  /** Expires worker leases, fails actions no worker can run, forgets old finished operations. */
  private sweep(): void {
    const now = this.clock.now();
    for (const worker of [...this.workers.values()]) {
      if (!worker.poll && now - worker.lastSeenMs >= this.workerLeaseMs) {
        this.removeWorker(worker, `worker ${JSON.stringify(worker.name)} did not synchronize for ${now - worker.lastSeenMs} ms`);
      }
    }

    const satisfiable = new Map<string, boolean>();
    for (const execution of [...this.queue]) {
      let ok = satisfiable.get(execution.platform.key);
      if (ok === undefined) satisfiable.set(execution.platform.key, (ok = this.anyWorkerSatisfies(execution.platform)));
      if (ok) {
        execution.unsatisfiableSinceMs = undefined;
      } else if (execution.unsatisfiableSinceMs === undefined) {
        execution.unsatisfiableSinceMs = now;
      } else if (now - execution.unsatisfiableSinceMs >= this.platformQueueTimeoutMs) {
        this.removeFromQueue(execution);
        this.completeExecution(execution, {
          status: StatusError.failedPrecondition(
            `Failed to schedule action ${execution.actionDigest}: no connected worker has platform ${execution.platform} (waited ${now - execution.unsatisfiableSinceMs} ms)`,
          ).toProto(),
        });
      }
    }

    while (this.completedHead < this.completed.length) {
      const entry = this.completed[this.completedHead]!;
      if (now - entry.completedAtMs! < this.keepCompletedMs) break;
      this.forget(entry);
      this.completedHead++;
    }
    if (this.completedHead > 1024 && this.completedHead * 2 > this.completed.length) {
      this.completed = this.completed.slice(this.completedHead);
      this.completedHead = 0;
    }

    this.dispatch();
  }

  private throwIfClosed(): void {
    if (this.closing.signal.aborted) throw shuttingDown();
  }
}

function cancelledResponse(message: string): reapi.IExecuteResponse {
  return { status: StatusError.cancelled(message).toProto() };
}

function shuttingDown(): StatusError {
  return StatusError.unavailable('The scheduler is shutting down');
}

function abortReason(signal: AbortSignal): StatusError {
  return signal.reason instanceof StatusError ? signal.reason : StatusError.cancelled('The call was cancelled');
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw abortReason(signal);
}

function positive(field: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value <= 0) {
    throw StatusError.invalidArgument(`Failed to create build queue: ${field} ${JSON.stringify(value)} is not a positive number`, [
      { field, description: 'Must be a positive number' },
    ]);
  }
  return value;
}
