/**
 * Replaying a remote action on this machine, to debug a remote failure on a laptop: its input root
 * is materialised in a local directory (every file hash-verified, names and symlinks validated), the
 * parent directories of its outputs are created as a worker creates them, and its command runs with
 * exactly the Command's argv, environment (nothing inherited) and working directory. With `print`
 * nothing runs: the shell line that would run is returned instead.
 */
import { spawn } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import * as path from 'node:path';
import type { CasClient } from '../client/cas-client.js';
import { downloadTree } from '../client/download-tree.js';
import type { Digest } from '../digest/digest.js';
import { StatusError } from '../errors/status-error.js';
import { type LoadedAction, environmentOf, loadAction, outputPathsOf, timeoutMsOf } from './load-action.js';

/** What `reproduce` prepared (and, unless printing, ran); the `--json` result. */
export interface ReproduceResult {
  actionDigest: string;
  /** The local input root. */
  dir: string;
  /** Where the command runs: `dir` joined with the Command's working_directory. */
  cwd: string;
  argv: string[];
  env: Record<string, string>;
  /** The action's own timeout in seconds, for information (it is not enforced locally). */
  timeoutSeconds?: number;
  /** The same run as one POSIX shell line: `cd DIR && env -i K=V ... ARGV`. */
  shellCommand: string;
  /** The command's exit code (absent with --print, or when it was killed by a signal). */
  exitCode?: number;
  /** The signal that ended the command, if one did. */
  signal?: string;
}

export interface ReproduceOptions {
  /** Only prepare the directory and return the command line; run nothing. */
  print: boolean;
  /** Where the command's stdout goes (the terminal, or stderr under --json). */
  stdout: 'inherit' | NodeJS.WritableStream;
}

/** Materialises the action's inputs under `dir` (which must be empty or absent) and runs or prints its command. */
export async function reproduceAction(cas: CasClient, actionDigest: Digest, dir: string, opts: ReproduceOptions): Promise<ReproduceResult> {
  const loaded = await loadAction(cas, actionDigest);
  const root = path.resolve(dir);
  await downloadTree(cas, loaded.inputRootDigest, root);
  const cwd = workingDirectoryOf(loaded, root);
  for (const output of outputPathsOf(loaded.command)) await mkdir(path.dirname(path.join(cwd, output)), { recursive: true });
  await mkdir(cwd, { recursive: true });
  const argv = [...(loaded.command.arguments ?? [])];
  if (argv.length === 0) throw StatusError.invalidArgument(`Failed to reproduce action ${actionDigest}: its Command has no arguments`);
  const env = Object.fromEntries(environmentOf(loaded.command));
  const result: ReproduceResult = { actionDigest: actionDigest.toString(), dir: root, cwd, argv, env, shellCommand: shellCommandLine(cwd, env, argv) };
  const timeoutMs = timeoutMsOf(loaded.action);
  if (timeoutMs !== undefined) result.timeoutSeconds = timeoutMs / 1000;
  if (opts.print) return result;
  const ended = await run(argv, cwd, env, opts.stdout);
  if (ended.signal) result.signal = ended.signal;
  else result.exitCode = ended.code ?? 0;
  return result;
}

/** `root` joined with the Command's working_directory, refusing one that leaves the root. */
function workingDirectoryOf(loaded: LoadedAction, root: string): string {
  const wd = loaded.command.workingDirectory ?? '';
  const cwd = path.resolve(root, wd);
  if (cwd !== root && !cwd.startsWith(root + path.sep)) {
    throw StatusError.invalidArgument(`Failed to reproduce action ${loaded.digest}: working_directory ${JSON.stringify(wd)} leaves the input root`);
  }
  return cwd;
}

/** POSIX single-quoting: safe for any byte string. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_./:=@%+,-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

/** `cd CWD && env -i K=V ... ARGV`: the exact environment, nothing inherited from the shell. */
export function shellCommandLine(cwd: string, env: Record<string, string>, argv: readonly string[]): string {
  const assignments = Object.entries(env).map(([k, v]) => shellQuote(`${k}=${v}`));
  return ['cd', shellQuote(cwd), '&&', 'env', '-i', ...assignments, ...argv.map(shellQuote)].join(' ');
}

/**
 * Runs argv[0] (looked up, when it has no slash, in the Command's PATH, or /usr/bin:/bin as a worker
 * does) with exactly `env`. stdin is closed; stderr is the terminal's.
 */
function run(argv: string[], cwd: string, env: Record<string, string>, stdout: ReproduceOptions['stdout']): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { cwd, env, stdio: ['ignore', stdout === 'inherit' ? 'inherit' : 'pipe', 'inherit'] });
    if (stdout !== 'inherit') child.stdout?.pipe(stdout, { end: false });
    child.once('error', (err) => reject(StatusError.invalidArgument(`Failed to start ${JSON.stringify(argv[0])} in ${cwd}: ${err.message}`)));
    child.once('close', (code, signal) => resolve({ code, signal }));
  });
}
