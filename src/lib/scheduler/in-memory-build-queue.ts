/**
 * The scheduler's state in one process, after Buildbarn's InMemoryBuildQueue. This file is the
 * coordinator: it implements BuildQueue by moving executions through the rooms that each hold one
 * kind of state:
 * - operation-table.ts: operations by name, in-flight deduplication, expiry of finished ones;
 * - execution-queue.ts: executions waiting for a worker, by priority and platform;
 * - worker-registry.ts: workers, their tasks, cancellations and held long-polls;
 * - task-dispatcher.ts: filling free worker slots from the queue, requeueing lost tasks;
 * - lease-sweeper.ts: what happens because time passes (leases, platform timeouts, expiry);
 * - operation-follower.ts: streaming an operation's changes to its callers.
 *
 * Workers pull work with a long-poll Synchronize (see proto/bzutil/worker/v1/worker.proto). Every
 * event that creates work for a waiting worker (an action queued, a slot freed, a cancellation)
 * answers that worker's pending poll at once, so dispatch never waits for a timer. When a worker is
 * lost its tasks are requeued as new tasks, up to `maxAttempts`.
 *
 * With a durable `state` store (state-store.ts) every state change is also written through, in one
 * transaction, and the rooms are rebuilt from it by the constructor (state-journal.ts).
 */
import type { CallOptions } from '../blobstore/blob-store.js';
import type { Digest } from '../digest/digest.js';
import { Code, StatusError } from '../errors/status-error.js';
import type { reapi, workerapi } from '../proto/index.js';
import { durationToMs } from '../proto/proto-time.js';
import type { BuildQueue, ExecuteRequest, ListOperationsRequest, ListOperationsResult } from './build-queue.js';
import type { InMemoryBuildQueueOptions } from './build-queue-options.js';
import { BuildQueueBase } from './build-queue-base.js';
import { InMemoryExecutionQueue } from './execution-queue.js';
import { LeaseSweeper } from './lease-sweeper.js';
import { lookupActionCache } from './action-cache-lookup.js';
import { type LoadedAction, loadActionToQueue } from './load-action.js';
import { OperationFollower } from './operation-follower.js';
import { formatOperationName, parseOperationName } from './operation-names.js';
import type { OperationSnapshot } from './operation-snapshot.js';
import { InMemoryOperationTable, listPage, parseListRequest } from './operation-table.js';
import {
  bump,
  cancelledResponse,
  type Execution,
  type OperationEntry,
  snapshotOf,
} from './scheduler-state.js';
import { admitToQueue } from './queue-limits.js';
import { TaskDispatcher } from './task-dispatcher.js';
import { normalizeResponse } from './task-messages.js';
import { admitCompletion, admitSynchronize } from './worker-admission.js';
import { WorkerRegistry } from './worker-registry.js';
import { NO_STATE_STORE, type SchedulerStateStore } from './state-store.js';
import { restoreState, storedExecution, storedOperation } from './state-journal.js';

export type { InMemoryBuildQueueOptions } from './build-queue-options.js';

export class InMemoryBuildQueue extends BuildQueueBase implements BuildQueue {

  private readonly table = new InMemoryOperationTable();
  private readonly queue = new InMemoryExecutionQueue<Execution>();
  private readonly workers: WorkerRegistry;
  private readonly follower: OperationFollower;
  private readonly sweeper: LeaseSweeper;
  private readonly dispatcher: TaskDispatcher;
  private readonly store: SchedulerStateStore;
  private nextSeq = 0;

  constructor(opts: InMemoryBuildQueueOptions) {
    super(opts);
    this.store = opts.state ?? NO_STATE_STORE;
    this.workers = new WorkerRegistry(this.clock, this.logger);
    this.follower = new OperationFollower(this.clock, this.closing.signal, this.limits.keepAliveMs);
    this.dispatcher = new TaskDispatcher({
      ...this.limits,
      clock: this.clock,
      logger: this.logger,
      newId: this.newId,
      queue: this.queue,
      workers: this.workers,
      completeExecution: (execution, response) => this.completeExecution(execution, response),
      notifyExecution: (execution) => this.notifyExecution(execution),
      loadedOf: (execution) => execution.loaded ?? this.store.loadAction(execution.seq),
    });
    this.sweeper = new LeaseSweeper({
      ...this.limits,
      clock: this.clock,
      logger: this.logger,
      intervalMs: this.limits.sweepIntervalMs,
      table: this.table,
      queue: this.queue,
      workers: this.workers,
      loseWorker: (worker, reason) => this.dispatcher.removeWorker(worker, reason),
      expireTask: (task, nowMs) => this.dispatcher.expireTask(task, nowMs),
      failUnschedulable: (execution, waitedMs) =>
        this.completeExecution(execution, {
          status: StatusError.failedPrecondition(
            `Failed to schedule action ${execution.actionDigest}: no connected worker has platform ${execution.platform} (waited ${waitedMs} ms)`,
          ).toProto(),
        }),
      forget: (entry) => this.forget(entry),
      dispatch: () => this.dispatcher.dispatch(),
    });
    this.nextSeq = restoreState({ ...this.limits, store: this.store, table: this.table, queue: this.queue, workers: this.workers, clock: this.clock, logger: this.logger });
    void this.sweeper.run(this.closing.signal);
  }

  /** Counts for logs, metrics and tests. */
  stats(): { queuedOperations: number; executingOperations: number; workers: number; operations: number } {
    return { queuedOperations: this.queue.size, executingOperations: this.workers.taskCount, workers: this.workers.workerCount, operations: this.table.size };
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
    yield* this.follower.follow(entry, opts.signal);
  }

  async *waitExecution(name: string, opts: CallOptions = {}): AsyncGenerator<OperationSnapshot> {
    this.throwIfClosed();
    yield* this.follower.follow(this.lookup(name), opts.signal);
  }

  getOperation(name: string): OperationSnapshot {
    return snapshotOf(this.lookup(name));
  }

  listOperations(request: ListOperationsRequest): ListOperationsResult {
    return listPage(this.table, parseListRequest(request));
  }

  cancelOperation(name: string): void {
    const entry = this.lookup(name);
    if (snapshotOf(entry).stage === 'COMPLETED') return;
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
    if (snapshotOf(entry).stage !== 'COMPLETED') {
      throw StatusError.failedPrecondition(`Failed to delete operation ${JSON.stringify(name)}: it has not finished; cancel it first`);
    }
    this.forget(entry);
  }

  waitOperation(name: string, timeoutMs: number, opts: CallOptions = {}): Promise<OperationSnapshot> {
    return this.follower.waitUntilDone(this.lookup(name), timeoutMs, opts.signal);
  }

  // ---------------------------------------------------------------------------------------------
  // Worker side

  async synchronize(request: workerapi.ISynchronizeRequest, opts: CallOptions = {}): Promise<workerapi.ISynchronizeResponse> {
    this.throwIfClosed();
    const slots = admitSynchronize(request, this.limits.maxWorkerSlots, this.logger);
    // A worker keeps one call outstanding; a new one supersedes whatever is still held.
    this.workers.get(request.workerId!)?.poll?.answer(this.dispatcher.emptyResponse());
    const worker = this.workers.register(request, slots);
    for (const task of this.workers.reconcile(worker, request.runningTaskIds ?? [])) {
      this.dispatcher.loseTask(task, `worker ${JSON.stringify(worker.name)} no longer reports task ${task.id}`);
    }
    // Tasks reconciliation requeued may suit other waiting workers.
    this.dispatcher.dispatch();

    const response = this.dispatcher.takeWork(worker);
    if (response.tasks?.length || response.cancelTaskIds?.length) return response;
    if (opts.signal?.aborted) return this.dispatcher.emptyResponse();

    const requestedWaitMs = durationToMs(request.maxWait);
    const waitMs = requestedWaitMs > 0 ? Math.min(requestedWaitMs, this.limits.longPollMs) : this.limits.longPollMs;
    return this.workers.hold(worker, waitMs, opts.signal, () => this.dispatcher.emptyResponse(), () => this.dispatcher.takeWork(worker));
  }

  async completeTask(request: workerapi.ICompleteTaskRequest): Promise<void> {
    // Only the holder of the task's current lease may finish it (and so write the action cache).
    const task = admitCompletion(this.workers.task(request.taskId ?? ''), request, this.logger);
    this.workers.release(task);
    if (this.workers.isLive(task.worker)) task.worker.lastSeenMs = this.clock.now();
    const execution = task.execution;
    if (execution.task !== task || execution.stage !== 'EXECUTING') {
      this.dispatcher.dispatch();
      return;
    }
    if ((request.response?.status?.code ?? Code.OK) === Code.UNAVAILABLE && !execution.cancelRequested) {
      // The worker could not run it (shutting down, or no free slot): another attempt, on any worker,
      // may succeed, exactly as when a worker disappears.
      this.dispatcher.loseTask(task, `worker reported UNAVAILABLE: ${request.response?.status?.message ?? ''}`);
      this.dispatcher.dispatch();
      return;
    }
    execution.task = undefined;
    const response = normalizeResponse(execution, task.worker.name, request.response);
    if (execution.cancelRequested) {
      this.completeExecution(execution, { ...response, status: cancelledResponse('The operation was cancelled while it ran').status });
      this.dispatcher.dispatch();
      return;
    }
    execution.finishing = true;
    // Hand the freed slot its next task before waiting for the action cache.
    this.dispatcher.dispatch();
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
    for (const worker of this.workers.all()) worker.poll?.answer(this.dispatcher.emptyResponse());
  }

  // ---------------------------------------------------------------------------------------------
  // Execution lifecycle

  private createEntry(actionDigest: Digest): OperationEntry {
    const id = this.newId();
    const name = formatOperationName(actionDigest.instanceName, id);
    const entry: OperationEntry = { name, seq: this.nextSeq++, actionDigest, version: 0, listeners: new Set() };
    this.table.insert(entry);
    this.store.putOperation(storedOperation(entry));
    return entry;
  }

  private async startOrJoin(entry: OperationEntry, request: ExecuteRequest, signal?: AbortSignal): Promise<void> {
    const { actionDigest } = request;
    if (!request.skipCacheLookup) {
      const cached = await lookupActionCache(this.actionCache, actionDigest, this.logger, signal);
      if (entry.ownResponse) return;
      if (cached) {
        this.completeEntry(entry, { result: cached, cachedResult: true, status: { code: Code.OK } });
        return;
      }
    }
    if (this.join(entry)) return;
    const loaded = await loadActionToQueue(this.cas, actionDigest, this.limits, signal);
    this.throwIfClosed();
    if (entry.ownResponse) return;
    // Another caller may have queued the same action while we validated.
    if (!loaded.action.doNotCache && this.join(entry)) return;
    this.enqueue(entry, request, loaded);
  }

  private join(entry: OperationEntry): boolean {
    const execution = this.table.inFlight(entry.actionDigest.key);
    if (!execution) return false;
    this.attach(entry, execution);
    this.logger.debug('Joined an in-flight execution', { operation: entry.name, actionDigest: entry.actionDigest.toString() });
    return true;
  }

  private enqueue(entry: OperationEntry, request: ExecuteRequest, loaded: LoadedAction): void {
    admitToQueue(this.limits, request.actionDigest, this.queue.usage(request.actionDigest.instanceName), this.queue.size, loaded.sizeBytes);
    const execution: Execution = {
      actionDigest: request.actionDigest,
      loaded,
      platform: loaded.platform,
      doNotCache: loaded.action.doNotCache,
      priority: request.priority,
      seq: entry.seq,
      timeoutMs: loaded.timeoutMs,
      queuedAtMs: this.clock.now(),
      queuedBytes: loaded.sizeBytes,
      stage: 'QUEUED',
      attempts: 0,
      cancelRequested: false,
      finishing: false,
      entries: new Set(),
    };
    if (!this.workers.anySatisfies(execution.platform)) execution.unsatisfiableSinceMs = this.clock.now();
    if (!execution.doNotCache) this.table.setInFlight(request.actionDigest.key, execution);
    this.store.transaction(() => {
      this.store.putExecution(storedExecution(execution), loaded);
      this.attach(entry, execution);
    });
    // The store holds the Action and Command until a worker takes them: no decoded copy in memory.
    if (this.store.holdsActions) execution.loaded = undefined;
    this.queue.push(execution);
    this.logger.debug('Queued action', { operation: entry.name, actionDigest: request.actionDigest.toString(), priority: request.priority });
    this.dispatcher.dispatch();
  }

  private attach(entry: OperationEntry, execution: Execution): void {
    entry.execution = execution;
    execution.entries.add(entry);
    if (execution.stage === 'COMPLETED') this.table.markCompleted(entry, this.clock.now());
    this.store.putOperation(storedOperation(entry));
    bump(entry);
  }

  private cancelExecution(execution: Execution): void {
    if (execution.stage === 'QUEUED') {
      this.queue.remove(execution);
      this.completeExecution(execution, cancelledResponse('The operation was cancelled while queued'));
      return;
    }
    if (execution.stage !== 'EXECUTING' || execution.finishing || execution.cancelRequested) return;
    execution.cancelRequested = true;
    this.table.clearInFlight(execution.actionDigest.key, execution);
    this.store.putExecution(storedExecution(execution));
    const task = execution.task;
    if (!task || !this.workers.isLive(task.worker)) {
      if (task) this.workers.release(task);
      this.completeExecution(execution, cancelledResponse('The operation was cancelled; its worker is gone'));
      return;
    }
    // The worker kills it on its next Synchronize answer and then reports through CompleteTask.
    task.worker.pendingCancels.add(task.id);
    this.dispatcher.dispatch();
  }

  private completeExecution(execution: Execution, response: reapi.IExecuteResponse): void {
    execution.stage = 'COMPLETED';
    execution.response = response;
    execution.task = undefined;
    execution.finishing = false;
    execution.loaded = undefined;
    this.table.clearInFlight(execution.actionDigest.key, execution);
    const done = [...execution.entries].filter((entry) => !entry.ownResponse);
    for (const entry of done) this.table.markCompleted(entry, this.clock.now());
    this.store.transaction(() => {
      // No operation follows it any more (all cancelled and expired while it ran): nothing to keep.
      if (execution.entries.size === 0) this.store.deleteExecution(execution.seq);
      else this.store.putExecution(storedExecution(execution));
      for (const entry of done) this.store.putOperation(storedOperation(entry));
    });
    for (const entry of done) bump(entry);
  }

  private completeEntry(entry: OperationEntry, response: reapi.IExecuteResponse): void {
    entry.ownResponse = response;
    this.table.markCompleted(entry, this.clock.now());
    this.store.putOperation(storedOperation(entry));
    bump(entry);
  }

  private notifyExecution(execution: Execution): void {
    this.store.putExecution(storedExecution(execution));
    for (const entry of execution.entries) if (!entry.ownResponse) bump(entry);
  }

  private forget(entry: OperationEntry): void {
    this.table.delete(entry);
    const execution = entry.execution;
    execution?.entries.delete(entry);
    this.store.transaction(() => {
      this.store.deleteOperation(entry.name);
      if (execution?.stage === 'COMPLETED' && execution.entries.size === 0) this.store.deleteExecution(execution.seq);
    });
  }

  private lookup(name: string): OperationEntry {
    const entry = this.table.get(parseOperationName(name).name);
    if (!entry) throw StatusError.notFound(`Failed to find operation ${JSON.stringify(name)}: it is unknown or has expired`);
    return entry;
  }

}
