/**
 * The `bzutil serve worker` backend: dials the scheduler, keeps one long-poll Synchronize call
 * outstanding at all times (each one a heartbeat reporting the tasks held here), runs up to `slots`
 * tasks at once through a LocalBuildExecutor, and reports every outcome with CompleteTask, retrying
 * until the scheduler has it or has forgotten the task. Workers dial out, so they can run anywhere
 * the scheduler is reachable from.
 */
import { randomUUID } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { arch, hostname } from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import type { BlobStore } from '../lib/blobstore/blob-store.js';
import { Digest } from '../lib/digest/digest.js';
import { fromGrpcError } from '../lib/errors/grpc-status.js';
import { Code, StatusError, toStatusError } from '../lib/errors/status-error.js';
import { parseSchedulerAddresses, SchedulerFailover } from './scheduler-failover.js';
import { type protobuf, type reapi, workerapi } from '../lib/proto/index.js';
import { durationToMs, msToDuration } from '../lib/proto/proto-time.js';
import { workerQueueService } from '../lib/proto/services.js';
import { type Clock, systemClock } from '../lib/util/clock.js';
import type { Logger } from '../lib/util/logger.js';
import { attachError, type BuildExecutor, type ExecutionTask } from '../lib/worker/build-executor.js';
import { FileCache } from '../lib/worker/file-cache.js';
import { LocalBuildExecutor } from '../lib/worker/local-build-executor.js';
import { followOutput, type OutputChunk, type OutputFiles, type OutputFollower } from '../lib/worker/output-follower.js';
import { removeTree } from '../lib/worker/remove-tree.js';
import { createRunner, type RunnerKind } from '../lib/worker/create-runner.js';
import type { Runner } from '../lib/worker/runner.js';
import type { ActionLimits, RunAs } from '../lib/worker/sandbox-command.js';

export interface WorkerOptions {
  /**
   * "host:port" of the scheduler's WorkerQueue service (plaintext gRPC unless `credentials` say TLS), or several separated by
   * commas (a fleet sharing one Redis queue): the worker fails over between them (scheduler-failover.ts).
   */
  schedulerAddress: string;
  /** TLS towards the worker port. @default plaintext */
  credentials?: grpc.ChannelCredentials;
  /** Sent as `authorization: Bearer <token>` on every call, for a worker port with worker tokens. */
  token?: string;
  /** Where inputs come from and outputs go; a GrpcBlobStore in production. */
  contentAddressableStorage: BlobStore;
  /** How many tasks run at once. */
  slots: number;
  /** Scratch space: `actions/` (one directory per running task) and `cache/` (input files). */
  workDir: string;
  /** Properties this worker satisfies, as a map of name to values or a list of {name, value}. */
  platform: Record<string, string[]> | readonly { name: string; value: string }[];
  /**
   * Identifies the worker to the scheduler; keep it stable across restarts so that a restarted
   * scheduler hands this worker's running actions back (or requeues them at once). @default a random UUID
   */
  workerId?: string;
  /** Reported to the scheduler and in ExecutedActionMetadata.worker. @default "<hostname>:<pid>" */
  workerName?: string;
  logger: Logger;
  /** @default systemClock */
  clock?: Clock;
  /**
   * Runs the commands: a Runner, or which kind to build ('bwrap': namespaces + unprivileged uid;
   * 'local': child processes). @default 'bwrap' when installed, else 'local' with a loud warning
   */
  runner?: Runner | RunnerKind;
  /** Host uid/gid actions run as when the worker is root. @default 65534:65534 (bwrap), the worker's (local) */
  runAs?: RunAs;
  /** Allow actions to run as root (inputs are copied, not linked). @default false */
  allowRootActions?: boolean;
  /** Per-action limits (memory, processes, file size, total outputs). @default DEFAULT_LIMITS */
  limits?: Partial<ActionLimits>;
  /** Run every action chrooted into its input root (bwrap only; per action: platform `chroot=true`). */
  chroot?: boolean;
  /** bwrap: one persistent sandbox per runner slot (reset between actions). @default true */
  sandboxReuse?: boolean;
  /** Bytes of input files kept for reuse. @default 10 GiB */
  fileCacheMaxSizeBytes?: number;
  /** Longest the scheduler may hold a Synchronize call. @default 30 s */
  maxWaitMs?: number;
  /** Cap of the exponential backoff between failed calls to the scheduler. @default 5 s */
  maxBackoffMs?: number;
  /** On close, how long to keep trying to report the tasks that were stopped. @default 5 s */
  closeGraceMs?: number;
}

export interface WorkerHandle {
  /** Unique to this worker process; keys the scheduler's lease. */
  readonly workerId: string;
  /**
   * Takes no new tasks (it keeps its lease, reporting no free slot) and waits up to `graceMs` for the
   * running ones to finish and be reported. Call before close for a graceful shutdown.
   */
  drain(graceMs: number): Promise<void>;
  /** Stops polling, kills running tasks, reports them (bounded) and releases every resource. */
  close(): Promise<void>;
}

/** Starts a worker; resolves once its scratch space is ready and it has begun polling the scheduler. */
export async function startWorker(opts: WorkerOptions): Promise<WorkerHandle> {
  if (!Number.isSafeInteger(opts.slots) || opts.slots < 1) {
    throw StatusError.invalidArgument(`Failed to start worker: slots ${JSON.stringify(opts.slots)} is not a positive integer`, [
      { field: 'slots', description: 'Must be a positive integer' },
    ]);
  }
  const workDir = path.resolve(opts.workDir);
  // Leftovers of a previous process are not ours to report any more.
  await removeTree(path.join(workDir, 'actions'));
  await fsp.mkdir(path.join(workDir, 'actions'), { recursive: true });
  const fileCache = await FileCache.open({
    directory: path.join(workDir, 'cache'),
    contentAddressableStorage: opts.contentAddressableStorage,
    maxSizeBytes: opts.fileCacheMaxSizeBytes ?? 10 * 1024 ** 3,
    logger: opts.logger.child('file-cache'),
  });
  const workerName = opts.workerName ?? `${hostname()}:${process.pid}`;
  const clock = opts.clock ?? systemClock;
  const created =
    typeof opts.runner === 'object'
      ? undefined
      : await createRunner({
          ...(opts.runner ? { kind: opts.runner } : {}),
          ...(opts.runAs ? { runAs: opts.runAs } : {}),
          ...(opts.allowRootActions ? { allowRootActions: true } : {}),
          ...(opts.limits ? { limits: opts.limits } : {}),
          ...(opts.sandboxReuse === false ? { sandboxReuse: false } : {}),
          logger: opts.logger.child('runner'),
          clock,
        });
  if (opts.chroot && created?.kind !== 'bwrap') throw StatusError.invalidArgument('Failed to start worker: chroot mode needs the bwrap runner');
  const executor = new LocalBuildExecutor({
    contentAddressableStorage: opts.contentAddressableStorage,
    runner: typeof opts.runner === 'object' ? opts.runner : created!.runner,
    workDir,
    workerName,
    fileCache,
    clock,
    logger: opts.logger,
    ...(opts.chroot ? { chroot: true } : {}),
  });
  const platform = withDefaultPlatform(opts.platform, created?.kind === 'bwrap');
  const worker = new Worker({ ...opts, platform }, workerName, clock, executor);
  worker.start();
  return closingAlso(worker, () => created?.close());
}

/** `handle`, whose close also releases what the worker was built on (its runner, its storage), after it. */
export function closingAlso(handle: WorkerHandle, release: () => Promise<void> | undefined): WorkerHandle {
  return {
    workerId: handle.workerId,
    drain: (graceMs) => handle.drain(graceMs),
    close: async () => {
      await handle.close();
      await release();
    },
  };
}

interface RunningTask {
  controller: AbortController;
  /** 'running' occupies a slot; 'reporting' waits for CompleteTask to be delivered. */
  phase: 'running' | 'reporting';
}

const WorkerQueueClient = grpc.makeGenericClientConstructor(workerQueueService, 'WorkerQueue');
const INITIAL_BACKOFF_MS = 100;
/** Answers to CompleteTask meaning the scheduler will never accept this result: stop retrying. */
const TASK_GONE_CODES = new Set([Code.NOT_FOUND, Code.FAILED_PRECONDITION, Code.INVALID_ARGUMENT, Code.ALREADY_EXISTS, Code.PERMISSION_DENIED]);

class Worker {
  readonly workerId: string;
  private readonly schedulers: SchedulerFailover;
  /** The scheduler each failed call went to. */
  private readonly failedOn = new WeakMap<object, grpc.Client>();
  private readonly platform: reapi.IPlatform;
  private readonly logger: Logger;
  private readonly maxWaitMs: number;
  private readonly maxBackoffMs: number;
  private readonly closeGraceMs: number;
  /** Tasks running or waiting for their result to be delivered; all are listed in Synchronize. */
  private readonly tasks = new Map<string, RunningTask>();
  private readonly taskPromises = new Set<Promise<void>>();
  private readonly closing = new AbortController();
  private closeStartedAtMs = 0;
  private loop: Promise<void> | undefined;
  private closed: Promise<void> | undefined;
  private leaseMs: number | undefined;
  /** Set by drain: report no free slot, so the scheduler assigns nothing new. */
  private draining = false;

  constructor(
    private readonly opts: WorkerOptions,
    private readonly workerName: string,
    private readonly clock: Clock,
    private readonly executor: BuildExecutor,
  ) {
    this.workerId = opts.workerId ?? randomUUID();
    this.schedulers = new SchedulerFailover(
      parseSchedulerAddresses(opts.schedulerAddress),
      (address) =>
        new WorkerQueueClient(address, opts.credentials ?? grpc.credentials.createInsecure(), {
          // Tasks carry whole Commands; accept more than the 4 MiB default.
          'grpc.max_receive_message_length': 64 * 1024 * 1024,
          ...(opts.token === undefined ? {} : { interceptors: [bearerInterceptor(opts.token)] }),
        }),
    );
    this.platform = normalizePlatform(opts.platform);
    this.logger = opts.logger.child('worker');
    this.maxWaitMs = opts.maxWaitMs ?? 30_000;
    this.maxBackoffMs = opts.maxBackoffMs ?? 5_000;
    this.closeGraceMs = opts.closeGraceMs ?? 5_000;
  }

  start(): void {
    this.logger.info('Worker started', { workerId: this.workerId, workerName: this.workerName, scheduler: this.schedulers.addresses.join(','), slots: this.opts.slots });
    this.loop = this.synchronizeLoop();
  }

  async drain(graceMs: number): Promise<void> {
    this.draining = true;
    const running = this.taskPromises.size;
    if (running > 0) this.logger.info('Draining: waiting for running tasks', { tasks: running, graceMs });
    const deadline = this.clock.now() + graceMs;
    while (this.taskPromises.size > 0 && this.clock.now() < deadline) {
      const left = deadline - this.clock.now();
      const settled = new AbortController();
      await Promise.race([Promise.all([...this.taskPromises]).then(() => settled.abort()), this.clock.sleep(left, settled.signal).catch(() => {})]);
      settled.abort();
    }
  }

  close(): Promise<void> {
    this.closed ??= (async () => {
      this.closeStartedAtMs = this.clock.now();
      this.closing.abort();
      const shutdown = StatusError.unavailable('Worker is shutting down');
      for (const task of this.tasks.values()) task.controller.abort(shutdown);
      await this.loop;
      // Bounded: each task promise ends once its executor returns and its report is delivered or
      // given up on after closeGraceMs.
      while (this.taskPromises.size > 0) await Promise.all([...this.taskPromises]);
      await this.executor.settled?.();
      this.schedulers.close();
      this.logger.info('Worker stopped', { workerId: this.workerId });
    })();
    return this.closed;
  }

  private async synchronizeLoop(): Promise<void> {
    let backoffMs = INITIAL_BACKOFF_MS;
    while (!this.closing.signal.aborted) {
      const maxWaitMs = this.leaseMs ? Math.min(this.maxWaitMs, Math.floor(this.leaseMs / 2)) : this.maxWaitMs;
      const request: workerapi.ISynchronizeRequest = {
        workerId: this.workerId,
        workerName: this.workerName,
        platform: this.platform,
        slots: this.draining ? this.tasks.size : this.opts.slots,
        runningTaskIds: [...this.tasks.keys()],
        maxWait: msToDuration(maxWaitMs),
      };
      const startedAtMs = this.clock.now();
      let response: workerapi.SynchronizeResponse;
      try {
        // The deadline only guards against a scheduler that stopped answering on a live connection.
        response = await this.call<workerapi.SynchronizeResponse>('synchronize', request, maxWaitMs + 30_000, this.closing.signal);
      } catch (err) {
        if (this.closing.signal.aborted) return;
        if (this.failover(err, 'synchronize')) continue;
        const delayMs = this.leaseMs ? Math.min(backoffMs, Math.floor(this.leaseMs / 2)) : backoffMs;
        this.logger.warn(`Failed to synchronize with the scheduler; retrying in ${delayMs} ms`, { error: toStatusError(err).message });
        await this.clock.sleep(delayMs, this.closing.signal).catch(() => {});
        backoffMs = Math.min(backoffMs * 2, this.maxBackoffMs);
        continue;
      }
      backoffMs = INITIAL_BACKOFF_MS;
      this.schedulers.succeeded();
      if (response.lease) this.leaseMs = durationToMs(response.lease) || undefined;
      for (const id of response.cancelTaskIds) {
        const task = this.tasks.get(id);
        if (task?.phase === 'running') {
          this.logger.info('Cancelling task at the scheduler\'s request', { taskId: id });
          task.controller.abort(StatusError.cancelled('Task was cancelled by the scheduler'));
        }
      }
      for (const task of response.tasks) this.startTask(task);
      // A scheduler answering at once with nothing to do would otherwise make this loop spin.
      if (response.tasks.length === 0 && response.cancelTaskIds.length === 0 && this.clock.now() - startedAtMs < 50) {
        await this.clock.sleep(100, this.closing.signal).catch(() => {});
      }
    }
  }

  private startTask(task: workerapi.ITask): void {
    const taskId = task.taskId ?? '';
    if (taskId === '' || this.tasks.has(taskId)) {
      this.logger.warn('Ignoring a task with an empty or duplicate id', { taskId });
      return;
    }
    const entry: RunningTask = { controller: new AbortController(), phase: 'running' };
    const busy = [...this.tasks.values()].filter((t) => t.phase === 'running').length;
    this.tasks.set(taskId, entry);
    const promise = (async () => {
      let response: reapi.IExecuteResponse = {};
      try {
        // A task that arrives while draining was assigned before the scheduler saw the drain: run it.
        if (this.closing.signal.aborted) throw StatusError.unavailable('Worker is shutting down');
        if (busy >= this.opts.slots) throw StatusError.unavailable(`Failed to start task: all ${this.opts.slots} slots of worker ${JSON.stringify(this.workerName)} are busy`);
        const executionTask = toExecutionTask(task);
        this.logger.debug('Task started', { taskId, actionDigest: executionTask.actionDigest.toString() });
        response = await this.executor.execute(executionTask, { signal: entry.controller.signal, followOutput: (files) => this.followOutput(taskId, task.leaseToken ?? '', files) });
      } catch (err) {
        attachError(response, err);
      }
      entry.phase = 'reporting';
      this.logger.info('Task finished', { taskId, exitCode: response.result?.exitCode ?? null, status: response.status?.code ? Code[response.status.code] : 'OK' });
      await this.report(taskId, task.leaseToken ?? '', response);
      this.tasks.delete(taskId);
    })();
    this.taskPromises.add(promise);
    void promise.finally(() => this.taskPromises.delete(promise));
  }

  /** Live output of a task, appended on the scheduler (AppendLogs) as the runner writes it. */
  private followOutput(taskId: string, leaseToken: string, files: OutputFiles): OutputFollower {
    const stream = { stdout: workerapi.LogChunk.Stream.STDOUT, stderr: workerapi.LogChunk.Stream.STDERR };
    const send = (chunks: OutputChunk[]) => this.call<unknown>('appendLogs', { workerId: this.workerId, taskId, leaseToken, chunks: chunks.map((c) => ({ ...c, stream: stream[c.stream] })) }, 5_000);
    return followOutput(files, { send: async (chunks) => void (await send(chunks)), clock: this.clock, logger: this.logger });
  }

  /** Delivers a result, retrying with backoff until the scheduler has it or will never take it. */
  private async report(taskId: string, leaseToken: string, response: reapi.IExecuteResponse): Promise<void> {
    const request: workerapi.ICompleteTaskRequest = { workerId: this.workerId, taskId, leaseToken, response };
    let backoffMs = INITIAL_BACKOFF_MS;
    for (let attempt = 1; ; attempt++) {
      try {
        await this.call('completeTask', request, 30_000);
        return;
      } catch (err) {
        const status = toStatusError(err);
        if (TASK_GONE_CODES.has(status.code)) {
          this.logger.warn('The scheduler no longer accepts this task; dropping its result', { taskId, code: status.codeName, message: status.message });
          return;
        }
        if (this.closing.signal.aborted && this.clock.now() - this.closeStartedAtMs >= this.closeGraceMs) {
          this.logger.warn('Failed to report task before shutdown; the scheduler will requeue it when the lease expires', { taskId, attempt, error: status.message });
          return;
        }
        if (this.failover(err, 'report task')) continue;
        this.logger.warn(`Failed to report task; retrying in ${backoffMs} ms`, { taskId, attempt, error: status.message });
        await this.clock.sleep(backoffMs);
        backoffMs = Math.min(backoffMs * 2, this.maxBackoffMs);
      }
    }
  }

  /** After a failed call: true to retry at once on the next scheduler of the list (see SchedulerFailover). */
  private failover(err: unknown, what: string): boolean {
    const failed = typeof err === 'object' && err !== null ? this.failedOn.get(err) : undefined;
    const from = this.schedulers.address;
    if (!failed || !this.schedulers.failed(failed, toStatusError(err).code)) return false;
    this.logger.warn(`Failed to ${what} with scheduler ${from}; failing over to ${this.schedulers.address}`, { error: toStatusError(err).message });
    return true;
  }

  private call<Res>(method: 'synchronize' | 'completeTask' | 'appendLogs', request: unknown, deadlineMs: number, signal?: AbortSignal): Promise<Res> {
    const client = this.schedulers.client;
    return new Promise<Res>((resolve, reject) => {
      const fn = (client as unknown as Record<string, grpc.requestCallback<Res> & ((...args: unknown[]) => grpc.ClientUnaryCall)>)[method]!;
      const onAbort = () => call.cancel();
      const call = fn.call(client, request, new grpc.Metadata(), { deadline: Date.now() + deadlineMs }, (err: grpc.ServiceError | null, res?: Res) => {
        signal?.removeEventListener('abort', onAbort);
        if (err) {
          const error = fromGrpcError(err);
          // Which scheduler failed, for failover: another call may have moved on already.
          this.failedOn.set(error, client);
          reject(error);
        } else resolve(res as Res);
      });
      if (signal?.aborted) call.cancel();
      else signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

/**
 * Adds what every worker of ours satisfies unless the operator said otherwise: `OSFamily` and `ISA`
 * (BuildGrid-style clients send them), and for the bwrap runner `network=on|off` and `chroot=true`
 * (actions asking for no network or for a chroot can only be honoured there).
 */
function withDefaultPlatform(platform: WorkerOptions['platform'], sandboxed: boolean): { name: string; value: string }[] {
  const properties = normalizePlatform(platform).properties as { name: string; value: string }[];
  const names = new Set(properties.map((p) => p.name));
  const add = (name: string, values: string[]) => {
    if (!names.has(name)) for (const value of values) properties.push({ name, value });
  };
  add('OSFamily', ['linux']);
  add('ISA', [arch() === 'x64' ? 'x86-64' : arch() === 'arm64' ? 'aarch64' : arch()]);
  if (sandboxed) {
    add('network', ['on', 'off']);
    add('chroot', ['true', 'false']);
  }
  return properties;
}

/**
 * Platform properties as REAPI wants them: one entry per (name, value), sorted by name then value,
 * so that the scheduler can compare them with an action's platform directly.
 */
export function normalizePlatform(platform: WorkerOptions['platform']): reapi.IPlatform {
  const properties = Array.isArray(platform)
    ? platform.map((p: { name: string; value: string }) => ({ name: p.name, value: p.value }))
    : Object.entries(platform as Record<string, string[]>).flatMap(([name, values]) => values.map((value) => ({ name, value })));
  properties.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.value < b.value ? -1 : a.value > b.value ? 1 : 0));
  return { properties };
}

/** Validates a task from the scheduler into what the executor runs. */
function toExecutionTask(task: workerapi.ITask): ExecutionTask {
  if (!task.action || !task.command) {
    throw StatusError.invalidArgument(`Failed to start task ${JSON.stringify(task.taskId)}: the scheduler sent no Action or Command`);
  }
  return {
    taskId: task.taskId ?? '',
    actionDigest: Digest.fromProto(task.instanceName ?? '', task.digestFunction, task.actionDigest, 'task.action_digest'),
    action: task.action,
    command: task.command,
    timeoutMs: durationToMs(task.timeout),
    ...(task.queuedTimestamp ? { queuedTimestamp: task.queuedTimestamp } : {}),
    ...(task.inputDirectories?.length ? { inputDirectories: task.inputDirectories } : {}),
  };
}

/**
 * Adds `authorization: Bearer <token>` to every call. An interceptor rather than call credentials,
 * because grpc-js sends call credentials over TLS only and the worker port may be plaintext loopback.
 */
function bearerInterceptor(token: string): grpc.Interceptor {
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start: (metadata, listener, next) => {
        metadata.set('authorization', `Bearer ${token}`);
        next(metadata, listener);
      },
    });
}
