import { mkdtempSync, readFileSync, rmSync, existsSync, mkdirSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Code, StatusError } from '../../../src/lib/errors/status-error.js';
import { FakeClock } from '../../../src/lib/util/clock.js';
import { LocalRunner as BaseLocalRunner, type LocalRunnerOptions, type RunRequest } from '../../../src/lib/worker/runner.js';
import { SpawnerProcess } from '../../../src/lib/worker/spawner-process.js';
import { isProcessAlive, killProcesses, waitFor } from './worker-test-helpers.js';

// Every behaviour holds whether the command is forked by the helper process (the default) or inline.
describe.each(['helper process', 'inline'] as const)('LocalRunner (spawning %s)', (mode) => {
  const spawner = mode === 'inline' ? ('inline' as const) : new SpawnerProcess();
  class LocalRunner extends BaseLocalRunner {
    constructor(opts: LocalRunnerOptions = {}) {
      super({ spawner, ...opts });
    }
  }
  afterAll(() => {
    if (spawner !== 'inline') spawner.close();
  });
  let dir: string;
  const started: number[] = [];

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'bzutil-runner-'));
  });
  afterEach(() => {
    killProcesses(started);
    rmSync(dir, { recursive: true, force: true });
  });

  const request = (argv: string[], extra: Partial<RunRequest> = {}): RunRequest => ({
    argv,
    env: { PATH: '/usr/bin:/bin' },
    cwd: dir,
    stdoutPath: path.join(dir, 'stdout'),
    stderrPath: path.join(dir, 'stderr'),
    timeoutMs: 0,
    ...extra,
  });
  const stdout = () => readFileSync(path.join(dir, 'stdout'), 'utf8');
  const stderr = () => readFileSync(path.join(dir, 'stderr'), 'utf8');

  it('reports the exit code and writes stdout and stderr to files', async () => {
    const result = await new LocalRunner().run(request(['sh', '-c', 'echo out; echo err >&2; exit 3']));
    expect(result).toEqual({ exitCode: 3, timedOut: false, cancelled: false });
    expect(stdout()).toBe('out\n');
    expect(stderr()).toBe('err\n');
  });

  it('gives the process exactly the requested environment, nothing from the worker', async () => {
    process.env.BZUTIL_RUNNER_LEAK_CHECK = 'leaked';
    try {
      await new LocalRunner().run(request(['/usr/bin/env'], { env: { FOO: 'bar', EMPTY: '' } }));
    } finally {
      delete process.env.BZUTIL_RUNNER_LEAK_CHECK;
    }
    expect(stdout().split('\n').filter(Boolean).sort()).toEqual(['EMPTY=', 'FOO=bar']);
  });

  it('finds a bare program name on the default search path when the command sets no PATH', async () => {
    // `env` is found via /usr/bin:/bin, and prints an empty environment: no PATH was added.
    const result = await new LocalRunner().run(request(['env'], { env: {} }));
    expect(result.exitCode).toBe(0);
    expect(stdout()).toBe('');
  });

  it("resolves argv[0] against the command's PATH, relative entries against the working directory", async () => {
    mkdirSync(path.join(dir, 'tools'));
    writeFileSync(path.join(dir, 'tools', 'hello'), '#!/bin/sh\necho hello from tools\n');
    chmodSync(path.join(dir, 'tools', 'hello'), 0o755);
    const result = await new LocalRunner().run(request(['hello'], { env: { PATH: 'tools:/usr/bin:/bin' } }));
    expect(result.exitCode).toBe(0);
    expect(stdout()).toBe('hello from tools\n');
  });

  it('runs in the requested working directory', async () => {
    mkdirSync(path.join(dir, 'sub'));
    await new LocalRunner().run(request(['pwd'], { cwd: path.join(dir, 'sub') }));
    expect(stdout().trim()).toBe(path.join(dir, 'sub'));
  });

  it('rejects a missing program with INVALID_ARGUMENT instead of crashing', async () => {
    const err = await new LocalRunner().run(request(['no-such-program-bzutil'])).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StatusError);
    expect((err as StatusError).code).toBe(Code.INVALID_ARGUMENT);
    expect((err as StatusError).message).toMatch(/^Failed to start command: "no-such-program-bzutil" not found/);
  });

  it('rejects a file without execute permission with INVALID_ARGUMENT', async () => {
    writeFileSync(path.join(dir, 'script'), '#!/bin/sh\n');
    const err = await new LocalRunner().run(request(['./script'])).catch((e: unknown) => e);
    expect((err as StatusError).code).toBe(Code.INVALID_ARGUMENT);
    expect((err as StatusError).message).toContain('is not executable');
  });

  it('rejects an environment Node cannot pass (NUL in a value) with INVALID_ARGUMENT', async () => {
    const err = await new LocalRunner().run(request(['/usr/bin/env'], { env: { BAD: 'a\u0000b' } })).catch((e: unknown) => e);
    expect((err as StatusError).code).toBe(Code.INVALID_ARGUMENT);
  });

  it('kills the whole process group on timeout and keeps the partial output', async () => {
    const clock = new FakeClock();
    const pidsFile = path.join(dir, 'pids');
    const running = new LocalRunner({ clock, killGraceMs: 1_000 }).run(
      request(['sh', '-c', `sleep 100 & echo $! > ${pidsFile}.tmp; echo $$ >> ${pidsFile}.tmp; echo partial; mv ${pidsFile}.tmp ${pidsFile}; sleep 100`], {
        timeoutMs: 5_000,
      }),
    );
    // The pids file appears only after the partial output is written.
    await waitFor(() => existsSync(pidsFile), 'the command to record its pids');
    const pids = readFileSync(pidsFile, 'utf8').trim().split('\n').map(Number);
    started.push(...pids);
    expect(pids).toHaveLength(2);
    // The timeout runs from the moment the runner learns the process started, which (through the
    // spawner's IPC) may come after the command has already done its first steps.
    await waitFor(() => clock.pendingSleeps === 1, 'the timeout to be armed');
    expect(pids.every(isProcessAlive)).toBe(true);

    // Nothing happens before the timeout...
    await clock.advance(4_999);
    expect(pids.every(isProcessAlive)).toBe(true);
    // ...and at the timeout the shell and its background sleep are both killed.
    await clock.advance(1);
    const result = await running;
    expect(result.timedOut).toBe(true);
    expect(result.cancelled).toBe(false);
    expect(result.signal).toBe('SIGTERM');
    expect(result.exitCode).toBe(128 + 15);
    await waitFor(() => pids.every((p) => !isProcessAlive(p)), 'both processes to die');
    expect(stdout()).toBe('partial\n');
  });

  it('escalates to SIGKILL when the process ignores SIGTERM', async () => {
    const clock = new FakeClock();
    const ready = path.join(dir, 'ready');
    const running = new LocalRunner({ clock, killGraceMs: 2_000 }).run(
      request(['sh', '-c', `trap '' TERM; touch ${ready}; while :; do sleep 0.05; done`], { timeoutMs: 1_000 }),
    );
    await waitFor(() => existsSync(ready), 'the command to install its trap');
    await waitFor(() => clock.pendingSleeps === 1, 'the timeout to be armed');
    await clock.advance(1_000);
    // The shell ignores SIGTERM; only the grace period's SIGKILL ends it.
    await clock.advance(2_000);
    const result = await running;
    expect(result.timedOut).toBe(true);
    expect(result.signal).toBe('SIGKILL');
    expect(result.exitCode).toBe(128 + 9);
  });

  it('kills the process group when the signal is aborted', async () => {
    const pidFile = path.join(dir, 'pid');
    const controller = new AbortController();
    const running = new LocalRunner().run(request(['sh', '-c', `echo $$ > ${pidFile}.tmp; mv ${pidFile}.tmp ${pidFile}; sleep 100`]), {
      signal: controller.signal,
    });
    await waitFor(() => existsSync(pidFile), 'the command to start');
    const pid = Number(readFileSync(pidFile, 'utf8'));
    started.push(pid);
    controller.abort();
    const result = await running;
    expect(result.cancelled).toBe(true);
    expect(result.timedOut).toBe(false);
    await waitFor(() => !isProcessAlive(pid), 'the process to die');
  });

  it('reports an output file that cannot be created as a file system error, not as a missing program', async () => {
    const err = (await new LocalRunner().run(request(['true'], { stdoutPath: path.join(dir, 'no', 'such', 'dir', 'stdout') })).catch((e: unknown) => e)) as NodeJS.ErrnoException;
    expect(err).not.toBeInstanceOf(StatusError);
    expect(err.code).toBe('ENOENT');
  });

  it('kills background processes the command leaves behind when it exits', async () => {
    const pidFile = path.join(dir, 'pid');
    const result = await new LocalRunner().run(request(['sh', '-c', `sleep 100 >/dev/null 2>&1 & echo $! > ${pidFile}; exit 0`]));
    const pid = Number(readFileSync(pidFile, 'utf8'));
    started.push(pid);
    expect(result.exitCode).toBe(0);
    await waitFor(() => !isProcessAlive(pid), 'the straggler to die');
  });
});

describe('LocalRunner with a spawner process that dies', () => {
  let dir: string;
  const started: number[] = [];
  const spawner = new SpawnerProcess();
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'bzutil-runner-'));
  });
  afterEach(() => {
    spawner.close();
    killProcesses(started);
    rmSync(dir, { recursive: true, force: true });
  });

  it('fails the running command with INTERNAL, kills its process group, and starts a new helper for the next', async () => {
    const pidFile = path.join(dir, 'pid');
    const runner = new BaseLocalRunner({ spawner });
    const base = { env: { PATH: '/usr/bin:/bin' }, cwd: dir, stdoutPath: path.join(dir, 'stdout'), stderrPath: path.join(dir, 'stderr'), timeoutMs: 0 };
    const running = runner.run({ ...base, argv: ['sh', '-c', `echo $$ > ${pidFile}.tmp; mv ${pidFile}.tmp ${pidFile}; sleep 100`] });
    await waitFor(() => existsSync(pidFile), 'the command to start');
    const pid = Number(readFileSync(pidFile, 'utf8'));
    started.push(pid);
    const helperPid = spawner.helperPid!;
    process.kill(helperPid, 'SIGKILL');

    const err = (await running.catch((e: unknown) => e)) as StatusError;
    expect(err).toBeInstanceOf(StatusError);
    expect(err.code).toBe(Code.INTERNAL);
    expect(err.message).toContain('spawner process exited');
    await waitFor(() => !isProcessAlive(pid), 'the orphaned command to die');

    const next = await runner.run({ ...base, argv: ['true'] });
    expect(next.exitCode).toBe(0);
    expect(spawner.helperPid).not.toBe(helperPid);
  });
});
