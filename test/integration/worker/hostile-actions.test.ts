/**
 * Actions that try to hurt the worker, the caches or the host, each run through the real executor and
 * runner as a hostile client's action would be. The bwrap runner must contain every attack; the local
 * runner the subset it can honour (whole-tree kill, symlink-safe paths, timeouts): the README's
 * security model says what it does not protect.
 *
 * Needs root (as CI runs) for the unprivileged-uid and cgroup claims; the bwrap suite needs Debian's
 * bubblewrap, which CI installs: in CI a missing bwrap fails instead of skipping.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FilesystemBlobStore } from '../../../src/lib/blobstore/filesystem-blob-store.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code } from '../../../src/lib/errors/status-error.js';
import { reapi } from '../../../src/lib/proto/index.js';
import { silentLogger } from '../../../src/lib/util/logger.js';
import type { ExecutionTask } from '../../../src/lib/worker/build-executor.js';
import { createRunner, type CreatedRunner, DEFAULT_RUN_AS, type RunnerKind } from '../../../src/lib/worker/create-runner.js';
import { FileCache } from '../../../src/lib/worker/file-cache.js';
import { LocalBuildExecutor } from '../../../src/lib/worker/local-build-executor.js';
import { bwrapAvailable } from '../../../src/lib/worker/sandbox-command.js';
import { blobText, processesWith, putTree, type TreeSpec } from '../../unit/worker/worker-test-helpers.js';

const isRoot = process.getuid?.() === 0;
const haveBwrap = bwrapAvailable();
if (process.env.CI && (!haveBwrap || !isRoot)) {
  throw new Error('hostile-actions: CI must run as root with bubblewrap installed (.ci/run installs it)');
}
if (!haveBwrap || !isRoot) console.warn('!!! hostile-actions: SKIPPING the bwrap suite (needs root and /usr/bin/bwrap) !!!');

const LIMITS = { memoryBytes: 256 * 1024 ** 2, processes: 48, fileSizeBytes: 1024 ** 2, outputBytes: 4 * 1024 ** 2 };

/** Every file and directory under `dir` that `uid` owns or anyone may write. */
function writableBy(dir: string, uid: number): string[] {
  const out: string[] = [];
  const stack = [dir];
  while (stack.length > 0) {
    const current = stack.pop()!;
    const st = lstatSync(current);
    if (!st.isSymbolicLink() && (st.uid === uid || (st.mode & 0o002) !== 0)) out.push(current);
    if (st.isDirectory()) for (const name of readdirSync(current)) stack.push(path.join(current, name));
  }
  return out;
}

function suite(kind: RunnerKind, opts: { sandboxReuse?: boolean } = {}) {
  let workDir: string;
  let cas: FilesystemBlobStore;
  let created: CreatedRunner;
  let executor: LocalBuildExecutor;
  let fileCache: FileCache;
  let n = 0;

  beforeAll(async () => {
    workDir = mkdtempSync(path.join(tmpdir(), `bzutil-hostile-${kind}-`));
    cas = await FilesystemBlobStore.open({ path: path.join(workDir, 'cas'), maxSizeBytes: 1 << 28 });
    fileCache = await FileCache.open({ directory: path.join(workDir, 'cache'), contentAddressableStorage: cas, maxSizeBytes: 1 << 26 });
    created = await createRunner({ kind, limits: LIMITS, logger: silentLogger, ...opts });
    executor = new LocalBuildExecutor({ contentAddressableStorage: cas, runner: created.runner, workDir, workerName: 'hostile', fileCache });
  });
  afterAll(async () => {
    await executor?.settled();
    await created?.close();
    rmSync(workDir, { recursive: true, force: true });
  });

  const run = async (script: string, inputs: TreeSpec = {}, command: reapi.ICommand = {}, timeoutMs = 20_000, platform: Record<string, string> = {}) => {
    const inputRootDigest = await putTree(cas, inputs);
    const action: reapi.IAction = {
      inputRootDigest: inputRootDigest.toProto(),
      platform: { properties: Object.entries(platform).map(([name, value]) => ({ name, value })) },
    };
    const task: ExecutionTask = {
      taskId: `hostile-${n++}`,
      actionDigest: Digest.ofBytes(reapi.Action.encode(action).finish()),
      action,
      command: { arguments: ['sh', '-c', script], environmentVariables: [{ name: 'PATH', value: '/usr/bin:/bin' }], ...command },
      timeoutMs,
    };
    const response = await executor.execute(task);
    const text = async (d: reapi.IDigest | null | undefined) => (d ? blobText(cas, d) : '');
    return { response, stdout: await text(response.result?.stdoutDigest), stderr: await text(response.result?.stderrDigest) };
  };

  it('a setsid orphan does not survive the action', async () => {
    const marker = `${1000 + Math.floor(Math.random() * 1000)}.${n}71`;
    const { response } = await run(`setsid sleep ${marker} </dev/null >/dev/null 2>&1 & sleep 0.2; echo started`);
    expect(response.status).toBeUndefined();
    expect(response.result?.exitCode).toBe(0);
    expect(processesWith(`sleep ${marker}`)).toEqual([]);
  });

  it('sleeping past the timeout ends with DEADLINE_EXCEEDED and leaves nothing running', async () => {
    const marker = `${2000 + Math.floor(Math.random() * 1000)}.${n}72`;
    const started = Date.now();
    const { response } = await run(`sleep ${marker} & setsid sleep ${marker} & wait`, {}, {}, 500);
    expect(response.status?.code).toBe(Code.DEADLINE_EXCEEDED);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(processesWith(`sleep ${marker}`)).toEqual([]);
  });

  it('an output parent replaced by a symlink to /etc is refused, not followed', async () => {
    const { response } = await run('rmdir out && ln -s /etc out', {}, { outputFiles: ['out/passwd'] });
    expect(response.status?.code).toBe(Code.INVALID_ARGUMENT);
    expect(response.status?.message).toContain('"out" is a symlink');
    expect(response.result?.outputFiles ?? []).toEqual([]);
  });

  it('an output that is a symlink to /etc/shadow is reported as a symlink, its target never read', async () => {
    const { response } = await run('ln -s /etc/shadow out', {}, { outputPaths: ['out'] });
    expect(response.status).toBeUndefined();
    expect(response.result?.outputSymlinks).toEqual([{ path: 'out', target: '/etc/shadow' }]);
    expect(response.result?.outputFiles ?? []).toEqual([]);
  });

  it('an absolute input symlink is created as given but output parents and working_directory do not follow it', async () => {
    const escape = path.join(tmpdir(), `bzutil-escape-${process.pid}-${n}`);
    const parents = await run('true', { link: { symlink: tmpdir() } }, { outputFiles: [`link/${path.basename(escape)}/x`] });
    expect(parents.response.status?.code).toBe(Code.INVALID_ARGUMENT);
    const wd = await run('true', { link: { symlink: tmpdir() } }, { workingDirectory: `link/${path.basename(escape)}` });
    expect(wd.response.status?.code).toBe(Code.INVALID_ARGUMENT);
    expect(existsSync(escape)).toBe(false);
    const seen = await run('readlink link', { link: { symlink: '/etc' } });
    expect(seen.stdout).toBe('/etc\n');
  });

  if (kind !== 'bwrap') return;

  it('runs as an unprivileged host uid with no capabilities and no_new_privs, and cannot read /etc/shadow', async () => {
    const { response, stdout } = await run('id -u; id -g; grep -E "^(CapEff|NoNewPrivs)" /proc/self/status; cat /etc/shadow && echo READ-SHADOW; ls /root 2>&1 | head -1; exit 0');
    expect(response.status).toBeUndefined();
    const lines = stdout.split('\n');
    expect(lines.slice(0, 2)).toEqual([String(DEFAULT_RUN_AS.uid), String(DEFAULT_RUN_AS.gid)]);
    expect(stdout).toMatch(/CapEff:\s+0000000000000000/);
    expect(stdout).toMatch(/NoNewPrivs:\s+1/);
    expect(stdout).not.toContain('READ-SHADOW');
    expect(stdout).not.toContain('root:');
  });

  it('cannot change a cached input file: the next action sees the original bytes', async () => {
    const inputs = { in: { 'a.txt': 'original' } };
    const attack = await run('chmod 666 in/a.txt; echo evil > in/a.txt; cat in/a.txt; rm -f in/a.txt; echo evil > in/a.txt; true', inputs);
    expect(attack.response.status).toBeUndefined();
    const digest = Digest.ofBytes(new TextEncoder().encode('original'));
    expect(readFileSync(fileCache.pathOf(digest, false), 'utf8')).toBe('original');
    const next = await run('cat in/a.txt', inputs);
    expect(next.stdout).toBe('original');
  });

  it('cannot see or write the CAS, the input cache or the worker\'s state; none of it is writable by the action uid', async () => {
    const digest = Digest.ofBytes(new TextEncoder().encode('precious'));
    await cas.put(digest, new TextEncoder().encode('precious'));
    // The work dir's path exists inside (the input root is bound at its own path) but holds only that.
    const { stdout } = await run(`ls ${workDir}/cas ${workDir}/cache 2>/dev/null && echo SEES-WORKDIR; ls ${workDir}; for f in $(find / -xdev -name '${digest.hash}*' 2>/dev/null); do echo FOUND $f; echo evil > $f; done; true`);
    expect(stdout).not.toContain('SEES-WORKDIR');
    expect(stdout.split('\n')[0]).toBe('actions');
    expect(stdout).not.toContain('FOUND');
    expect(new TextDecoder().decode(await cas.get(digest))).toBe('precious');
    expect(writableBy(path.join(workDir, 'cas'), DEFAULT_RUN_AS.uid)).toEqual([]);
    expect(writableBy(path.join(workDir, 'cache'), DEFAULT_RUN_AS.uid)).toEqual([]);
  });

  it('a fork bomb is capped by the process limit and reported', async () => {
    const marker = `${3000 + Math.floor(Math.random() * 1000)}.${n}73`;
    const { response } = await run(`i=0; while [ $i -lt 200 ]; do sleep ${marker} & i=$((i+1)); done; wait`, {}, {}, 10_000);
    expect(response.status?.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(response.status?.message).toContain(`process limit of ${LIMITS.processes}`);
    expect(processesWith(`sleep ${marker}`)).toEqual([]);
  });

  it('allocating past the memory limit ends the action with a status naming the limit', async () => {
    const { response } = await run('head -c 800000000 /dev/zero | tail -c 700000000 > /dev/null', {}, {}, 30_000);
    expect(response.status?.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(response.status?.message).toContain(`memory limit of ${LIMITS.memoryBytes}`);
  });

  it('writing past the file size limit ends the action with a status naming the limit', async () => {
    const { response } = await run(`head -c ${2 * LIMITS.fileSizeBytes} /dev/zero > big`);
    expect(response.status?.code).toBe(Code.RESOURCE_EXHAUSTED);
    expect(response.status?.message).toContain('file size limit');
  });

  it('has no network but loopback when its platform says network=off', async () => {
    const off = await run('cat /proc/net/dev', {}, {}, 20_000, { network: 'off' });
    const interfaces = (text: string) => text.split('\n').slice(2).filter(Boolean).map((l) => l.split(':')[0]!.trim());
    expect(interfaces(off.stdout)).toEqual(['lo']);
  });
}

describe.skipIf(!haveBwrap || !isRoot)('hostile actions, bwrap runner (persistent sandboxes)', () => {
  suite('bwrap');
});

describe.skipIf(!haveBwrap || !isRoot)('hostile actions, bwrap runner with a bwrap per action (sandbox_reuse false)', () => {
  suite('bwrap', { sandboxReuse: false });
});

describe.skipIf(!isRoot)('hostile actions, local runner (subset it can honour)', () => {
  suite('local');
});
