/**
 * `npm run bench:sandbox-phases [-- --actions=N]`: where a no-op action's time goes in each way the
 * worker can run it, measured in one process without gRPC or the scheduler, so the runner's own cost
 * is seen alone (E1-local / E1-bwrap measure the whole round trip):
 *
 * - `local`: the local runner (as root: its own cgroup per action, no sandbox);
 * - `bwrap-per-action`: the bwrap runner starting bwrap for every action (`worker.sandbox_reuse: false`);
 * - `slot-pool`: the bwrap runner's persistent sandboxes (the default).
 *
 * Phases of one action, as LocalBuildExecutor goes through them: `prepare` (make the action
 * directory, or take an idle sandbox), `run` (start `true` and wait for its end, every process
 * killed), `release` (remove the directory, or reset the sandbox: processes, input root, /tmp,
 * /dev/shm, /dev/mqueue, SysV IPC). Variants are interleaved action by action, so a noisy moment
 * hurts them alike; the first actions of each (starting a sandbox) are warm-up and not counted.
 * Prints a table and the load (`uptime`) before and after. Needs root and bubblewrap for the bwrap rows.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, promises as fsp, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { silentLogger } from '../src/lib/util/logger.js';
import { createRunner, type CreatedRunner } from '../src/lib/worker/create-runner.js';
import { removeTree } from '../src/lib/worker/remove-tree.js';
import type { RunRequest, RunResult } from '../src/lib/worker/runner.js';
import { bwrapAvailable } from '../src/lib/worker/sandbox-command.js';
import { percentile, round } from './lib/stats.js';

const PHASES = ['prepare', 'run', 'release', 'total'] as const;
type Phase = (typeof PHASES)[number];

interface Variant {
  name: string;
  created: CreatedRunner;
  samples: Record<Phase, number[]>;
}

const WARMUP = 5;

function parseActions(argv: readonly string[]): number {
  const arg = argv.find((a) => a.startsWith('--actions='));
  const n = arg ? Number(arg.slice('--actions='.length)) : 200;
  if (!Number.isSafeInteger(n) || n < 1 || n > 10_000) throw new Error(`--actions must be 1..10000, got ${JSON.stringify(arg)}`);
  return n;
}

function uptime(): string {
  try {
    return execFileSync('uptime', { encoding: 'utf8' }).trim();
  } catch {
    return '(uptime unavailable)';
  }
}

/** One no-op action through `variant`, timed by phase (recorded unless it is warm-up). */
async function oneAction(variant: Variant, workDir: string, n: number, record: boolean): Promise<void> {
  const runner = variant.created.runner;
  const t0 = performance.now();
  const sandbox = await runner.acquireSandbox?.({ directory: path.join(workDir, 'actions', '.sandboxes'), network: true });
  const actionDirectory = path.join(workDir, 'actions', `${variant.name}-${n}`);
  const inputRoot = sandbox?.inputRoot ?? path.join(actionDirectory, 'root');
  if (!sandbox) await fsp.mkdir(inputRoot, { recursive: true });
  const t1 = performance.now();
  const request: RunRequest = {
    argv: ['true'],
    env: { PATH: '/usr/bin:/bin' },
    cwd: inputRoot,
    inputRoot,
    stdoutPath: sandbox?.stdoutPath ?? path.join(actionDirectory, 'stdout'),
    stderrPath: sandbox?.stderrPath ?? path.join(actionDirectory, 'stderr'),
    timeoutMs: 60_000,
  };
  const result: RunResult = await (sandbox ?? runner).run(request);
  if (result.exitCode !== 0) throw new Error(`${variant.name}: \`true\` exited ${result.exitCode}`);
  const t2 = performance.now();
  if (sandbox) await sandbox.release();
  else await removeTree(actionDirectory);
  const t3 = performance.now();
  if (!record) return;
  variant.samples.prepare.push(t1 - t0);
  variant.samples.run.push(t2 - t1);
  variant.samples.release.push(t3 - t2);
  variant.samples.total.push(t3 - t0);
}

async function main(): Promise<void> {
  const actions = parseActions(process.argv.slice(2));
  const isRoot = process.getuid?.() === 0;
  const withBwrap = isRoot && bwrapAvailable();
  if (!withBwrap) process.stderr.write('!!! not root or no /usr/bin/bwrap: only the local runner is measured !!!\n');
  const loadBefore = uptime();
  const workDir = mkdtempSync(path.join(tmpdir(), 'bzutil-sandbox-phases-'));
  const variants: Variant[] = [];
  const empty = (): Record<Phase, number[]> => ({ prepare: [], run: [], release: [], total: [] });
  try {
    variants.push({ name: 'local', created: await createRunner({ kind: 'local', logger: silentLogger }), samples: empty() });
    if (withBwrap) {
      variants.push({ name: 'bwrap-per-action', created: await createRunner({ kind: 'bwrap', sandboxReuse: false, logger: silentLogger }), samples: empty() });
      variants.push({ name: 'slot-pool', created: await createRunner({ kind: 'bwrap', sandboxReuse: true, logger: silentLogger }), samples: empty() });
    }
    for (let i = 0; i < WARMUP + actions; i++) {
      for (const v of variants) await oneAction(v, workDir, i, i >= WARMUP);
    }
  } finally {
    for (const v of variants) await v.created.close();
    rmSync(workDir, { recursive: true, force: true });
  }
  const loadAfter = uptime();

  const lines = [`sandbox phases: ${actions} sequential no-op actions per variant (after ${WARMUP} warm-up), ms`, `load before: ${loadBefore}`, `load after:  ${loadAfter}`, ''];
  const header = ['variant', ...PHASES.flatMap((p) => [`${p} p50`, `${p} p90`])];
  const rows = variants.map((v) => [v.name, ...PHASES.flatMap((p) => [String(round(percentile(v.samples[p], 50), 3)), String(round(percentile(v.samples[p], 90), 3))])]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  for (const r of [header, ...rows]) lines.push(r.map((c, i) => c.padEnd(widths[i]!)).join('  '));
  const local = variants.find((v) => v.name === 'local');
  for (const v of variants) {
    if (v === local || !local) continue;
    lines.push(`${v.name}: total p50 ${round(percentile(v.samples.total, 50) - percentile(local.samples.total, 50), 3)} ms over local`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
