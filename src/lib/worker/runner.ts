/**
 * Running one command as a child process, after Buildbarn's pkg/runner: the build executor decides
 * *what* to run (argv, environment, directory, where output goes, how long it may take) and the
 * runner owns *how*: process creation, output to files, timeouts and killing every process the
 * command started.
 */
import { spawn } from 'node:child_process';
import { constants as fsConstants, promises as fsp } from 'node:fs';
import { constants as osConstants } from 'node:os';
import * as path from 'node:path';
import type { CallOptions } from '../blobstore/blob-store.js';
import { StatusError } from '../errors/status-error.js';
import { type Clock, systemClock } from '../util/clock.js';
import type { ActionCgroup, CgroupManager } from './action-cgroup.js';
import { type ActionLimits, DEFAULT_LIMITS, localCommand, type RunAs, type SandboxCommand } from './sandbox-command.js';
import { SpawnError, SpawnerProcess, joinCgroups, sharedSpawner } from './spawner-process.js';

export interface RunRequest {
  /** argv[0] is resolved against the PATH in `env` (or DEFAULT_SEARCH_PATH) unless it contains "/". */
  argv: readonly string[];
  /** The complete environment of the process: nothing of the worker's own environment is added. */
  env: Readonly<Record<string, string>>;
  /** Absolute directory the process starts in. */
  cwd: string;
  /** Files that receive the process's stdout and stderr (created or truncated). */
  stdoutPath: string;
  stderrPath: string;
  /** Kill the process group after this long; 0 or Infinity for no limit. */
  timeoutMs: number;
  /** The action's input root (the only writable tree in a sandbox). @default cwd */
  inputRoot?: string;
  /** False when the action's platform says `network=off` (the bwrap runner then unshares the network). */
  network?: boolean;
  /** The action expects to run chrooted into its input root (bwrap runner only). */
  chroot?: boolean;
}

/** A limit whose breach ended or crippled the command. */
export type ExceededLimit = 'memory' | 'processes' | 'file size';

export interface RunResult {
  /** The exit status; 128 + signal number when the process was killed by a signal (as shells report). */
  exitCode: number;
  /** The timeout ran out and the process group was killed. */
  timedOut: boolean;
  /** The caller's signal fired and the process group was killed. */
  cancelled: boolean;
  /** The signal that ended the main process, if any. */
  signal?: NodeJS.Signals;
  /** Set when the command reached one of its limits (memory, processes, file size). */
  limitExceeded?: ExceededLimit;
}

/** What a runner guarantees, for the executor preparing the input root. */
export interface RunnerIsolation {
  /** The host uid/gid actions run as; the executor makes the input root's directories theirs. */
  actionUser?: RunAs;
  /**
   * Actions could modify a hard-linked input (they run as the worker's uid, or as root): inputs
   * must be copied out of the file cache, not linked.
   */
  copyInputs: boolean;
  /** Limits applied to each action (the executor checks `outputBytes`). */
  limits?: ActionLimits;
}

/** Runs commands; implementations decide where and how (local child process, sandbox, ...). */
export interface Runner {
  /**
   * Runs the command to completion. A command that cannot be started (missing or non-executable
   * argv[0]) rejects with INVALID_ARGUMENT; a non-zero exit, a timeout or a cancellation is a result.
   */
  run(request: RunRequest, opts?: CallOptions): Promise<RunResult>;
  /** What the runner guarantees; absent means nothing (inputs copied, no limits). */
  readonly isolation?: RunnerIsolation;
  /**
   * A persistent sandbox for one action (the bwrap runner's slot pool), or undefined when this
   * runner has none for it: the executor then builds the input root in `inputRoot`, runs the action
   * with `run` and hands the sandbox back with `release` once the outputs are collected.
   * `directory` is where the runner may keep its sandboxes (the worker's own scratch space).
   */
  acquireSandbox?(request: { directory: string; network: boolean }, opts?: CallOptions): Promise<RunnerSandbox | undefined>;
}

/** One action's lease of a persistent sandbox (see Runner.acquireSandbox). */
export interface RunnerSandbox {
  /** Empty when acquired; the executor materializes the action's inputs here. */
  readonly inputRoot: string;
  /** Where `run` must send stdout and stderr; empty or absent when acquired (live output follows them). */
  readonly stdoutPath: string;
  readonly stderrPath: string;
  run(request: RunRequest, opts?: CallOptions): Promise<RunResult>;
  /** Kills what is left, empties the input root and the sandbox's private state, and returns it to the pool. */
  release(): Promise<void>;
}

/** PATH used to find argv[0] when the Command sets none, as Bazel's own local execution does. */
export const DEFAULT_SEARCH_PATH = '/usr/bin:/bin';

export interface LocalRunnerOptions {
  /** Time between SIGTERM and SIGKILL when a timed-out or cancelled command is stopped. */
  killGraceMs?: number;
  /** Clock for timeouts and the kill grace period (tests pass a FakeClock). */
  clock?: Clock;
  /**
   * Who forks: a SpawnerProcess (a small helper process, see spawner-process.ts: forking a large
   * process is slow and blocks its event loop), or 'inline' for child_process.spawn in this process.
   * @default sharedSpawner()
   */
  spawner?: SpawnerProcess | 'inline';
  /** Run actions as this host uid/gid (needs root). @default the worker's own */
  runAs?: RunAs;
  /** Per-action limits; without them the command is started as given (no prlimit). */
  limits?: ActionLimits;
  /** Per-action cgroups for memory, processes and whole-tree kill, when the worker can create them. */
  cgroups?: CgroupManager;
}

/** The part of ChildProcess the runner uses; SpawnedCommand has the same shape. */
interface StartedChild {
  readonly pid?: number | undefined;
  once(event: 'spawn', listener: () => void): unknown;
  once(event: 'error', listener: (err: Error) => void): unknown;
  once(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): unknown;
}

/**
 * Runs a command as a local child process in its own process group, with stdout and stderr written to
 * files (never buffered in memory, so output size does not matter). On timeout or cancellation the
 * whole group gets SIGTERM and, after a grace period, SIGKILL; once the main process exits, any
 * stragglers it left in the group are killed too, so no action outlives its task. With a cgroup per
 * action, everything in the cgroup is killed as well (which catches `setsid` escapes), and its memory
 * and process limits hold. No namespaces: the command sees the host as the uid it runs as.
 */
export class LocalRunner implements Runner {
  protected readonly killGraceMs: number;
  protected readonly clock: Clock;
  private readonly spawner: SpawnerProcess | 'inline';
  protected readonly runAs: RunAs | undefined;
  protected readonly limits: ActionLimits | undefined;
  protected readonly cgroups: CgroupManager | undefined;
  private readonly pendingCgroupRemovals = new Set<Promise<void>>();
  readonly isolation: RunnerIsolation;

  constructor(opts: LocalRunnerOptions = {}) {
    this.killGraceMs = opts.killGraceMs ?? 2_000;
    this.clock = opts.clock ?? systemClock;
    // With limits, a helper of our own carries RLIMIT_FSIZE for every command (no prlimit exec each).
    this.spawner = opts.spawner ?? (opts.limits ? new SpawnerProcess(opts.limits.fileSizeBytes) : sharedSpawner());
    this.runAs = opts.runAs;
    this.limits = opts.limits;
    this.cgroups = opts.cgroups;
    const uid = this.runAs?.uid ?? process.getuid?.() ?? 0;
    this.isolation = {
      ...(this.runAs ? { actionUser: this.runAs } : {}),
      copyInputs: uid === 0 || uid === process.getuid?.(),
      ...(this.limits ? { limits: this.limits } : {}),
    };
  }

  /** The command line that starts the action (wrapped in prlimit/setpriv when configured). */
  protected command(request: RunRequest, executable: string, cgroup: ActionCgroup | undefined): SandboxCommand | undefined {
    if (!this.limits && !this.runAs) return undefined;
    const input = this.sandboxInput(request, executable, cgroup);
    // Nothing to set per command (the helper and the cgroup hold the limits): start it directly.
    if (!input.runAs && input.limits.fileSizeBytes === undefined && input.limits.memoryBytes === undefined) return undefined;
    return localCommand(input);
  }

  protected sandboxInput(request: RunRequest, executable: string, cgroup: ActionCgroup | undefined): Parameters<typeof localCommand>[0] {
    // execvp in the wrapper looks argv[0] up again, in the action's environment and working
    // directory, exactly as resolveExecutable did; argv[0] reaches the action as given.
    void executable;
    const limits = this.limits ?? DEFAULT_LIMITS;
    return {
      argv: request.argv,
      cwd: request.cwd,
      inputRoot: request.inputRoot ?? request.cwd,
      runAs: this.runAs,
      limits: {
        fileSizeBytes: this.spawner !== 'inline' && this.spawner.fileSizeLimit === limits.fileSizeBytes ? undefined : limits.fileSizeBytes,
        memoryBytes: cgroup ? undefined : limits.memoryBytes,
      },
      network: request.network ?? true,
      chroot: request.chroot ?? false,
    };
  }

  /** Checks argv[0] on the host before anything starts (INVALID_ARGUMENT when it cannot run). */
  protected async executableOf(request: RunRequest): Promise<string> {
    const argv0 = request.argv[0]!;
    return resolveExecutable(argv0, request.env.PATH ?? DEFAULT_SEARCH_PATH, request.cwd);
  }

  async run(request: RunRequest, opts: CallOptions = {}): Promise<RunResult> {
    const argv0 = checkArgv(request);
    opts.signal?.throwIfAborted();
    const executable = await this.executableOf(request);
    const cgroup = this.cgroups && this.limits ? await this.cgroups.create(this.limits) : undefined;
    try {
      const wrapped = this.command(request, executable, cgroup);
      const file = wrapped?.file ?? executable;
      const args = wrapped?.args ?? request.argv.slice(1);
      const result = await this.start(request, file, args, wrapped ? file : argv0, cgroup, opts.signal);
      return await this.withLimits(result, cgroup);
    } finally {
      // Every process is dead by now (withLimits killed the cgroup's, or the command never
      // started); removing the directories can wait for the kernel without holding up the result.
      if (cgroup) {
        const removal = cgroup.destroy().catch(() => {});
        this.pendingCgroupRemovals.add(removal);
        void removal.finally(() => this.pendingCgroupRemovals.delete(removal));
      }
    }
  }

  /** Stops a helper process of our own (commands still running are not affected). */
  close(): void {
    if (this.spawner !== 'inline' && this.spawner !== sharedSpawner()) this.spawner.close();
  }

  /** Resolves once the cgroups of finished commands are removed (before the cgroup parent is). */
  async settled(): Promise<void> {
    while (this.pendingCgroupRemovals.size > 0) await Promise.all([...this.pendingCgroupRemovals]);
  }

  private async withLimits(result: RunResult, cgroup: ActionCgroup | undefined): Promise<RunResult> {
    if (cgroup) {
      await cgroup.killAll();
      const usage = await cgroup.usage();
      if (usage.memoryExceeded) return { ...result, limitExceeded: 'memory' };
      if (usage.processesExceeded) return { ...result, limitExceeded: 'processes' };
    }
    if (this.limits && (result.signal === 'SIGXFSZ' || result.exitCode === 128 + (osConstants.signals.SIGXFSZ ?? 25))) {
      return { ...result, limitExceeded: 'file size' };
    }
    return result;
  }

  private async start(
    request: RunRequest,
    file: string,
    args: readonly string[],
    argv0: string,
    cgroup: ActionCgroup | undefined,
    signal: AbortSignal | undefined,
  ): Promise<RunResult> {
    const spawner = this.spawner;
    const cgroupProcs = cgroup?.procsFiles;
    const returnProcs = cgroup ? this.cgroups!.homeProcsFiles : undefined;
    if (spawner !== 'inline') {
      // The helper creates the output files itself.
      return await this.spawnAndWait(
        request,
        () =>
          spawner.spawn({
            file,
            args,
            argv0,
            cwd: request.cwd,
            env: request.env,
            stdoutPath: request.stdoutPath,
            stderrPath: request.stderrPath,
            ...(cgroupProcs ? { cgroupProcs, returnProcs: returnProcs! } : {}),
          }),
        signal,
        cgroup,
      );
    }
    const [stdout, stderr] = await openOutputFiles(request.stdoutPath, request.stderrPath);
    let closed: Promise<unknown> | undefined;
    try {
      const exited = this.spawnAndWait(
        request,
        () =>
          joinCgroups(cgroupProcs, returnProcs, () =>
            spawn(file, args, {
              cwd: request.cwd,
              env: { ...request.env },
              argv0,
              detached: true,
              stdio: ['ignore', stdout.fd, stderr.fd],
            }),
          ),
        signal,
        cgroup,
      );
      // spawn() has forked by the time it returns and the child holds its own copies of the
      // descriptors, so ours are closed while it runs rather than after it exits.
      closed = Promise.all([stdout.close(), stderr.close()]);
      return await exited;
    } finally {
      await (closed ?? Promise.all([stdout.close(), stderr.close()]));
    }
  }

  /** Starts the child (in its own process group) and waits for it, enforcing timeout and cancellation. */
  private spawnAndWait(request: RunRequest, start: () => StartedChild, signal: AbortSignal | undefined, cgroup: ActionCgroup | undefined): Promise<RunResult> {
    return new Promise<RunResult>((resolve, reject) => {
      let child: StartedChild;
      try {
        child = start();
      } catch (err) {
        reject(startError(request.argv[0]!, err));
        return;
      }
      let timedOut = false;
      let cancelled = false;
      let killing = false;
      // Fires when the process has exited, to stop the timeout and grace timers.
      const done = new AbortController();

      const killGroup = (sig: NodeJS.Signals) => {
        if (child.pid === undefined) return;
        try {
          process.kill(-child.pid, sig);
        } catch {
          // ESRCH: the group is already gone.
        }
        // Processes that left the group (setsid) are still in the cgroup.
        if (sig === 'SIGKILL') void cgroup?.killAll();
      };
      const stop = () => {
        if (killing) return;
        killing = true;
        killGroup('SIGTERM');
        this.clock.sleep(this.killGraceMs, done.signal).then(
          () => killGroup('SIGKILL'),
          () => {},
        );
      };
      const onAbort = () => {
        cancelled = true;
        stop();
      };

      child.once('error', (err) => {
        done.abort();
        signal?.removeEventListener('abort', onAbort);
        reject(startError(request.argv[0]!, err));
      });
      child.once('spawn', () => {
        if (signal?.aborted) onAbort();
        else signal?.addEventListener('abort', onAbort, { once: true });
        if (request.timeoutMs > 0 && Number.isFinite(request.timeoutMs)) {
          this.clock.sleep(request.timeoutMs, done.signal).then(
            () => {
              if (killing) return;
              timedOut = true;
              stop();
            },
            () => {},
          );
        }
      });
      child.once('exit', (code, sig) => {
        done.abort();
        signal?.removeEventListener('abort', onAbort);
        // Background processes the command left behind must not outlive it.
        killGroup('SIGKILL');
        const exitCode = code ?? (sig ? 128 + (osConstants.signals[sig] ?? 0) : 1);
        resolve({ exitCode, timedOut, cancelled, ...(sig ? { signal: sig } : {}) });
      });
    });
  }
}

/**
 * Finds the file to execute for `argv0`: a name with a "/" is taken relative to the working
 * directory; a bare name is looked up in `searchPath` (relative entries also against `cwd`), the way
 * execvp would but using the *command's* PATH rather than the worker's.
 */
export async function resolveExecutable(argv0: string, searchPath: string, cwd: string): Promise<string> {
  if (argv0.includes('/')) {
    const candidate = path.resolve(cwd, argv0);
    await checkExecutable(argv0, candidate, true);
    return candidate;
  }
  for (const dir of searchPath.split(':')) {
    const candidate = path.resolve(cwd, dir === '' ? '.' : dir, argv0);
    if (await checkExecutable(argv0, candidate, false)) return candidate;
  }
  throw StatusError.invalidArgument(`Failed to start command: ${JSON.stringify(argv0)} not found in PATH ${JSON.stringify(searchPath)}`, [
    { field: 'command.arguments[0]', description: 'Program not found' },
  ]);
}

/** Opens (creating or truncating) both output files at once; neither is left open on failure. */
async function openOutputFiles(stdoutPath: string, stderrPath: string): Promise<[fsp.FileHandle, fsp.FileHandle]> {
  const [stdout, stderr] = await Promise.allSettled([fsp.open(stdoutPath, 'w'), fsp.open(stderrPath, 'w')]);
  if (stdout.status === 'fulfilled' && stderr.status === 'fulfilled') return [stdout.value, stderr.value];
  if (stdout.status === 'fulfilled') await stdout.value.close();
  if (stderr.status === 'fulfilled') await stderr.value.close();
  throw stdout.status === 'rejected' ? stdout.reason : (stderr as PromiseRejectedResult).reason;
}

async function checkExecutable(argv0: string, candidate: string, mustExist: boolean): Promise<boolean> {
  try {
    // Both questions at once: one file system round trip instead of two on every spawn.
    const [stat, access] = await Promise.allSettled([fsp.stat(candidate), fsp.access(candidate, fsConstants.X_OK)]);
    if (stat.status === 'rejected') throw stat.reason;
    if (!stat.value.isFile()) {
      if (!mustExist) return false;
      throw StatusError.invalidArgument(`Failed to start command: ${JSON.stringify(argv0)} is not a regular file`);
    }
    if (access.status === 'rejected') throw access.reason;
    return true;
  } catch (err) {
    if (err instanceof StatusError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (!mustExist && (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EACCES')) return false;
    throw startError(argv0, err);
  }
}

/** argv[0], or INVALID_ARGUMENT when the argument list is empty. */
export function checkArgv(request: RunRequest): string {
  const argv0 = request.argv[0];
  if (argv0 === undefined || argv0 === '') {
    throw StatusError.invalidArgument('Failed to start command: the argument list is empty', [
      { field: 'command.arguments', description: 'At least one argument (the program) is required' },
    ]);
  }
  return argv0;
}

/** The status for a command that could not be started (an output file error is passed on as is). */
export function startError(argv0: string, err: unknown): StatusError | SpawnError {
  // An output file that cannot be created is the caller's problem, not the program's.
  if (err instanceof SpawnError && err.stage === 'open') return err;
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ENOTDIR') {
    return StatusError.invalidArgument(`Failed to start command: ${JSON.stringify(argv0)} not found`, [
      { field: 'command.arguments[0]', description: 'Program not found' },
    ]);
  }
  if (code === 'EACCES' || code === 'ENOEXEC') {
    return StatusError.invalidArgument(`Failed to start command: ${JSON.stringify(argv0)} is not executable`, [
      { field: 'command.arguments[0]', description: 'Program is not executable' },
    ]);
  }
  if (code === 'ERR_INVALID_ARG_VALUE' || code === 'ERR_INVALID_ARG_TYPE') {
    // Node refuses NUL bytes in arguments and environment entries, and "=" in variable names.
    return StatusError.invalidArgument(`Failed to start command ${JSON.stringify(argv0)}: ${(err as Error).message}`);
  }
  return StatusError.internal(`Failed to start command ${JSON.stringify(argv0)}: ${(err as Error).message}`, err);
}
