/**
 * The sandboxed runner: each action in bubblewrap's new mount, PID, IPC and UTS namespaces (and a new
 * network namespace when its platform says `network=off`), as an unprivileged host uid with no
 * capabilities and no_new_privs. Inside, the host's /usr, /bin, /lib*, /etc and /opt are read-only,
 * /tmp is private, and the input root is the only writable tree; the worker's cache, the CAS storage
 * and every other file of the service are simply not there. The PID namespace makes the tree kill
 * exact: when the command exits or bwrap is killed, the kernel kills every process left inside.
 *
 * Chroot mode (BuildStream/BuildGrid-style clients, whose input root is a whole sysroot): the input
 * root becomes `/`, with /dev, /proc and a private /tmp. setpriv (a host binary) is not inside such a
 * root, so the outer bwrap (root) only makes the namespaces and binds the root at a neutral place,
 * and drops to the action uid with the host's setpriv; a second, unprivileged bwrap then binds that
 * place as `/`.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { CallOptions } from '../blobstore/blob-store.js';
import type { ActionCgroup } from './action-cgroup.js';
import { checkArgv, type LocalRunnerOptions, LocalRunner, type RunnerSandbox, type RunRequest, type RunResult, startError } from './runner.js';
import { BWRAP_PATH, bwrapCommand, READ_ONLY_HOST_PATHS, type SandboxCommand } from './sandbox-command.js';
import { SandboxPool } from './sandbox-pool.js';

/** What bwrap mounts inside the input root in chroot mode. */
const CHROOT_MOUNT_POINTS = ['dev', 'proc', 'tmp'];

/** Where the outer bwrap of chroot mode binds the input root (a tmpfs path the action uid can traverse). */
const CHROOT_STAGING = '/bzutil-sysroot';

export interface BwrapRunnerOptions extends LocalRunnerOptions {
  /**
   * Keep one persistent sandbox per runner slot (sandbox-slot.ts) instead of starting bwrap for
   * every action; needs a per-action cgroup and a run_as uid (else it is off). Config
   * `worker.sandbox_reuse`. @default true
   */
  sandboxReuse?: boolean;
}

export class BwrapRunner extends LocalRunner {
  private readonly pool: SandboxPool | undefined;

  constructor(opts: BwrapRunnerOptions = {}) {
    super(opts);
    const nodeVisible = READ_ONLY_HOST_PATHS.some((p) => process.execPath.startsWith(`${p}/`));
    if ((opts.sandboxReuse ?? true) && this.cgroups && this.runAs && this.limits && nodeVisible) {
      this.pool = new SandboxPool({ runAs: this.runAs, limits: this.limits, cgroups: this.cgroups, killGraceMs: this.killGraceMs, clock: this.clock });
    }
  }

  /** Whether actions run in persistent sandboxes (the slot pool). */
  get reusesSandboxes(): boolean {
    return this.pool !== undefined;
  }

  async acquireSandbox(request: { directory: string; network: boolean }, opts: CallOptions = {}): Promise<RunnerSandbox | undefined> {
    const pool = this.pool;
    if (!pool) return undefined;
    opts.signal?.throwIfAborted();
    const slot = await pool.acquire(request.directory, request.network);
    let released = false;
    return {
      inputRoot: slot.inputRoot,
      stdoutPath: slot.stdoutPath,
      stderrPath: slot.stderrPath,
      run: async (run: RunRequest, runOpts: CallOptions = {}) => {
        const argv0 = checkArgv(run);
        runOpts.signal?.throwIfAborted();
        const executable = await this.executableOf(run);
        try {
          return await slot.run(run, executable, runOpts.signal);
        } catch (err) {
          throw startError(argv0, err);
        }
      },
      release: async () => {
        if (released) return;
        released = true;
        await pool.release(slot, request.directory, request.network);
      },
    };
  }

  /** Destroys the persistent sandboxes (before the cgroup parent is removed); running actions are killed. */
  async closeSandboxes(): Promise<void> {
    await this.pool?.close();
  }

  protected override command(request: RunRequest, executable: string, cgroup: ActionCgroup | undefined): SandboxCommand {
    const input = this.sandboxInput(request, executable, cgroup);
    if (!input.chroot) return bwrapCommand(input);
    const inner = [
      BWRAP_PATH,
      '--unshare-user',
      '--die-with-parent',
      ...(input.runAs ? ['--uid', String(input.runAs.uid), '--gid', String(input.runAs.gid)] : []),
      '--bind',
      CHROOT_STAGING,
      '/',
      '--dev',
      '/dev',
      // A user namespace may not mount a new proc over one with read-only overmounts (the outer
      // bwrap's): the outer sandbox's own /proc (its PID namespace) is bound instead.
      '--ro-bind',
      '/proc',
      '/proc',
      '--perms',
      '01777',
      '--tmpfs',
      '/tmp',
      '--chdir',
      input.cwd,
      '--',
      ...input.argv,
    ];
    // The outer sandbox sees the host read-only (for setpriv and the inner bwrap) with the input
    // root at CHROOT_STAGING; the inner one sees only the input root.
    return bwrapCommand({ ...input, chroot: false, inputRoot: request.inputRoot ?? request.cwd, cwd: '/', argv: inner, stagingPath: CHROOT_STAGING });
  }

  /**
   * In chroot mode bwrap creates the mount points /dev, /proc and /tmp inside the input root; those
   * the input did not have are removed again (when still empty), so they never show up as outputs.
   */
  override async run(request: RunRequest, opts: CallOptions = {}): Promise<RunResult> {
    if (!request.chroot) return super.run(request, opts);
    const root = request.inputRoot ?? request.cwd;
    const absent = (await Promise.all(CHROOT_MOUNT_POINTS.map(async (name) => ((await fsp.lstat(path.join(root, name)).catch(() => undefined)) ? undefined : name)))).filter(
      (n): n is string => n !== undefined,
    );
    try {
      return await super.run(request, opts);
    } finally {
      // rmdir neither follows a symlink the action may have put there nor removes anything it wrote.
      await Promise.all(absent.map((name) => fsp.rmdir(path.join(root, name)).catch(() => {})));
    }
  }

  protected override async executableOf(request: RunRequest): Promise<string> {
    // In chroot mode argv[0] names a file of the sysroot, found by execvp inside it.
    if (request.chroot) return request.argv[0]!;
    return super.executableOf(request);
  }
}
