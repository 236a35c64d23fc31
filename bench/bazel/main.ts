/**
 * Runs the Bazel benchmarks on their own, without the bench runner:
 *   npx tsc -p tsconfig.bench.json && node dist-bench/bench/bazel/main.js [--quick] [--repetitions=N] [--bin=bin/run.js]
 * Prints progress on stderr and the rows as JSON on stdout.
 */
import { resolve } from 'node:path';
import { killAllChildrenNow } from '../lib/processes.js';
import { runBazelBenchmarks } from './index.js';

process.on('exit', killAllChildrenNow);

const args = process.argv.slice(2);
const option = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const quick = args.includes('--quick');
const repetitions = Number(option('repetitions') ?? (quick ? 1 : 3));
if (!Number.isInteger(repetitions) || repetitions < 1) {
  process.stderr.write(`Failed to parse --repetitions=${option('repetitions')}: expected a positive integer\n`);
  process.exit(2);
}
const binPath = resolve(option('bin') ?? 'bin/run.js');
const startedAt = performance.now();
const rows = await runBazelBenchmarks({
  quick,
  repetitions,
  binPath,
  log: (msg) => process.stderr.write(`[${((performance.now() - startedAt) / 1000).toFixed(1)}s] ${msg}\n`),
});
process.stdout.write(JSON.stringify(rows, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2) + '\n');
