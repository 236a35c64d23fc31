import { arch } from 'node:os';
/**
 * The worker against a fake scheduler: a real grpc-js server implementing WorkerQueue on
 * 127.0.0.1:0 that holds Synchronize calls (long-poll) until the test hands out work, and records
 * every CompleteTask.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { BlobStore } from '../../../src/lib/blobstore/blob-store.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code, StatusError } from '../../../src/lib/errors/status-error.js';
import { reapi, workerapi } from '../../../src/lib/proto/index.js';
import { workerQueueService } from '../../../src/lib/proto/services.js';
import { type Logger, silentLogger } from '../../../src/lib/util/logger.js';
import { bindGrpcServer, createGrpcServer, shutdownGrpcServer } from '../../../src/server/grpc/server.js';
import { startWorker, type WorkerHandle } from '../../../src/server/worker.js';
import { blobText, isProcessAlive, killProcesses, newMemoryStore, putTree, waitFor } from '../../unit/worker/worker-test-helpers.js';

class FakeScheduler {
  readonly synchronizeRequests: workerapi.SynchronizeRequest[] = [];
  readonly completeTaskAttempts: workerapi.CompleteTaskRequest[] = [];
  readonly completed: workerapi.CompleteTaskRequest[] = [];
  /** Codes the next CompleteTask calls fail with, in order. */
  readonly completeTaskFailures: grpc.status[] = [];
  private readonly held: ((res: workerapi.ISynchronizeResponse) => void)[] = [];
  private readonly queued: workerapi.ISynchronizeResponse[] = [];
  readonly server = createGrpcServer();
  port = 0;

  async start(address = '127.0.0.1:0'): Promise<void> {
    this.server.addService(workerQueueService, {
      synchronize: (call: grpc.ServerUnaryCall<workerapi.SynchronizeRequest, workerapi.ISynchronizeResponse>, callback: grpc.sendUnaryData<workerapi.ISynchronizeResponse>) => {
        this.synchronizeRequests.push(call.request);
        const ready = this.queued.shift();
        if (ready) return callback(null, ready);
        const answer = (res: workerapi.ISynchronizeResponse) => callback(null, res);
        this.held.push(answer);
        call.on('cancelled', () => {
          const i = this.held.indexOf(answer);
          if (i >= 0) this.held.splice(i, 1);
        });
      },
      completeTask: (call: grpc.ServerUnaryCall<workerapi.CompleteTaskRequest, workerapi.ICompleteTaskResponse>, callback: grpc.sendUnaryData<workerapi.ICompleteTaskResponse>) => {
        this.completeTaskAttempts.push(call.request);
        const failure = this.completeTaskFailures.shift();
        if (failure !== undefined) return callback({ code: failure, details: 'injected failure' });
        this.completed.push(call.request);
        callback(null, {});
      },
    } as grpc.UntypedServiceImplementation);
    this.port = await bindGrpcServer(this.server, address);
  }

  /** Answers the outstanding Synchronize call (or the next one). */
  respond(res: workerapi.ISynchronizeResponse): void {
    const waiter = this.held.shift();
    if (waiter) waiter(res);
    else this.queued.push(res);
  }

  async completionOf(taskId: string): Promise<workerapi.CompleteTaskRequest> {
    await waitFor(() => this.completed.some((c) => c.taskId === taskId), `CompleteTask for ${taskId}`);
    return this.completed.find((c) => c.taskId === taskId)!;
  }

  async stop(): Promise<void> {
    for (const waiter of this.held.splice(0)) waiter({});
    await shutdownGrpcServer(this.server, 500);
  }
}

describe('worker (startWorker) with a fake scheduler', () => {
  let workDir: string;
  let store: BlobStore;
  let scheduler: FakeScheduler;
  let worker: WorkerHandle | undefined;
  const pids: number[] = [];

  beforeEach(async () => {
    workDir = mkdtempSync(path.join(tmpdir(), 'bzutil-worker-it-'));
    store = newMemoryStore();
    scheduler = new FakeScheduler();
    await scheduler.start();
  });
  afterEach(async () => {
    await worker?.close();
    worker = undefined;
    await scheduler.stop();
    killProcesses(pids);
    rmSync(workDir, { recursive: true, force: true });
  });

  const start = async (slots = 2, logger: Logger = silentLogger) => {
    worker = await startWorker({
      schedulerAddress: `127.0.0.1:${scheduler.port}`,
      contentAddressableStorage: store,
      slots,
      workDir,
      platform: { OSFamily: ['linux'], 'container-image': ['b', 'a'] },
      workerName: 'it-worker',
      logger,
      maxBackoffMs: 200,
      closeGraceMs: 500,
      // These tests follow actions by their host pid, which a PID namespace hides; the bwrap runner
      // has its own tests (hostile-actions.test.ts).
      runner: 'local',
    });
    return worker;
  };

  const task = async (taskId: string, args: string[], extra: { outputFiles?: string[]; timeoutSeconds?: number } = {}): Promise<workerapi.ITask> => {
    const inputRoot = await putTree(store, { 'input.txt': 'from the CAS' });
    const command: reapi.ICommand = { arguments: args, environmentVariables: [{ name: 'PATH', value: '/usr/bin:/bin' }], outputFiles: extra.outputFiles ?? [] };
    const action: reapi.IAction = { inputRootDigest: inputRoot.toProto() };
    return {
      taskId,
      operationName: `operations/${taskId}`,
      instanceName: '',
      digestFunction: reapi.DigestFunction.Value.SHA256,
      actionDigest: Digest.ofBytes(reapi.Action.encode(action).finish()).toProto(),
      action,
      command,
      ...(extra.timeoutSeconds ? { timeout: { seconds: extra.timeoutSeconds } } : {}),
      queuedTimestamp: { seconds: 1_700_000_000 },
    };
  };

  it('long-polls with its identity, platform and slots', async () => {
    const w = await start(3);
    await waitFor(() => scheduler.synchronizeRequests.length >= 1, 'the first Synchronize');

    const first = scheduler.synchronizeRequests[0]!;
    expect(first.workerId).toBe(w.workerId);
    expect(first.workerName).toBe('it-worker');
    expect(first.slots).toBe(3);
    expect(first.runningTaskIds).toEqual([]);
    // ISA is added by default (OSFamily was given).
    expect(first.platform?.properties?.map((p) => `${p.name}=${p.value}`)).toEqual([
      `ISA=${arch() === 'x64' ? 'x86-64' : arch() === 'arm64' ? 'aarch64' : arch()}`,
      'OSFamily=linux',
      'container-image=a',
      'container-image=b',
    ]);
    expect(Number(first.maxWait?.seconds)).toBeGreaterThan(0);
  });

  it('runs a handed-out task and reports its ExecuteResponse through CompleteTask', async () => {
    const w = await start();
    scheduler.respond({ tasks: [await task('t1', ['sh', '-c', 'cat input.txt > out.txt; echo ran; exit 4'], { outputFiles: ['out.txt'] })], lease: { seconds: 60 } });

    const done = await scheduler.completionOf('t1');

    expect(done.workerId).toBe(w.workerId);
    const response = done.response!;
    expect(response.status?.code ?? 0).toBe(0);
    expect(response.result?.exitCode).toBe(4);
    expect(await blobText(store, response.result?.stdoutDigest)).toBe('ran\n');
    expect(response.result?.outputFiles?.[0]?.path).toBe('out.txt');
    expect(await blobText(store, response.result?.outputFiles?.[0]?.digest)).toBe('from the CAS');
    expect(response.result?.executionMetadata?.worker).toBe('it-worker');
    expect(Number(response.result?.executionMetadata?.queuedTimestamp?.seconds)).toBe(1_700_000_000);
  });

  it('lists a running task in Synchronize and kills it when the scheduler cancels it', async () => {
    await start();
    scheduler.respond({ tasks: [await task('long', ['sh', '-c', 'echo $$ > pid.tmp && mv pid.tmp pid; sleep 100'])] });
    const pidFile = path.join(workDir, 'actions', 'long', 'root', 'pid');
    await waitFor(() => existsSync(pidFile), 'the task to start');
    const pid = Number(readFileSync(pidFile, 'utf8'));
    pids.push(pid);
    // The Synchronize sent after the task was handed out reports it as running.
    await waitFor(() => scheduler.synchronizeRequests.some((r) => r.runningTaskIds.includes('long')), 'a Synchronize listing the task');

    scheduler.respond({ cancelTaskIds: ['long'] });
    const done = await scheduler.completionOf('long');

    expect(done.response?.status?.code).toBe(Code.CANCELLED);
    await waitFor(() => !isProcessAlive(pid), 'the cancelled process to die');
  });

  it('retries CompleteTask until the scheduler accepts it', async () => {
    await start();
    scheduler.completeTaskFailures.push(grpc.status.UNAVAILABLE, grpc.status.INTERNAL);
    scheduler.respond({ tasks: [await task('retry', ['true'])] });

    const done = await scheduler.completionOf('retry');

    expect(done.response?.result?.exitCode ?? 0).toBe(0);
    expect(scheduler.completeTaskAttempts.filter((a) => a.taskId === 'retry')).toHaveLength(3);
  });

  it('drops a result the scheduler says it no longer knows, and stops listing the task', async () => {
    await start();
    scheduler.completeTaskFailures.push(grpc.status.NOT_FOUND);
    scheduler.respond({ tasks: [await task('gone', ['true'])] });

    await waitFor(() => scheduler.completeTaskAttempts.some((a) => a.taskId === 'gone'), 'the CompleteTask attempt');
    // The next long-poll after the report no longer lists the task.
    scheduler.respond({});
    await waitFor(() => scheduler.synchronizeRequests.length >= 3 && !scheduler.synchronizeRequests.at(-1)!.runningTaskIds.includes('gone'), 'a Synchronize without the task');
    expect(scheduler.completeTaskAttempts.filter((a) => a.taskId === 'gone')).toHaveLength(1);
    expect(scheduler.completed).toEqual([]);
  });

  it('reports a task it cannot start (bad digest) as INVALID_ARGUMENT instead of crashing', async () => {
    await start();
    const bad = await task('bad', ['true']);
    bad.actionDigest = { hash: 'not-hex', sizeBytes: 1 };
    scheduler.respond({ tasks: [bad] });

    const done = await scheduler.completionOf('bad');

    expect(done.response?.status?.code).toBe(Code.INVALID_ARGUMENT);
  });

  it('refuses tasks beyond its slots with UNAVAILABLE so the scheduler can requeue them', async () => {
    await start(1);
    scheduler.respond({
      tasks: [await task('first', ['sh', '-c', 'touch started; sleep 100']), await task('second', ['true'])],
    });

    const refused = await scheduler.completionOf('second');

    expect(refused.response?.status?.code).toBe(Code.UNAVAILABLE);
    expect(StatusError.fromProto(refused.response!.status!).message).toContain('slots');
  });

  it('reconnects after the scheduler was unreachable', async () => {
    // Learn a free port, then close the scheduler so the worker starts against nothing.
    const port = scheduler.port;
    await scheduler.stop();
    const warnings: string[] = [];
    await start(2, { ...silentLogger, warn: (msg: string) => void warnings.push(msg), child: function () { return this; } });
    await waitFor(() => warnings.filter((w) => w.startsWith('Failed to synchronize')).length >= 2, 'two failed Synchronize attempts');

    scheduler = new FakeScheduler();
    await scheduler.start(`127.0.0.1:${port}`);
    scheduler.respond({ tasks: [await task('after', ['true'])] });

    const done = await scheduler.completionOf('after');
    expect(done.response?.status?.code ?? 0).toBe(0);
  });

  it('on close kills running tasks, reports them UNAVAILABLE and removes their directories', async () => {
    const w = await start();
    scheduler.respond({ tasks: [await task('doomed', ['sh', '-c', 'echo $$ > pid.tmp && mv pid.tmp pid; sleep 100'])] });
    const pidFile = path.join(workDir, 'actions', 'doomed', 'root', 'pid');
    await waitFor(() => existsSync(pidFile), 'the task to start');
    const pid = Number(readFileSync(pidFile, 'utf8'));
    pids.push(pid);

    await w.close();
    worker = undefined;

    const done = await scheduler.completionOf('doomed');
    expect(done.response?.status?.code).toBe(Code.UNAVAILABLE);
    await waitFor(() => !isProcessAlive(pid), 'the process to die');
    expect(existsSync(path.join(workDir, 'actions', 'doomed'))).toBe(false);
  });
});
