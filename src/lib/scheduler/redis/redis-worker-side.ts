/**
 * The worker side of the Redis build queue (redis-build-queue.ts): the Synchronize long-polls this
 * scheduler holds, the executions it claims for them, and the results workers hand in here.
 *
 * Round trips: a Synchronize is one script (extend the worker's grace, reconcile the tasks it lists,
 * take its cancellations and claim work for each free slot); a held poll woken by new work is one
 * more (take). A result from the worker this scheduler handed the task to, with the token it
 * handed out, is admitted without asking Redis (the finish script still checks that the task is
 * current); a result handed in on another scheduler of the fleet is checked against Redis first.
 */
import type { ActionCache } from '../../actioncache/action-cache.js';
import type { Digest } from '../../digest/digest.js';
import { Code, StatusError } from '../../errors/status-error.js';
import type { workerapi } from '../../proto/index.js';
import { durationToMs, msToDuration } from '../../proto/proto-time.js';
import type { Clock } from '../../util/clock.js';
import type { Logger } from '../../util/logger.js';
import type { BuildQueueLimits } from '../build-queue-options.js';
import type { CallOptions } from '../../blobstore/blob-store.js';
import type { OperationSnapshot } from '../operation-snapshot.js';
import { PlatformProperties } from '../platform-properties.js';
import { shuttingDown } from '../scheduler-state.js';
import { digestFromText } from '../state-codec.js';
import { normalizeResponse, SYNCHRONIZE_RESPONSE_BUDGET_BYTES, toTaskProto } from '../task-messages.js';
import { admitSynchronize, newLeaseToken, sameToken } from '../worker-admission.js';
import type { RedisEvents, Watch } from './redis-events.js';
import { platformPairs, readLoaded, type RedisState, storeResponse } from './redis-state.js';

/** Tasks handed out whose completion this scheduler can admit without asking Redis (beyond: it asks). */
const MAX_HANDED_OUT = 10_000;

export interface RedisWorkerSideDeps {
  state: RedisState;
  events: RedisEvents;
  actionCache: ActionCache;
  clock: Clock;
  logger: Logger;
  newId: () => string;
  limits: BuildQueueLimits;
  /** Aborted when the queue closes. */
  closing: AbortSignal;
  /** An operation this scheduler completed with `snapshot` (for its local followers). */
  onCompleted(snapshot: OperationSnapshot): void;
}

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
  /** Its held poll is waiting for a change (not reading the state). */
  waiting?: boolean;
  /** An Execute on this scheduler is claiming work for it (its held poll does not take meanwhile). */
  reserved?: boolean;
  /** Tasks claimed for it whose poll had ended before they could be handed over: its next answer carries them. */
  pending?: workerapi.ITask[];
}

/** A worker reserved by an Execute, with the take arguments to claim work for it. */
export interface Reservation {
  worker: LocalWorker;
  take: Take;
}

/** What the scripts return for an execution claimed: its index among the take's ids, then seq, loaded, digest, queuedAt, firstOp, attempts. */
export type Claim = [number, string, string, string, string, string, number];

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

export class RedisWorkerSide {
  private readonly state: RedisState;
  private readonly events: RedisEvents;
  private readonly actionCache: ActionCache;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly newId: () => string;
  private readonly limits: BuildQueueLimits;
  private readonly closing: AbortSignal;
  private readonly onCompleted: (snapshot: OperationSnapshot) => void;
  private readonly workers = new Map<string, LocalWorker>();
  /** Tasks this scheduler handed out and not yet completed here: their results need no lease lookup in Redis. */
  private readonly handedOut = new Map<string, HandedOut>();

  constructor(deps: RedisWorkerSideDeps) {
    this.state = deps.state;
    this.events = deps.events;
    this.actionCache = deps.actionCache;
    this.clock = deps.clock;
    this.logger = deps.logger;
    this.newId = deps.newId;
    this.limits = deps.limits;
    this.closing = deps.closing;
    this.onCompleted = deps.onCompleted;
  }

  /** Workers calling this scheduler. */
  get size(): number {
    return this.workers.size;
  }

  /** The workers whose poll this scheduler holds now (their grace is extended by each sweep). */
  heldWorkerIds(): string[] {
    return [...this.workers.values()].filter((w) => w.poll).map((w) => w.id);
  }

  /** Forgets the workers that stopped calling this scheduler and that the fleet no longer knows. */
  async forgetGoneWorkers(): Promise<void> {
    for (const worker of this.workers.values()) if (!worker.poll && !(await this.state.commands.zscore(this.state.prefix + 'workers', worker.id))) this.workers.delete(worker.id);
  }

  /**
   * Reserves a worker whose poll is held and waiting, so that an Execute queuing an action claims work
   * for it in the same script (handOver then answers its poll); undefined if there is none.
   */
  reserveIdle(): Reservation | undefined {
    for (const worker of this.workers.values()) {
      if (!worker.poll || !worker.waiting || worker.reserved) continue;
      worker.reserved = true;
      return { worker, take: this.takeArguments(worker) };
    }
    return undefined;
  }

  /**
   * Ends a reservation: hands what the script claimed (`taken`, its {cancels, claims}) to the worker's
   * held poll, or keeps it for the worker's next answer if the poll ended meanwhile; with nothing
   * claimed, wakes the poll to look for work itself (changes it skipped while reserved). Never throws.
   */
  async handOver(reservation: Reservation, taken?: [string[], Claim[]]): Promise<void> {
    const { worker, take } = reservation;
    try {
      const response = taken ? await this.toResponse(worker, take, taken[0], taken[1]) : this.emptyResponse();
      if (worker.poll && (response.tasks!.length || response.cancelTaskIds!.length)) return worker.poll(response);
      if (response.tasks!.length) worker.pending = [...(worker.pending ?? []), ...response.tasks!];
      if (response.cancelTaskIds!.length) await this.state.commands.sadd(`${this.state.prefix}wcancel:${worker.id}`, ...response.cancelTaskIds!);
    } catch (err) {
      // What was claimed stays the worker's in Redis: reconciliation requeues it (as for a lost answer).
      this.logger.warn('Failed to hand out work to a waiting worker', { workerId: worker.id, error: err });
    } finally {
      worker.reserved = false;
      this.events.deliver(`worker ${worker.id}`);
    }
  }

  /** Answers every held poll (on close). */
  releasePolls(): void {
    for (const worker of this.workers.values()) worker.poll?.(this.emptyResponse());
  }

  async synchronize(request: workerapi.ISynchronizeRequest, opts: CallOptions = {}): Promise<workerapi.ISynchronizeResponse> {
    if (this.closing.aborted) throw shuttingDown();
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
      this.takePending(worker, first);
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
    if (currentTask !== taskId || stage !== 'EXECUTING' || cancel === '1') {
      // Nothing to cache: a stale attempt is only released, a cancelled one recorded as cancelled (by the script).
      await this.state.run('finish', this.clock.now(), taskId, '');
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
    const [outcome, completed] = (await this.state.run('finish', this.clock.now(), taskId, storeResponse(response))) as [number, string[]?];
    if (outcome < 0) throw this.unknownTask({ taskId, workerId: task.workerId });
    // This scheduler's followers of those operations take the result from here, not from Redis.
    if (outcome === 1) for (const name of completed ?? []) this.onCompleted({ name, actionDigest, stage: 'COMPLETED', response });
  }

  private unknownTask(fields: { taskId: string; workerId?: string | null }): StatusError {
    this.logger.info('Refusing the result of an unknown task', fields);
    return StatusError.notFound(`Failed to complete task ${JSON.stringify(fields.taskId)}: the scheduler has no such task (cancelled, or requeued after its worker was lost)`);
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
      const abort = AbortSignal.any([stop.signal, this.closing, ...(signal ? [signal] : [])]);
      void (async () => {
        try {
          let seen = seenBefore;
          for (;;) {
            const remainingMs = deadline - this.clock.now();
            if (remainingMs <= 0) break;
            worker.waiting = true;
            try {
              await watch.waitPast(seen, remainingMs, abort);
            } finally {
              worker.waiting = false;
            }
            if (settled || abort.aborted) break;
            seen = watch.version();
            const handed = this.takePending(worker, this.emptyResponse());
            if (handed.tasks!.length) return answer(handed);
            // An Execute is claiming work for this worker: its answer comes from there (handOver).
            if (worker.reserved) continue;
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

  /** Moves the tasks kept for the worker (see handOver) into `response`. */
  private takePending(worker: LocalWorker, response: workerapi.ISynchronizeResponse): workerapi.ISynchronizeResponse {
    if (worker.pending) {
      response.tasks = [...worker.pending, ...response.tasks!];
      worker.pending = undefined;
    }
    return response;
  }

  private emptyResponse(): workerapi.ISynchronizeResponse {
    return { tasks: [], cancelTaskIds: [], lease: msToDuration(this.limits.workerGraceMs) };
  }
}
