/**
 * Runs the built CLI (`node bin/run.js`, so `npm run build` must have run) as a child process for
 * end-to-end tests, asynchronously so that servers in the test process keep serving meanwhile.
 */
import { execFile } from 'node:child_process';
import { binPath, repoRoot } from './serve-process.js';

export interface CliRun {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs `bzutil <args>` and resolves with its exit code and output; never rejects on a non-zero exit.
 * The environment's BZUTIL_* endpoints are cleared so that only the flags given count (unless `env`
 * sets them, e.g. to run the seed's commands verbatim against servers on port 0).
 */
export function runCli(args: string[], opts: { cwd?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<CliRun> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [binPath, ...args],
      {
        cwd: opts.cwd ?? repoRoot,
        encoding: 'utf8',
        maxBuffer: 16 * 1024 * 1024,
        timeout: opts.timeoutMs ?? 60_000,
        env: { ...process.env, BZUTIL_CAS_ADDR: '', BZUTIL_SCHEDULER_ADDR: '', BZUTIL_INSTANCE_NAME: '', BZUTIL_TOKEN: '', ...opts.env },
      },
      (err, stdout, stderr) => {
        const code = (err as { code?: unknown } | null)?.code;
        resolve({ exitCode: err ? (typeof code === 'number' ? code : -1) : 0, stdout, stderr });
      },
    );
  });
}

/**
 * Runs `bzutil <command> --json <rest>`, expects exit code 0 and parses stdout as `T`. `--json` goes
 * right after the command id, so that a trailing `-- argv...` stays the command's argv.
 */
export async function runCliJson<T>(args: string[], opts: { cwd?: string } = {}): Promise<T> {
  const run = await runCli([args[0]!, '--json', ...args.slice(1)], opts);
  if (run.exitCode !== 0) throw new Error(`bzutil ${args.join(' ')} exited ${run.exitCode}\nstdout: ${run.stdout}\nstderr: ${run.stderr}`);
  return JSON.parse(run.stdout) as T;
}
