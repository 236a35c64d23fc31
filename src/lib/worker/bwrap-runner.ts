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
import { type LocalRunnerOptions, LocalRunner, type RunRequest, type RunResult } from './runner.js';
import { BWRAP_PATH, bwrapCommand, type SandboxCommand } from './sandbox-command.js';

/** What bwrap mounts inside the input root in chroot mode. */
const CHROOT_MOUNT_POINTS = ['dev', 'proc', 'tmp'];

/** Where the outer bwrap of chroot mode binds the input root (a tmpfs path the action uid can traverse). */
const CHROOT_STAGING = '/bzutil-sysroot';

export type BwrapRunnerOptions = LocalRunnerOptions;

export class BwrapRunner extends LocalRunner {
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
