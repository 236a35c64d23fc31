/**
 * Starts commands from a small helper process instead of from the worker itself.
 *
 * Why: on Linux, Node's child_process.spawn forks the calling process synchronously, on the event
 * loop, and the cost of fork grows with the caller's memory (its page tables are copied). A worker
 * that also serves gRPC, or `serve all` with the scheduler and the CAS in the same process, is large:
 * measured on the benchmark machine, each spawn of `true` blocked the event loop for ~29 ms, about
 * 70% of the server's CPU per no-op action, stalling every other call meanwhile. The helper is a bare
 * `node -e` process that only spawns: its forks are cheaper, and they happen on another core while
 * the worker's event loop carries on.
 *
 * The helper opens the stdout/stderr files, spawns the command exactly as LocalRunner would
 * (detached into its own process group, exact environment, argv0), and reports `spawn` (with the
 * pid), `exit` or `error` over its IPC channel. Killing stays with the caller: the process group id
 * is the child's pid, so `process.kill(-pid)` works from any process of the same user. One helper
 * serves every runner of this process; it is started on first use, restarted if it dies, and does not
 * keep the process alive while nothing runs.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { writeFileSync } from 'node:fs';
import { PRLIMIT_PATH } from './sandbox-command.js';

/** What the helper needs to start one command. */
export interface SpawnRequest {
  /** Absolute path of the program (already resolved). */
  file: string;
  args: readonly string[];
  argv0: string;
  cwd: string;
  env: Readonly<Record<string, string>>;
  /** Created or truncated by the helper; receive the command's stdout and stderr. */
  stdoutPath: string;
  stderrPath: string;
  /**
   * `cgroup.procs` files of the action's cgroup(s): the helper moves itself there for the instant of
   * the fork, so the command is inside from its first instruction, then back to `returnProcs`.
   */
  cgroupProcs?: readonly string[];
  returnProcs?: readonly string[];
}

/**
 * A command started through the helper, shaped like the part of ChildProcess that LocalRunner uses:
 * `spawn` once it runs (then `pid` is set), `exit` (code, signal) when it ended, or `error` when it
 * could not be started (`stage` 'open' when an output file could not be created, else 'spawn').
 */
export class SpawnedCommand extends EventEmitter {
  pid: number | undefined;
}

/** Error reported by the helper, with the errno-style `code` of the original error when it had one. */
export class SpawnError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
    readonly stage: 'open' | 'spawn' | 'helper',
  ) {
    super(message);
    this.name = 'SpawnError';
  }
}

type HelperMessage =
  | { id: number; type: 'spawn'; pid: number }
  | { id: number; type: 'exit'; code: number | null; signal: NodeJS.Signals | null }
  | { id: number; type: 'error'; stage: 'open' | 'spawn'; code?: string; message: string };

/**
 * `startCommand(m, options, enter, leave)` for a helper program (which defines `spawn`, `fs` and
 * `send`): opens m's output files, runs `enter` (e.g. join a cgroup), spawns m's command detached
 * with `options` added, runs `leave`, and reports `spawn`, then `exit` or `error` (stage `open` or
 * `spawn`) for `m.id`. Returns the child, or undefined when it could not be started.
 */
export const START_COMMAND_SOURCE = `
function startCommand(m, options, enter, leave) {
  const fail = (stage, e) => send({ id: m.id, type: 'error', stage, code: e && e.code, message: String((e && e.message) || e) });
  let out, err;
  try {
    out = fs.openSync(m.stdoutPath, 'w');
    err = fs.openSync(m.stderrPath, 'w');
  } catch (e) {
    if (out !== undefined) fs.closeSync(out);
    fail('open', e);
    return undefined;
  }
  let child;
  try {
    enter();
    child = spawn(m.file, m.args, Object.assign({ cwd: m.cwd, env: m.env, argv0: m.argv0, detached: true, stdio: ['ignore', out, err] }, options));
  } catch (e) {
    fail('spawn', e);
    return undefined;
  } finally {
    leave();
    fs.closeSync(out);
    fs.closeSync(err);
  }
  child.once('error', (e) => fail('spawn', e));
  child.once('spawn', () => send({ id: m.id, type: 'spawn', pid: child.pid }));
  child.once('exit', (code, signal) => send({ id: m.id, type: 'exit', code, signal }));
  return child;
}
`;

/**
 * The helper's whole program (CommonJS, run with `node -e`): it must not depend on this package's
 * build, so that it works the same from src/ under vitest and from dist/.
 */
const HELPER_SOURCE = `
'use strict';
const { spawn } = require('node:child_process');
const fs = require('node:fs');
process.on('disconnect', () => process.exit(0));
const send = (m) => { if (process.connected) process.send(m); };
${START_COMMAND_SOURCE}
process.on('message', (m) => {
  const pid = String(process.pid);
  startCommand(
    m,
    {},
    () => { for (const f of m.cgroupProcs || []) fs.writeFileSync(f, pid); },
    () => { for (const f of m.returnProcs || []) { try { fs.writeFileSync(f, pid); } catch (e) {} } },
  );
});
`;

/** One helper process and the commands it is running for us. */
export class SpawnerProcess {
  private helper: ChildProcess | undefined;

  /**
   * @param fileSizeLimitBytes RLIMIT_FSIZE of the helper, inherited by every command it starts: set
   *   once here instead of by a `prlimit` exec per command. (The helper writes no regular files.)
   */
  constructor(private readonly fileSizeLimitBytes?: number) {}

  /** The RLIMIT_FSIZE every command of this helper inherits, if any. */
  get fileSizeLimit(): number | undefined {
    return this.fileSizeLimitBytes;
  }
  private readonly pending = new Map<number, SpawnedCommand>();
  private nextId = 1;

  /** Starts `request` in the helper; the result reports `spawn`, then `exit` or `error`. */
  spawn(request: SpawnRequest): SpawnedCommand {
    const command = new SpawnedCommand();
    const helper = this.ensureHelper();
    const id = this.nextId++;
    this.pending.set(id, command);
    helper.channel?.ref();
    const sent = helper.send({ id, ...request, args: [...request.args], env: { ...request.env }, cgroupProcs: [...(request.cgroupProcs ?? [])], returnProcs: [...(request.returnProcs ?? [])] }, (err) => {
      if (err) this.fail(id, new SpawnError(`Failed to hand the command to the spawner process: ${err.message}`, undefined, 'helper'));
    });
    if (!sent && !helper.connected) this.fail(id, new SpawnError('Failed to hand the command to the spawner process: it is gone', undefined, 'helper'));
    return command;
  }

  /** The helper's pid while it runs (for diagnostics and tests). */
  get helperPid(): number | undefined {
    return this.helper?.connected ? this.helper.pid : undefined;
  }

  /** Stops the helper; commands still running are not affected (callers kill their groups). */
  close(): void {
    const helper = this.helper;
    this.helper = undefined;
    if (helper?.connected) helper.disconnect();
  }

  private ensureHelper(): ChildProcess {
    if (this.helper?.connected) return this.helper;
    const limit = this.fileSizeLimitBytes;
    const [file, args] =
      limit === undefined ? [process.execPath, ['-e', HELPER_SOURCE]] : [PRLIMIT_PATH, [`--fsize=${limit}:${limit}`, '--', process.execPath, '-e', HELPER_SOURCE]];
    const helper = spawn(file, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'json' });
    helper.on('message', (m: HelperMessage) => this.onMessage(m));
    helper.on('error', () => {
      // Reported through 'exit' (or the send callback); nothing else to do here.
    });
    helper.once('exit', (code, signal) => {
      if (this.helper === helper) this.helper = undefined;
      // Commands whose end we will never hear of: kill what they left and fail them.
      for (const [id, command] of [...this.pending]) {
        if (command.pid !== undefined) {
          try {
            process.kill(-command.pid, 'SIGKILL');
          } catch {
            // ESRCH: already gone.
          }
        }
        this.fail(id, new SpawnError(`The spawner process exited (${signal ?? `code ${code}`}) while the command ran`, undefined, 'helper'));
      }
    });
    helper.unref();
    helper.channel?.unref();
    this.helper = helper;
    return helper;
  }

  private onMessage(m: HelperMessage): void {
    const command = this.pending.get(m.id);
    if (!command) return;
    if (m.type === 'spawn') {
      command.pid = m.pid;
      command.emit('spawn');
    } else if (m.type === 'exit') {
      this.settle(m.id);
      command.emit('exit', m.code, m.signal);
    } else {
      this.fail(m.id, new SpawnError(m.message, m.code, m.stage));
    }
  }

  private fail(id: number, err: SpawnError): void {
    const command = this.pending.get(id);
    if (!command) return;
    this.settle(id);
    command.emit('error', err);
  }

  private settle(id: number): void {
    this.pending.delete(id);
    // Only a running command keeps this process alive, as a ChildProcess of our own would.
    if (this.pending.size === 0) this.helper?.channel?.unref();
  }
}

/**
 * Runs `spawn` (which forks synchronously) with this process moved into the cgroups of
 * `cgroupProcs`, then moves it back to `returnProcs`: the child starts inside its action's cgroup.
 */
export function joinCgroups<T>(cgroupProcs: readonly string[] | undefined, returnProcs: readonly string[] | undefined, spawn: () => T): T {
  const pid = String(process.pid);
  try {
    for (const f of cgroupProcs ?? []) writeFileSync(f, pid);
    return spawn();
  } finally {
    for (const f of returnProcs ?? []) {
      try {
        writeFileSync(f, pid);
      } catch {
        // Our own cgroup is gone: nothing to return to.
      }
    }
  }
}

let shared: SpawnerProcess | undefined;

/** The spawner shared by every LocalRunner of this process. */
export function sharedSpawner(): SpawnerProcess {
  shared ??= new SpawnerProcess();
  return shared;
}
