/**
 * The command lines that put an action in its place: rlimits (`prlimit`), namespaces and mounts
 * (`bwrap`), and the drop to an unprivileged host uid with no capabilities and no_new_privs
 * (`setpriv`). Pure functions: the runner spawns what these return.
 *
 * Order, for the bwrap runner started as root: `prlimit` → `bwrap` (as root: new mount, PID, IPC, UTS
 * and optionally network namespaces, NO user namespace) → `setpriv --reuid/--regid` inside → the
 * action. bwrap keeps only CAP_SETUID/CAP_SETGID for setpriv, which gives up both (a uid change from 0
 * clears the permitted set) and sets no_new_privs, so the action runs as a real unprivileged host uid.
 * We do not use `bwrap --unshare-user --uid 65534`: behind a user namespace created by root that is
 * still host root for every file it touches. Nor does bwrap run *after* setpriv: an unprivileged
 * bwrap cannot bind an input root that lies under a directory the action uid may not traverse (the
 * default work dir is under /root), and it would need a user namespace of its own.
 */
import { existsSync, lstatSync, readlinkSync } from 'node:fs';
import * as path from 'node:path';

export interface RunAs {
  uid: number;
  gid: number;
}

/** Parses `uid:gid` (numbers), the form of `worker.run_as` and `--run_as`. */
export function parseRunAs(text: string): RunAs {
  const m = /^(\d+):(\d+)$/.exec(text.trim());
  if (!m) throw new Error(`Invalid run_as ${JSON.stringify(text)}: use numeric uid:gid (e.g. 65534:65534)`);
  return { uid: Number(m[1]), gid: Number(m[2]) };
}

export interface ActionLimits {
  /** Memory of all the action's processes together (cgroup; else RLIMIT_AS per process). */
  memoryBytes: number;
  /** Processes at once (cgroup `pids`; not enforced without one). */
  processes: number;
  /** Largest file the action may write (RLIMIT_FSIZE). */
  fileSizeBytes: number;
  /** Total bytes of outputs collected (checked by the worker when collecting). */
  outputBytes: number;
}

export const DEFAULT_LIMITS: ActionLimits = {
  memoryBytes: 4 * 1024 ** 3,
  processes: 1024,
  fileSizeBytes: 16 * 1024 ** 3,
  outputBytes: 16 * 1024 ** 3,
};

export const BWRAP_PATH = '/usr/bin/bwrap';
export const SETPRIV_PATH = '/usr/bin/setpriv';
export const PRLIMIT_PATH = '/usr/bin/prlimit';

/** Host paths made visible read-only inside the sandbox (those that exist; symlinks stay symlinks). */
export const READ_ONLY_HOST_PATHS = ['/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32', '/etc', '/opt'];

export interface SandboxCommandInput {
  /** argv of the action; argv[0] is looked up by execvp in the action's environment, as before. */
  argv: readonly string[];
  /** Absolute working directory (inside `inputRoot`, or inside it as seen from `/` in chroot mode). */
  cwd: string;
  /** The action's input root on the host. */
  inputRoot: string;
  /** Drop to this uid/gid (omit to keep the runner's own). */
  runAs?: RunAs | undefined;
  /** Undefined entries are not set per command (the helper or a cgroup holds them). */
  limits: { fileSizeBytes?: number | undefined; memoryBytes?: number | undefined };
  /** bwrap only: share the host's network namespace. */
  network?: boolean;
  /** bwrap only: the input root becomes `/` (with /dev, /proc and a private /tmp). */
  chroot?: boolean;
  /** bwrap only: bind the input root here instead of at its own path. */
  stagingPath?: string;
  /**
   * bwrap only: a persistent slot's sandbox (see sandbox-slot.ts). argv runs as root inside (the slot
   * helper, which drops to `runAs` for each action itself), these host directories are bound
   * read-write at their own paths too, and a private mqueue file system is mounted on /dev/mqueue.
   */
  slot?: { extraBinds: readonly string[] };
}

export interface SandboxCommand {
  file: string;
  args: string[];
}

/**
 * `prlimit` prefix: file size unless the spawning helper already has it (`fileSizeBytes` undefined),
 * address space only when no cgroup holds memory; nothing (no exec) when neither is needed.
 */
function prlimitPrefix(limits: SandboxCommandInput['limits']): string[] {
  const out: string[] = [];
  if (limits.fileSizeBytes !== undefined) out.push(`--fsize=${limits.fileSizeBytes}:${limits.fileSizeBytes}`);
  if (limits.memoryBytes !== undefined) out.push(`--as=${limits.memoryBytes}:${limits.memoryBytes}`);
  return out.length === 0 ? [] : [PRLIMIT_PATH, ...out, '--'];
}

function setprivPrefix(runAs: RunAs | undefined): string[] {
  if (!runAs) return [];
  return [SETPRIV_PATH, `--reuid=${runAs.uid}`, `--regid=${runAs.gid}`, '--clear-groups', '--inh-caps=-all', '--no-new-privs', '--'];
}

/** The local runner: rlimits and, when asked, another uid; no namespaces. */
export function localCommand(input: SandboxCommandInput): SandboxCommand {
  const [file, ...args] = [...prlimitPrefix(input.limits), ...setprivPrefix(input.runAs), ...input.argv];
  return { file: file!, args };
}

/** The bwrap runner (see the module comment for the order and why). */
export function bwrapCommand(input: SandboxCommandInput, hostPaths: readonly string[] = READ_ONLY_HOST_PATHS): SandboxCommand {
  const args = [BWRAP_PATH, '--unshare-pid', '--unshare-ipc', '--unshare-uts', '--die-with-parent', '--new-session'];
  if (input.network === false) args.push('--unshare-net');
  // One capability per --cap-add: bwrap takes a single name after each.
  if (input.runAs && process.getuid?.() === 0) args.push('--cap-add', 'CAP_SETUID', '--cap-add', 'CAP_SETGID');
  if (input.chroot) {
    args.push('--bind', input.inputRoot, '/', '--dev', '/dev', '--proc', '/proc', '--perms', '01777', '--tmpfs', '/tmp');
  } else {
    for (const p of hostPaths) {
      let st;
      try {
        st = lstatSync(p);
      } catch {
        continue;
      }
      if (st.isSymbolicLink()) args.push('--symlink', readlinkSync(p), p);
      else args.push('--ro-bind', p, p);
    }
    args.push('--dev', '/dev', '--proc', '/proc', '--perms', '01777', '--tmpfs', '/tmp');
    if (input.slot) args.push('--mqueue', '/dev/mqueue');
    const target = input.stagingPath ?? input.inputRoot;
    const binds: [string, string][] = [[input.inputRoot, target], ...(input.slot?.extraBinds ?? []).map((d): [string, string] => [d, d])];
    // bwrap creates the input root's ancestors 0700; the action uid must be able to traverse them.
    const made = new Set<string>();
    for (const [, to] of binds) {
      for (const dir of ancestors(to)) {
        if (made.has(dir) || dir === '/tmp' || hostPaths.some((p) => dir === p || dir.startsWith(`${p}/`))) continue;
        made.add(dir);
        args.push('--perms', '0755', '--dir', dir);
      }
    }
    for (const [from, to] of binds) args.push('--bind', from, to);
  }
  args.push('--chdir', input.cwd, '--');
  // In chroot mode setpriv (a host binary) is not there: the caller gives that mode its own order.
  // A slot's helper stays root inside and drops to runAs for each action it starts.
  args.push(...(input.chroot || input.slot ? [] : setprivPrefix(input.runAs)), ...input.argv);
  const [file, ...rest] = [...prlimitPrefix(input.limits), ...args];
  return { file: file!, args: rest };
}

/** Ancestors of an absolute path, outermost first, without `/` and without the path itself. */
function ancestors(p: string): string[] {
  const out: string[] = [];
  for (let dir = path.dirname(p); dir !== '/' && dir !== '.'; dir = path.dirname(dir)) out.unshift(dir);
  return out;
}

/** Whether Debian's bubblewrap (and setpriv, prlimit) are installed where this module expects them. */
export function bwrapAvailable(): boolean {
  return existsSync(BWRAP_PATH) && existsSync(SETPRIV_PATH) && existsSync(PRLIMIT_PATH);
}
