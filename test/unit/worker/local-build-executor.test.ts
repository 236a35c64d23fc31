import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code, StatusError } from '../../../src/lib/errors/status-error.js';
import { type protobuf, reapi } from '../../../src/lib/proto/index.js';
import { FakeClock } from '../../../src/lib/util/clock.js';
import { attachError, type ExecutionStage, type ExecutionTask } from '../../../src/lib/worker/build-executor.js';
import { FileCache } from '../../../src/lib/worker/file-cache.js';
import { LocalBuildExecutor } from '../../../src/lib/worker/local-build-executor.js';
import { LocalRunner } from '../../../src/lib/worker/runner.js';
import { blobText, isProcessAlive, killProcesses, newMemoryStore, putTree, RecordingBlobStore, type TreeSpec, waitFor } from './worker-test-helpers.js';

describe('LocalBuildExecutor', () => {
  let workDir: string;
  let store: RecordingBlobStore;
  let runnerClock: FakeClock;
  let executor: LocalBuildExecutor;
  const pids: number[] = [];

  beforeEach(async () => {
    workDir = mkdtempSync(path.join(tmpdir(), 'bzutil-executor-'));
    store = new RecordingBlobStore(newMemoryStore());
    runnerClock = new FakeClock();
    const fileCache = await FileCache.open({ directory: path.join(workDir, 'cache'), contentAddressableStorage: store, maxSizeBytes: 1 << 24 });
    executor = new LocalBuildExecutor({
      contentAddressableStorage: store,
      runner: new LocalRunner({ clock: runnerClock, killGraceMs: 1_000 }),
      workDir,
      workerName: 'test-worker',
      fileCache,
    });
  });
  afterEach(async () => {
    killProcesses(pids);
    await executor.settled();
    rmSync(workDir, { recursive: true, force: true });
  });

  let nextTask = 0;
  const task = async (command: reapi.ICommand, inputs: TreeSpec = {}, extra: Partial<ExecutionTask> = {}): Promise<ExecutionTask> => {
    const inputRootDigest = await putTree(store, inputs);
    const action: reapi.IAction = { inputRootDigest: inputRootDigest.toProto() };
    return {
      taskId: `task-${nextTask++}`,
      actionDigest: Digest.ofBytes(reapi.Action.encode(action).finish()),
      action,
      command: { environmentVariables: [{ name: 'PATH', value: '/usr/bin:/bin' }], ...command },
      timeoutMs: 0,
      ...extra,
    };
  };
  const sh = (script: string) => ['sh', '-c', script];

  it('runs the command on its inputs and returns exit code, outputs and stdout', async () => {
    const t = await task(
      { arguments: sh('cat in/a.txt in/a.txt > out/b.txt; echo done; exit 7'), outputFiles: ['out/b.txt'] },
      { in: { 'a.txt': 'hi ' } },
    );

    const response = await executor.execute(t);

    // A non-zero exit is a result, not an error.
    expect(response.status).toBeUndefined();
    expect(response.result?.exitCode).toBe(7);
    expect(response.result?.outputFiles?.map((f) => f.path)).toEqual(['out/b.txt']);
    expect(await blobText(store, response.result?.outputFiles?.[0]?.digest)).toBe('hi hi ');
    expect(await blobText(store, response.result?.stdoutDigest)).toBe('done\n');
    expect(response.result?.stderrDigest).toEqual({ hash: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' });
  });

  it('runs in the working directory and creates the parents of declared outputs', async () => {
    const t = await task({ arguments: sh('pwd > deep/dir/where'), workingDirectory: 'wd', outputFiles: ['deep/dir/where'] }, { wd: { keep: 'k' } });

    const response = await executor.execute(t);

    expect(response.status).toBeUndefined();
    expect(await blobText(store, response.result?.outputFiles?.[0]?.digest)).toBe(path.join(executor.actionDirectoryOf(t.taskId), 'root', 'wd') + '\n');
  });

  it('gives the action exactly the Command environment', async () => {
    process.env.BZUTIL_EXECUTOR_LEAK_CHECK = 'leaked';
    let response: reapi.IExecuteResponse;
    try {
      const t = await task({ arguments: ['env'], environmentVariables: [{ name: 'ONLY', value: 'this' }] });
      response = await executor.execute(t);
    } finally {
      delete process.env.BZUTIL_EXECUTOR_LEAK_CHECK;
    }
    expect(await blobText(store, response.result?.stdoutDigest)).toBe('ONLY=this\n');
  });

  it('removes the action directory afterwards, even one the action made read-only', async () => {
    const t = await task({ arguments: sh('mkdir -p locked/in && touch locked/in/f && chmod 500 locked/in locked') });

    const response = await executor.execute(t);

    expect(response.status).toBeUndefined();
    await executor.settled();
    expect(existsSync(executor.actionDirectoryOf(t.taskId))).toBe(false);
    expect(readdirSync(path.join(workDir, 'actions'))).toEqual([]);
  });

  it('removes the action directory afterwards when the action wrote next to its input root', async () => {
    const t = await task({ arguments: sh('echo side > ../side; mkdir ../extra; echo x > ../extra/f') });

    const response = await executor.execute(t);

    expect(response.status).toBeUndefined();
    await executor.settled();
    expect(readdirSync(path.join(workDir, 'actions'))).toEqual([]);
  });

  it('replaces a leftover action directory of an earlier attempt with the same task id', async () => {
    const t = await task({ arguments: sh('ls -A ..; ls -A') });
    // A previous process died mid-action and left its directory, inputs and logs behind.
    const stale = executor.actionDirectoryOf(t.taskId);
    mkdirSync(path.join(stale, 'root', 'old'), { recursive: true });
    writeFileSync(path.join(stale, 'root', 'old', 'file'), 'old');
    writeFileSync(path.join(stale, 'leftover'), 'old');

    const response = await executor.execute(t);

    expect(response.status).toBeUndefined();
    // Only what this attempt created: its logs and an empty input root.
    expect(await blobText(store, response.result?.stdoutDigest)).toBe('root\nstderr\nstdout\n');
    await executor.settled();
    expect(existsSync(stale)).toBe(false);
  });

  it('returns before the directory is removed, and runs the same task id again only once it is', async () => {
    const t = await task({ arguments: sh('ls -A ..; ls -A; touch made-here') });

    const first = await executor.execute(t);
    // No settled() in between: the second attempt must still start in a fresh directory.
    const second = await executor.execute(t);

    for (const response of [first, second]) {
      expect(response.status).toBeUndefined();
      expect(await blobText(store, response.result?.stdoutDigest)).toBe('root\nstderr\nstdout\n');
    }
    await executor.settled();
    expect(readdirSync(path.join(workDir, 'actions'))).toEqual([]);
  });

  it('fills ExecutedActionMetadata with ordered timestamps', async () => {
    const queued: protobuf.ITimestamp = { seconds: 1_000, nanos: 5 };
    const t = await task({ arguments: ['true'] }, {}, { queuedTimestamp: queued });

    const response = await executor.execute(t);

    const m = response.result!.executionMetadata!;
    expect(m.worker).toBe('test-worker');
    expect(m.queuedTimestamp).toEqual(queued);
    const order = [
      m.workerStartTimestamp,
      m.inputFetchStartTimestamp,
      m.inputFetchCompletedTimestamp,
      m.executionStartTimestamp,
      m.executionCompletedTimestamp,
      m.outputUploadStartTimestamp,
      m.outputUploadCompletedTimestamp,
      m.workerCompletedTimestamp,
    ].map((ts) => {
      expect(ts).toBeDefined();
      return Number(ts!.seconds) * 1e9 + Number(ts!.nanos ?? 0);
    });
    expect(order).toEqual([...order].sort((a, b) => a - b));
  });

  it('reports the stages it goes through', async () => {
    const stages: ExecutionStage[] = [];
    await executor.execute(await task({ arguments: ['true'] }), { onStage: (s) => stages.push(s) });
    expect(stages).toEqual(['FETCHING_INPUTS', 'RUNNING', 'UPLOADING_OUTPUTS']);
  });

  it('fails with FAILED_PRECONDITION and MISSING violations when inputs are absent, without running', async () => {
    const absent = Digest.ofBytes(new TextEncoder().encode('not uploaded'));
    const t = await task({ arguments: sh('touch ran'), outputFiles: ['ran'] });
    const inputRoot = reapi.Directory.encode({ files: [{ name: 'f', digest: absent.toProto() }] }).finish();
    const inputRootDigest = Digest.ofBytes(inputRoot);
    await store.put(inputRootDigest, inputRoot);
    t.action = { inputRootDigest: inputRootDigest.toProto() };

    const response = await executor.execute(t);

    const status = StatusError.fromProto(response.status!);
    expect(status.code).toBe(Code.FAILED_PRECONDITION);
    expect(status.message).toMatch(/^Failed to prepare input root: /);
    expect(status.preconditionViolations()).toEqual([{ type: 'MISSING', subject: absent.toMissingSubject() }]);
    expect(response.result?.exitCode ?? 0).toBe(0);
    expect(response.result?.outputFiles).toBeUndefined();
    await executor.settled();
    expect(existsSync(executor.actionDirectoryOf(t.taskId))).toBe(false);
  });

  it('fails with INVALID_ARGUMENT when the program does not exist', async () => {
    const response = await executor.execute(await task({ arguments: ['definitely-not-a-program'] }));

    const status = StatusError.fromProto(response.status!);
    expect(status.code).toBe(Code.INVALID_ARGUMENT);
    expect(status.message).toContain('"definitely-not-a-program" not found');
  });

  it('fails with INVALID_ARGUMENT for an input tree with an invalid name', async () => {
    const bad = reapi.Directory.encode({ directories: [{ name: '..', digest: Digest.empty().toProto() }] }).finish();
    const badDigest = Digest.ofBytes(bad);
    await store.put(badDigest, bad);
    const t = await task({ arguments: ['true'] });
    t.action = { inputRootDigest: badDigest.toProto() };

    const response = await executor.execute(t);

    expect(response.status?.code).toBe(Code.INVALID_ARGUMENT);
  });

  it('on timeout kills the process group, reports DEADLINE_EXCEEDED and keeps partial output', async () => {
    const t = await task({ arguments: sh('sleep 100 & echo $! > bg.pid; echo partial; echo $$ > sh.pid; sleep 100') }, {}, { timeoutMs: 60_000 });
    const root = path.join(executor.actionDirectoryOf(t.taskId), 'root');

    const running = executor.execute(t);
    await waitFor(() => existsSync(path.join(root, 'sh.pid')) && readFileSync(path.join(root, 'sh.pid'), 'utf8').endsWith('\n'), 'the command to start');
    const started = ['bg.pid', 'sh.pid'].map((f) => Number(readFileSync(path.join(root, f), 'utf8')));
    pids.push(...started);
    // The timeout is armed once the runner hears the process started, which may come a little later.
    await waitFor(() => runnerClock.pendingSleeps === 1, 'the timeout to be armed');
    await runnerClock.advance(60_000);
    const response = await running;

    const status = StatusError.fromProto(response.status!);
    expect(status.code).toBe(Code.DEADLINE_EXCEEDED);
    expect(status.message).toContain('timeout of 60000 ms');
    expect(response.result?.exitCode).toBe(128 + 15);
    expect(await blobText(store, response.result?.stdoutDigest)).toBe('partial\n');
    await waitFor(() => started.every((p) => !isProcessAlive(p)), 'every process of the action to die');
  });

  it('on cancellation kills the process and reports CANCELLED', async () => {
    const t = await task({ arguments: sh('echo $$ > sh.pid; sleep 100') });
    const root = path.join(executor.actionDirectoryOf(t.taskId), 'root');
    const controller = new AbortController();

    const running = executor.execute(t, { signal: controller.signal });
    await waitFor(() => existsSync(path.join(root, 'sh.pid')) && readFileSync(path.join(root, 'sh.pid'), 'utf8').endsWith('\n'), 'the command to start');
    const pid = Number(readFileSync(path.join(root, 'sh.pid'), 'utf8'));
    pids.push(pid);
    controller.abort();
    const response = await running;

    expect(response.status?.code).toBe(Code.CANCELLED);
    await waitFor(() => !isProcessAlive(pid), 'the process to die');
    await executor.settled();
    expect(existsSync(executor.actionDirectoryOf(t.taskId))).toBe(false);
  });

  it('reports the StatusError given as abort reason, e.g. UNAVAILABLE on worker shutdown', async () => {
    const controller = new AbortController();
    controller.abort(StatusError.unavailable('Worker is shutting down'));

    const response = await executor.execute(await task({ arguments: ['true'] }), { signal: controller.signal });

    expect(response.status?.code).toBe(Code.UNAVAILABLE);
    expect(response.status?.message).toBe('Worker is shutting down');
  });
});

describe('attachError', () => {
  it('keeps the first error and ignores later ones', () => {
    const response: reapi.IExecuteResponse = {};
    attachError(response, StatusError.deadlineExceeded('first'));
    attachError(response, StatusError.internal('second'));
    expect(response.status).toMatchObject({ code: Code.DEADLINE_EXCEEDED, message: 'first' });
  });

  it('replaces an explicit OK status', () => {
    const response: reapi.IExecuteResponse = { status: { code: Code.OK } };
    attachError(response, new Error('boom'));
    expect(response.status).toMatchObject({ code: Code.INTERNAL, message: 'boom' });
  });
});
