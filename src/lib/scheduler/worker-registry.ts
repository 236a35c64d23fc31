/**
 * The workers the scheduler knows: their platform and slots, the tasks each runs, the cancellations
 * each still has to hear about, and the long-poll each may be holding. Process-local by nature (a
 * held poll is an open call on this scheduler), so it has no durable backend: a restarted
 * scheduler learns its workers again from their next Synchronize.
 */
import type { Clock } from '../util/clock.js';
import type { Logger } from '../util/logger.js';
import type { workerapi } from '../proto/index.js';
import { PlatformProperties } from './platform-properties.js';
import type { Execution, PendingPoll, TaskState, WorkerState } from './scheduler-state.js';

export class WorkerRegistry {
  private readonly workers = new Map<string, WorkerState>();
  private readonly tasks = new Map<string, TaskState>();

  constructor(
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {}

  get workerCount(): number {
    return this.workers.size;
  }

  get taskCount(): number {
    return this.tasks.size;
  }

  all(): IterableIterator<WorkerState> {
    return this.workers.values();
  }

  /** The live worker with this id (undefined once it was removed, even if an old object survives). */
  get(id: string): WorkerState | undefined {
    return this.workers.get(id);
  }

  isLive(worker: WorkerState): boolean {
    return this.workers.get(worker.id) === worker;
  }

  task(id: string): TaskState | undefined {
    return this.tasks.get(id);
  }

  /**
   * Records a Synchronize call: creates the worker on its first call and updates what it reports.
   * `slots` is what the scheduler believes (see worker-admission.ts). Returns the worker; the caller
   * answers any poll it still held.
   */
  register(request: workerapi.ISynchronizeRequest, slots: number): WorkerState {
    const id = request.workerId ?? '';
    let worker = this.workers.get(id);
    if (!worker) {
      worker = this.restore(id, this.clock.now());
    }
    const isNew = worker.syncCount === 0;
    worker.syncCount++;
    worker.lastSeenMs = this.clock.now();
    worker.name = request.workerName || id;
    worker.platform = PlatformProperties.fromProto(request.platform);
    worker.slots = slots;
    if (isNew) this.logger.info('Worker joined', { workerId: id, workerName: worker.name, slots: worker.slots, platform: worker.platform.toString() });
    return worker;
  }

  /** Forgets a worker; its tasks stay in its `tasks` map for the caller to requeue. */
  remove(worker: WorkerState): void {
    if (this.isLive(worker)) this.workers.delete(worker.id);
  }

  freeSlots(worker: WorkerState): number {
    return worker.slots - worker.tasks.size;
  }

  anySatisfies(platform: PlatformProperties): boolean {
    for (const worker of this.workers.values()) if (worker.platform.satisfies(platform)) return true;
    return false;
  }

  /**
   * A placeholder for a worker known only from the state store (a restarted scheduler): it holds the
   * worker's leases until the worker synchronizes, or until its lease runs out from `lastSeenMs`.
   */
  restore(id: string, lastSeenMs: number): WorkerState {
    const worker: WorkerState = {
      id,
      name: id,
      platform: PlatformProperties.empty(),
      slots: 0,
      tasks: new Map(),
      pendingCancels: new Set(),
      unknownTasksCancelled: new Set(),
      syncCount: 0,
      lastSeenMs,
    };
    this.workers.set(id, worker);
    return worker;
  }

  /** Hands `execution` to `worker` as task `taskId` under lease `leaseToken` (see reconcile for `assignedInSync`). */
  assign(execution: Execution, worker: WorkerState, taskId: string, leaseToken: string, assignedInSync = worker.syncCount, startedAtMs = this.clock.now()): TaskState {
    const task: TaskState = { id: taskId, execution, worker, assignedInSync, startedAtMs, leaseToken };
    worker.tasks.set(taskId, task);
    this.tasks.set(taskId, task);
    return task;
  }

  release(task: TaskState): void {
    this.tasks.delete(task.id);
    task.worker.tasks.delete(task.id);
    task.worker.pendingCancels.delete(task.id);
  }

  /**
   * Compares what the worker says it runs with what it was given and returns the tasks it lost. A
   * task missing from the list is lost only if it was handed out before the worker's previous
   * Synchronize: one handed out in answer to that very call may legitimately not be listed yet (or
   * its CompleteTask may be in flight). Tasks the worker runs that the scheduler does not know are
   * queued for cancellation, each once: the worker lists it until the kill and its report are done,
   * and answering every such call at once with the same cancellation would make it spin.
   */
  reconcile(worker: WorkerState, runningTaskIds: readonly string[]): TaskState[] {
    const listed = new Set(runningTaskIds);
    const lost = [...worker.tasks.values()].filter((task) => !listed.has(task.id) && task.assignedInSync < worker.syncCount - 1);
    for (const id of listed) {
      if (worker.tasks.has(id) || worker.unknownTasksCancelled.has(id)) continue;
      worker.pendingCancels.add(id);
      worker.unknownTasksCancelled.add(id);
    }
    for (const id of worker.unknownTasksCancelled) if (!listed.has(id)) worker.unknownTasksCancelled.delete(id);
    return lost;
  }

  /** Tasks that have run for longer than their action's timeout plus `graceMs` by `nowMs`. */
  overdue(nowMs: number, graceMs: number): TaskState[] {
    return [...this.tasks.values()].filter((t) => t.execution.timeoutMs !== undefined && nowMs - t.startedAtMs >= t.execution.timeoutMs + graceMs);
  }

  /** Workers with no poll held whose lease (counted from `lastSeenMs`) ran out by `nowMs`. */
  expired(nowMs: number, leaseMs: number): WorkerState[] {
    return [...this.workers.values()].filter((w) => !w.poll && nowMs - w.lastSeenMs >= leaseMs);
  }

  /**
   * Holds the worker's Synchronize for up to `waitMs`: resolves with what `poll.answer` is given
   * (by dispatch, a superseding call, an abort or close), or with `onTimeout()` when time runs out.
   */
  hold(
    worker: WorkerState,
    waitMs: number,
    signal: AbortSignal | undefined,
    empty: () => workerapi.ISynchronizeResponse,
    onTimeout: () => workerapi.ISynchronizeResponse,
  ): Promise<workerapi.ISynchronizeResponse> {
    return new Promise((resolve) => {
      const timer = new AbortController();
      let settled = false;
      const onAbort = () => poll.answer(empty());
      const poll: PendingPoll = {
        answer: (r) => {
          if (settled) return;
          settled = true;
          timer.abort();
          signal?.removeEventListener('abort', onAbort);
          if (worker.poll === poll) worker.poll = undefined;
          // From here the worker must call again within its lease.
          worker.lastSeenMs = this.clock.now();
          resolve(r);
        },
      };
      worker.poll = poll;
      signal?.addEventListener('abort', onAbort, { once: true });
      this.clock.sleep(waitMs, timer.signal).then(
        () => {
          // Checked before onTimeout: tasks taken for an already answered call would be lost.
          if (!settled) poll.answer(onTimeout());
        },
        () => {},
      );
    });
  }
}
