/**
 * One persistent sandbox of the bwrap runner: a long-lived bwrap (started as the per-action runner
 * starts it, as root with new mount, PID, IPC, UTS and optionally network namespaces) whose only
 * process is a small helper (sandbox-helper-source.ts) that starts each action inside the namespaces
 * already built, as the unprivileged host uid. Starting bwrap costs ~15 ms per action; a slot pays it
 * once.
 *
 * What is reused, and what keeps actions apart:
 * - the slot's directory `<dir>/root` is bound at its own path as the input root: the executor
 *   materializes each action there, and empties it afterwards (on the host);
 * - `<dir>/io` (root-only, 0700) holds stdout and stderr;
 * - one cgroup per slot, its limits set once when it is made (only the worker, as root, can change
 *   them); every process the helper starts joins it at fork, so after each action (exit, timeout or
 *   cancel) killing the cgroup kills every process the action left, and OOM and refused-fork counts
 *   are compared with their values before the action (read when the slot was last emptied);
 * - between actions the helper empties the sandbox's private /tmp, /dev/shm, /dev/mqueue and SysV
 *   IPC objects, inside the sandbox's own mount and IPC namespaces and as the action uid (which owns
 *   all of it); nothing on the host is touched. A slot whose reset fails is destroyed, not reused.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, promises as fsp } from 'node:fs';
import { constants as osConstants } from 'node:os';
import * as path from 'node:path';
import type { Clock } from '../util/clock.js';
import type { ActionCgroup, CgroupCounters, CgroupManager } from './action-cgroup.js';
import type { RunRequest, RunResult } from './runner.js';
import { type ActionLimits, bwrapCommand, type RunAs, SETPRIV_PATH } from './sandbox-command.js';
import { SANDBOX_HELPER_SOURCE } from './sandbox-helper-source.js';
import { removeTree } from './remove-tree.js';
import { SpawnError } from './spawner-process.js';

export interface SandboxSlotOptions {
  /** The slot's own directory (created afresh; anything there is removed first). */
  directory: string;
  /** False: the sandbox has its own network namespace (loopback only). */
  network: boolean;
  runAs: RunAs;
  limits: ActionLimits;
  cgroups: CgroupManager;
  killGraceMs: number;
  clock: Clock;
}

type HelperMessage =
  | { type: 'ready' }
  | { id: number; type: 'spawn'; pid: number }
  | { id: number; type: 'exit'; code: number | null; signal: NodeJS.Signals | null }
  | { id: number; type: 'error'; stage: 'open' | 'spawn'; code?: string; message: string }
  | { id: number; type: 'reset'; error?: string };

const START_TIMEOUT_MS = 30_000;

export class SandboxSlot {
  readonly inputRoot: string;
  readonly stdoutPath: string;
  readonly stderrPath: string;
  private readonly listeners = new Map<number, (m: HelperMessage | { type: 'gone'; reason: string }) => void>();
  private nextId = 1;
  private gone: string | undefined;

  private constructor(
    private readonly opts: SandboxSlotOptions,
    private readonly helper: ChildProcess,
    private readonly cgroup: ActionCgroup,
    /** The cgroup's OOM and refused-fork counts before the next action (see usage). */
    private counters: CgroupCounters,
  ) {
    this.inputRoot = path.join(opts.directory, 'root');
    this.stdoutPath = path.join(opts.directory, 'io', 'stdout');
    this.stderrPath = path.join(opts.directory, 'io', 'stderr');
    helper.on('message', (m: HelperMessage) => {
      if ('id' in m) this.listeners.get(m.id)?.(m);
    });
    helper.once('exit', (code, signal) => this.markGone(`the sandbox exited (${signal ?? `code ${code}`})`));
    helper.once('disconnect', () => this.markGone('the sandbox helper disconnected'));
  }

  /** Whether the helper still runs (a slot whose helper died is replaced by the pool). */
  get alive(): boolean {
    return this.gone === undefined;
  }

  /** The host pid of the sandbox's outer process (for tests and diagnostics). */
  get pid(): number | undefined {
    return this.helper.pid;
  }

  static async start(opts: SandboxSlotOptions): Promise<SandboxSlot> {
    const root = path.join(opts.directory, 'root');
    const io = path.join(opts.directory, 'io');
    // A leftover of an earlier slot with this name: the pool's own directory, nobody else's.
    await fsp.rm(opts.directory, { recursive: true, force: true });
    await fsp.mkdir(root, { recursive: true, mode: 0o755 });
    await fsp.mkdir(io, { mode: 0o700 });
    const cgroup = await opts.cgroups.create(opts.limits, 'slot');
    const fds: number[] = [];
    let helper: ChildProcess;
    try {
      for (const f of [...cgroup.procsFiles, ...opts.cgroups.homeProcsFiles]) fds.push(openSync(f, 'w'));
      const joinCount = cgroup.procsFiles.length;
      const config = {
        uid: opts.runAs.uid,
        gid: opts.runAs.gid,
        joinFds: fds.slice(0, joinCount).map((_, i) => 4 + i),
        homeFds: fds.slice(joinCount).map((_, i) => 4 + joinCount + i),
        keep: [...new Set([root, io].filter((p) => p.startsWith('/tmp/')).map((p) => p.slice('/tmp/'.length).split('/')[0]!))],
      };
      // setpriv leaves the helper only CAP_SETUID/CAP_SETGID (to start actions as runAs), no
      // inheritable capabilities and no_new_privs; bwrap's own binds are made by then.
      const helperArgv = [SETPRIV_PATH, '--inh-caps=-all', '--bounding-set=-all,+setuid,+setgid', '--no-new-privs', '--', process.execPath, '-e', SANDBOX_HELPER_SOURCE, JSON.stringify(config)];
      const command = bwrapCommand({
        argv: helperArgv,
        cwd: '/',
        inputRoot: root,
        runAs: opts.runAs,
        limits: { fileSizeBytes: opts.limits.fileSizeBytes },
        network: opts.network,
        slot: { extraBinds: [io] },
      });
      helper = spawn(command.file, command.args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc', ...fds], env: { PATH: '/usr/bin:/bin' }, serialization: 'json' });
    } catch (err) {
      await cgroup.destroy().catch(() => {});
      throw err;
    } finally {
      for (const fd of fds) closeSync(fd);
    }
    helper.on('error', () => {
      // Reported through 'exit'.
    });
    try {
      await waitReady(helper);
    } catch (err) {
      helper.kill('SIGKILL');
      await cgroup.destroy().catch(() => {});
      throw err;
    }
    const slot = new SandboxSlot(opts, helper, cgroup, await cgroup.counters());
    slot.idle();
    return slot;
  }

  /**
   * Runs one action (its stdout/stderr must be this slot's files), enforcing timeout and
   * cancellation; every process it started is dead when this resolves.
   */
  async run(request: RunRequest, executable: string, signal: AbortSignal | undefined): Promise<RunResult> {
    if (this.gone !== undefined) throw new SpawnError(`Failed to use the sandbox: ${this.gone}`, undefined, 'helper');
    // The limits were set when the cgroup was made and only root can change them (the action's uid
    // cannot write the cgroup's files, which are not even in its mount namespace); the counters were
    // read when the slot was last emptied (start or reset), so nothing cgroup-related waits here.
    const before = this.counters;
    this.busy();
    try {
      const result = await this.spawnAndWait(request, executable, signal);
      const usage = await this.cgroup.usage(before);
      if (usage.memoryExceeded) return { ...result, limitExceeded: 'memory' };
      if (usage.processesExceeded) return { ...result, limitExceeded: 'processes' };
      if (result.signal === 'SIGXFSZ' || result.exitCode === 128 + (osConstants.signals.SIGXFSZ ?? 25)) return { ...result, limitExceeded: 'file size' };
      return result;
    } finally {
      // Whatever happened (exit, timeout, cancel, helper death), nothing of the action survives it.
      await this.cgroup.killAll();
      this.idle();
    }
  }

  /**
   * Makes the slot ready for the next action: empties the input root (on the host; its entries are
   * directly below the slot's own root directory), the output files and the sandbox's private state
   * (inside). Throws
   * when either fails: the caller then destroys the slot.
   */
  async reset(): Promise<void> {
    if (this.gone !== undefined) throw new Error(`Failed to reset the sandbox: ${this.gone}`);
    await this.cgroup.killAll();
    // The cgroup is empty now and stays so until the next action starts: its counters then are that
    // action's baseline (read here, off the action's path).
    this.counters = await this.cgroup.counters();
    this.busy();
    try {
      // The output files are emptied here, off the next action's path, for its live output.
      await Promise.all([
        emptyDirectory(this.inputRoot),
        fsp.chmod(this.inputRoot, 0o755),
        fsp.chown(this.inputRoot, 0, 0),
        emptyFile(this.stdoutPath),
        emptyFile(this.stderrPath),
        this.resetInside(),
      ]);
    } finally {
      this.idle();
    }
  }

  /** Stops the sandbox (the kernel kills everything in its PID namespace) and removes its directory. */
  async destroy(): Promise<void> {
    this.markGone('the sandbox was closed');
    this.helper.kill('SIGKILL');
    await this.cgroup.destroy().catch(() => {});
    if (this.helper.exitCode === null && this.helper.signalCode === null) await new Promise((resolve) => this.helper.once('exit', resolve));
    await fsp.rm(this.opts.directory, { recursive: true, force: true });
  }

  private resetInside(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const id = this.nextId++;
      this.listeners.set(id, (m) => {
        this.listeners.delete(id);
        if (m.type === 'gone') reject(new Error(`Failed to reset the sandbox: ${m.reason}`));
        else if (m.type === 'reset' && m.error) reject(new Error(`Failed to reset the sandbox: ${m.error}`));
        else resolve();
      });
      this.send({ id, type: 'reset' }, id);
    });
  }

  private spawnAndWait(request: RunRequest, executable: string, signal: AbortSignal | undefined): Promise<RunResult> {
    return new Promise<RunResult>((resolve, reject) => {
      const id = this.nextId++;
      let timedOut = false;
      let cancelled = false;
      let killing = false;
      let started = false;
      const done = new AbortController();
      const stop = () => {
        if (killing) return;
        killing = true;
        this.send({ id, type: 'signal', signal: 'SIGTERM' }, id);
        this.opts.clock.sleep(this.opts.killGraceMs, done.signal).then(
          () => void this.cgroup.killAll(),
          () => {},
        );
      };
      const onAbort = () => {
        cancelled = true;
        stop();
      };
      const finish = () => {
        done.abort();
        signal?.removeEventListener('abort', onAbort);
        this.listeners.delete(id);
      };
      this.listeners.set(id, (m) => {
        if (m.type === 'spawn') {
          started = true;
          if (signal?.aborted) onAbort();
          else signal?.addEventListener('abort', onAbort, { once: true });
          if (request.timeoutMs > 0 && Number.isFinite(request.timeoutMs)) {
            this.opts.clock.sleep(request.timeoutMs, done.signal).then(
              () => {
                if (killing) return;
                timedOut = true;
                stop();
              },
              () => {},
            );
          }
        } else if (m.type === 'exit') {
          finish();
          const exitCode = m.code ?? (m.signal ? 128 + (osConstants.signals[m.signal] ?? 0) : 1);
          resolve({ exitCode, timedOut, cancelled, ...(m.signal ? { signal: m.signal } : {}) });
        } else if (m.type === 'error') {
          finish();
          reject(new SpawnError(m.message, m.code, m.stage));
        } else if (m.type === 'gone') {
          finish();
          reject(new SpawnError(`The sandbox helper ${started ? 'ended while the command ran' : 'is gone'}: ${m.reason}`, undefined, 'helper'));
        }
      });
      this.send(
        {
          id,
          type: 'run',
          file: executable,
          args: request.argv.slice(1),
          argv0: request.argv[0],
          cwd: request.cwd,
          env: { ...request.env },
          stdoutPath: request.stdoutPath,
          stderrPath: request.stderrPath,
        },
        id,
      );
    });
  }

  private send(message: object, id: number): void {
    const fail = (reason: string) => this.listeners.get(id)?.({ type: 'gone', reason });
    if (this.gone !== undefined) return fail(this.gone);
    try {
      this.helper.send(message, (err) => {
        if (err) fail(`Failed to reach the sandbox helper: ${err.message}`);
      });
    } catch (err) {
      fail(`Failed to reach the sandbox helper: ${(err as Error).message}`);
    }
  }

  private markGone(reason: string): void {
    if (this.gone !== undefined) return;
    this.gone = reason;
    for (const listener of [...this.listeners.values()]) listener({ type: 'gone', reason });
  }

  /** An idle slot does not keep the worker process alive; a busy one does, as a child would. */
  private idle(): void {
    this.helper.unref();
    this.helper.channel?.unref();
  }

  private busy(): void {
    this.helper.ref();
    this.helper.channel?.ref();
  }
}

function waitReady(helper: ChildProcess): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => fail('it did not start in time'), START_TIMEOUT_MS);
    const onMessage = (m: HelperMessage) => {
      if (m.type !== 'ready') return;
      cleanup();
      resolve();
    };
    const onExit = (code: number | null, signal: NodeJS.Signals | null) => fail(`it exited (${signal ?? `code ${code}`})`);
    const cleanup = () => {
      clearTimeout(timer);
      helper.off('message', onMessage);
      helper.off('exit', onExit);
    };
    function fail(reason: string) {
      cleanup();
      reject(new Error(`Failed to start the sandbox: ${reason}`));
    }
    helper.on('message', onMessage);
    helper.once('exit', onExit);
  });
}

/**
 * Removes every entry of `directory` but not the directory itself (it is a bind-mount source). Each
 * target is `directory/<name>` with a name read from the directory, so nothing outside it is touched;
 * fs.rm removes symlinks themselves, never what they point to.
 */
async function emptyDirectory(directory: string): Promise<void> {
  const names = await fsp.readdir(directory);
  await Promise.all(
    names.map(async (name) => {
      const entry = path.join(directory, name);
      // Only a real directory goes to removeTree (which may chmod it); anything else is unlinked itself.
      if ((await fsp.lstat(entry)).isDirectory()) await removeTree(entry);
      else await fsp.unlink(entry);
    }),
  );
}

/** Truncates a file of the slot's `io` directory (root-only; absent before the first action). */
async function emptyFile(file: string): Promise<void> {
  await fsp.truncate(file, 0).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
}
