/**
 * The bwrap runner's persistent sandboxes: one sandbox serves action after action, so what one
 * action leaves (files in its private /tmp, /dev/mqueue, SysV IPC objects, background processes)
 * must be gone before the next starts, and the reset between actions must touch nothing of the host.
 * Needs root and bubblewrap (CI has both; elsewhere the suite is skipped loudly).
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FilesystemBlobStore } from '../../../src/lib/blobstore/filesystem-blob-store.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { reapi } from '../../../src/lib/proto/index.js';
import { systemClock } from '../../../src/lib/util/clock.js';
import { silentLogger } from '../../../src/lib/util/logger.js';
import { CgroupManager } from '../../../src/lib/worker/action-cgroup.js';
import type { ExecutionTask } from '../../../src/lib/worker/build-executor.js';
import { BwrapRunner } from '../../../src/lib/worker/bwrap-runner.js';
import { createRunner, type CreatedRunner, DEFAULT_RUN_AS } from '../../../src/lib/worker/create-runner.js';
import { FileCache } from '../../../src/lib/worker/file-cache.js';
import { LocalBuildExecutor } from '../../../src/lib/worker/local-build-executor.js';
import { bwrapAvailable, DEFAULT_LIMITS } from '../../../src/lib/worker/sandbox-command.js';
import { SandboxPool } from '../../../src/lib/worker/sandbox-pool.js';
import { blobText, isProcessAlive, processesWith, putTree, waitFor } from '../../unit/worker/worker-test-helpers.js';

const isRoot = process.getuid?.() === 0;
const haveBwrap = bwrapAvailable();
if (process.env.CI && (!haveBwrap || !isRoot)) throw new Error('sandbox-slots: CI must run as root with bubblewrap installed');
if (!haveBwrap || !isRoot) console.warn('!!! sandbox-slots: SKIPPING (needs root and /usr/bin/bwrap) !!!');

const LIMITS = { memoryBytes: 256 * 1024 ** 2, processes: 64, fileSizeBytes: 4 * 1024 ** 2, outputBytes: 4 * 1024 ** 2 };

/** Every descendant of `pid` (from /proc/<pid>/task/<tid>/children). */
function descendants(pid: number): number[] {
  const out: number[] = [];
  const stack = [pid];
  while (stack.length > 0) {
    const p = stack.pop()!;
    for (const tid of readdirSync(`/proc/${p}/task`)) {
      const children = readFileSync(`/proc/${p}/task/${tid}/children`, 'utf8').trim();
      for (const c of children ? children.split(/\s+/).map(Number) : []) {
        out.push(c);
        stack.push(c);
      }
    }
  }
  return out;
}

describe.skipIf(!haveBwrap || !isRoot)('bwrap runner, persistent sandboxes', () => {
  let workDir: string;
  let cas: FilesystemBlobStore;
  let created: CreatedRunner;
  let executor: LocalBuildExecutor;
  let n = 0;
  // Markers on the host that the reset between actions must never reach.
  const hostMarkers: string[] = [];

  beforeAll(async () => {
    workDir = mkdtempSync(path.join(tmpdir(), 'bzutil-slots-'));
    for (const dir of [tmpdir(), '/dev/shm']) {
      if (!existsSync(dir)) continue;
      const marker = path.join(dir, `bzutil-slot-marker-${process.pid}`);
      writeFileSync(marker, 'keep me');
      hostMarkers.push(marker);
    }
    cas = await FilesystemBlobStore.open({ path: path.join(workDir, 'cas'), maxSizeBytes: 1 << 26 });
    const fileCache = await FileCache.open({ directory: path.join(workDir, 'cache'), contentAddressableStorage: cas, maxSizeBytes: 1 << 24 });
    created = await createRunner({ kind: 'bwrap', limits: LIMITS, logger: silentLogger });
    executor = new LocalBuildExecutor({ contentAddressableStorage: cas, runner: created.runner, workDir, workerName: 'slots', fileCache });
  });
  afterAll(async () => {
    await executor?.settled();
    await created?.close();
    if (workDir) rmSync(workDir, { recursive: true, force: true });
    for (const marker of hostMarkers) rmSync(marker, { force: true });
  });

  const run = async (script: string, platform: Record<string, string> = {}) => {
    const inputRootDigest = await putTree(cas, { 'input.txt': 'input' });
    const action: reapi.IAction = { inputRootDigest: inputRootDigest.toProto(), platform: { properties: Object.entries(platform).map(([name, value]) => ({ name, value })) } };
    const task: ExecutionTask = {
      taskId: `slots-${n++}`,
      actionDigest: Digest.ofBytes(reapi.Action.encode(action).finish()),
      action,
      command: { arguments: ['sh', '-c', script], environmentVariables: [{ name: 'PATH', value: '/usr/bin:/bin' }] },
      timeoutMs: 20_000,
    };
    const response = await executor.execute(task);
    // The next action may only start once the sandbox is handed back.
    await executor.settled();
    return { response, stdout: await blobText(cas, response.result?.stdoutDigest) };
  };

  it('runs consecutive actions in one persistent sandbox, as the unprivileged uid without capabilities', async () => {
    expect((created.runner as BwrapRunner).reusesSandboxes).toBe(true);
    const first = await run('pwd; id -u; id -G; grep -E "^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs)" /proc/self/status; ls /proc/self/fd');
    const second = await run('pwd');
    expect(first.response.status).toBeUndefined();
    const [pwd, uid, groups, ...rest] = first.stdout.trim().split('\n');
    expect(pwd).toContain(path.join(workDir, 'actions', '.sandboxes'));
    expect(second.stdout.trim()).toBe(pwd);
    expect(uid).toBe(String(DEFAULT_RUN_AS.uid));
    expect(groups).toBe(String(DEFAULT_RUN_AS.gid));
    for (const cap of ['CapInh', 'CapPrm', 'CapEff', 'CapAmb']) expect(rest.join('\n')).toMatch(new RegExp(`${cap}:\\s+0000000000000000`));
    expect(rest.join('\n')).toMatch(/NoNewPrivs:\s+1/);
    // Only stdin, stdout, stderr and ls's own directory: no descriptor of the helper or the cgroups.
    expect(rest.filter((l) => /^\d+$/.test(l)).map(Number).sort()).toEqual([0, 1, 2, 3]);
  });

  it("does not show action 2 what action 1 left in /tmp, /dev/mqueue, SysV IPC or the input root", async () => {
    const first = await run(
      'echo secret > /tmp/left; mkdir -p /tmp/d/e && echo x > /tmp/d/e/f && chmod 000 /tmp/d/e /tmp/d; ln -s /etc /tmp/etc-link; ' +
        'touch /dev/mqueue/q 2>/dev/null; ipcmk -M 4096 >/dev/null; ipcmk -Q >/dev/null; echo out > made-here; ls -A /tmp | wc -l; ipcs -m | grep -c 0x',
    );
    expect(first.response.status).toBeUndefined();
    const [tmpEntries, shmCount] = first.stdout.trim().split('\n');
    expect(Number(tmpEntries)).toBeGreaterThanOrEqual(3);
    expect(shmCount).toBe('1');
    const second = await run('ls -A /tmp/left /tmp/d /tmp/etc-link /dev/mqueue/q made-here 2>/dev/null; echo shm=$(ipcs -m | grep -c 0x) msg=$(ipcs -q | grep -c 0x); ls input.txt');
    expect(second.stdout).toBe('shm=0 msg=0\ninput.txt\n');
    // The symlink's target was not followed by the reset.
    expect(existsSync('/etc/passwd')).toBe(true);
  });

  it('kills a background process of action 1 before action 2 starts', async () => {
    const marker = `${4000 + Math.floor(Math.random() * 1000)}.${n}81`;
    const first = await run(`setsid sleep ${marker} </dev/null >/dev/null 2>&1 & sleep ${marker} </dev/null >/dev/null 2>&1 & echo started`);
    expect(first.stdout).toBe('started\n');
    expect(processesWith(`sleep ${marker}`)).toEqual([]);
    const second = await run(`for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done | grep -c "slee[p] ${marker}"; true`);
    expect(second.stdout.trim()).toBe('0');
  });

  it('reports a limit for the action that reached it only, not for the next one in the same sandbox', async () => {
    // The slot's cgroup counts refused forks across actions: each action is judged against the
    // counts taken when the sandbox was last emptied.
    const bomb = await run('pwd; i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done; exit 1');
    expect(bomb.response.status?.message).toContain(`process limit of ${LIMITS.processes}`);
    const next = await run('pwd');
    expect(next.stdout).toBe(bomb.stdout);
    expect(next.response.status).toBeUndefined();
    expect(next.response.result?.exitCode).toBe(0);
  });

  it('hands a sandbox out with empty output files, so live output never shows the last action', async () => {
    const first = await run('pwd; echo first action output; echo its error >&2');
    const [pwd, output] = first.stdout.split('\n');
    expect(output).toBe('first action output');
    const sandbox = (await created.runner.acquireSandbox!({ directory: path.join(workDir, 'actions', '.sandboxes'), network: true }))!;
    try {
      // The same sandbox (the only idle one), whose files the first action wrote.
      expect(path.dirname(sandbox.stdoutPath)).toBe(path.join(path.dirname(pwd!), 'io'));
      expect(readFileSync(sandbox.stdoutPath, 'utf8')).toBe('');
      expect(readFileSync(sandbox.stderrPath, 'utf8')).toBe('');
    } finally {
      await sandbox.release();
    }
  });

  it('keeps one pool per network setting: network=off gets a sandbox with loopback only', async () => {
    const off = await run('pwd; cat /proc/net/dev', { network: 'off' });
    const on = await run('pwd');
    const [offPwd, ...dev] = off.stdout.split('\n');
    expect(offPwd).not.toBe(on.stdout.trim());
    expect(dev.slice(2).filter(Boolean).map((l) => l.split(':')[0]!.trim())).toEqual(['lo']);
  });

  it('leaves the host tmpdir and /dev/shm alone across many actions and resets', async () => {
    for (let i = 0; i < 4; i++) {
      const { response } = await run(`echo ${i} > /tmp/f${i}; mkdir /tmp/dir${i}; echo ${i} > /tmp/dir${i}/g`);
      expect(response.status).toBeUndefined();
    }
    for (const marker of hostMarkers) expect(readFileSync(marker, 'utf8')).toBe('keep me');
    expect(existsSync(workDir)).toBe(true);
    expect(existsSync(path.join(workDir, 'cas'))).toBe(true);
  });
});

describe.skipIf(!haveBwrap || !isRoot)('SandboxPool', () => {
  let dir: string;
  let cgroups: CgroupManager;
  let pool: SandboxPool;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'bzutil-pool-'));
    cgroups = (await CgroupManager.open())!;
    expect(cgroups).toBeDefined();
    pool = new SandboxPool({ runAs: DEFAULT_RUN_AS, limits: { ...DEFAULT_LIMITS, ...LIMITS }, cgroups, killGraceMs: 500, clock: systemClock });
  });
  afterAll(async () => {
    await pool?.close();
    await cgroups?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const runIn = async (slot: Awaited<ReturnType<SandboxPool['acquire']>>, script: string) => {
    const result = await slot.run(
      { argv: ['sh', '-c', script], env: { PATH: '/usr/bin:/bin' }, cwd: slot.inputRoot, stdoutPath: slot.stdoutPath, stderrPath: slot.stderrPath, timeoutMs: 10_000 },
      '/bin/sh',
      undefined,
    );
    return { result, stdout: readFileSync(slot.stdoutPath, 'utf8') };
  };

  it('reuses an idle sandbox, and replaces one whose helper died', async () => {
    const slot = await pool.acquire(dir, true);
    expect((await runIn(slot, 'echo one')).stdout).toBe('one\n');
    await pool.release(slot, dir, true);
    const again = await pool.acquire(dir, true);
    expect(again).toBe(slot);
    await pool.release(again, dir, true);

    // Kill the helper (the node process inside the sandbox); the sandbox goes down with it.
    const helper = descendants(slot.pid!).find((p) => readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'node');
    expect(helper).toBeDefined();
    process.kill(helper!, 'SIGKILL');
    await waitFor(() => !slot.alive, 'the slot to notice its helper died', 20_000);
    // The whole sandbox goes: bwrap's PID 1 exits with its only child, and the outer bwrap with it.
    await waitFor(() => !isProcessAlive(slot.pid!), 'the sandbox to exit', 20_000);

    const replacement = await pool.acquire(dir, true);
    expect(replacement).not.toBe(slot);
    const { result, stdout } = await runIn(replacement, 'echo two');
    expect(result.exitCode).toBe(0);
    expect(stdout).toBe('two\n');
    await pool.release(replacement, dir, true);
    expect(pool.size).toBe(1);
  });

  it('gives an action the sandbox being reset rather than start another', async () => {
    // A clock whose sleeps never end: the action waits for the reset however long the machine takes.
    const patient = { now: () => Date.now(), sleep: (_ms: number, signal?: AbortSignal) => new Promise<void>((_, reject) => signal?.addEventListener('abort', () => reject(signal.reason))) };
    const own = new SandboxPool({ runAs: DEFAULT_RUN_AS, limits: { ...DEFAULT_LIMITS, ...LIMITS }, cgroups, killGraceMs: 500, clock: patient });
    try {
      const ownDir = path.join(dir, 'own');
      const slot = await own.acquire(ownDir, true);
      expect((await runIn(slot, 'echo one > left-behind; echo one')).stdout).toBe('one\n');
      const releasing = own.release(slot, ownDir, true);
      const next = await own.acquire(ownDir, true);
      expect(next).toBe(slot);
      expect(own.size).toBe(1);
      await releasing;
      // It was handed over reset: nothing of the first action is left.
      expect((await runIn(next, 'ls -A; echo two')).stdout).toBe('two\n');
      await own.release(next, ownDir, true);
    } finally {
      await own.close();
    }
  });

  it('fails a running action with a helper error when the helper dies, and kills what it started', async () => {
    const slot = await pool.acquire(dir, true);
    const marker = `${5000 + Math.floor(Math.random() * 1000)}.91`;
    const running = runIn(slot, `sleep ${marker} & wait`);
    await waitFor(() => processesWith(`sleep ${marker}`).length > 0, 'the action to start', 20_000);
    const helper = descendants(slot.pid!).find((p) => readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'node');
    process.kill(helper!, 'SIGKILL');
    await expect(running).rejects.toMatchObject({ stage: 'helper' });
    expect(processesWith(`sleep ${marker}`)).toEqual([]);
    await pool.release(slot, dir, true);
  });
});

