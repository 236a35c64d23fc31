/**
 * Where a warm Bazel build from bzutil's cache (B2) spends its time, per RPC, from both ends:
 *
 *   npm run build && npx tsc -p tsconfig.bench.json
 *   node dist-bench/bench/bazel/profile-b2.js [--quick] [--minimal-only] [--jobs=N] [--bin=bin/run.js] [--keep-logs=DIR]
 *
 * It generates the B1/B2 workspace, fills a fresh `serve all` (debug logs on) with one cold
 * `--remote_executor` build, then runs the warm build after `bazel clean` twice (all outputs, then
 * `--remote_download_minimal`) with `--experimental_remote_grpc_log`, and prints, per RPC method,
 * the calls per cached action and their p50/p99 at Bazel beside the server's own timing of the
 * same calls (its `RPC` debug records), and the gap. A `--disk_cache` build of the same workspace
 * runs beside each for the wall-time comparison B2 makes. The gRPC log and the debug records cost
 * both ends some time: read the wall times here for proportions, and B2 itself (bench/bazel/index.ts)
 * for the ratio.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { killAllChildrenNow } from '../lib/processes.js';
import { BazelOutputBase, bazelOnPath, COMMON_BUILD_FLAGS, notAllCacheHits, parseProcessSummary, READ_ONLY_CACHE_FLAGS } from './bazel-invocation.js';
import { profileBreakdown } from './phase-breakdown.js';
import { FULL_SHAPE, generateWorkspace, QUICK_SHAPE } from './generate-workspace.js';
import { readRemoteGrpcLog } from './remote-grpc-log.js';
import { formatRpcProfile, parseServerRpcLines, profileRpcs } from './rpc-profile.js';
import { startServeAll, type ServeAll } from './serve-all-process.js';

process.on('exit', killAllChildrenNow);

const args = process.argv.slice(2);
const option = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const quick = args.includes('--quick');
const modes = args.includes('--minimal-only') ? [true] : [false, true];
const keepLogs = option('keep-logs');
const binPath = resolve(option('bin') ?? 'bin/run.js');
const log = (msg: string) => process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
const load = () => loadavg().map((x) => x.toFixed(2)).join(' ');

if (!bazelOnPath()) {
  log('bazel is not on PATH (apt-get install -y bazel-bootstrap): nothing to profile');
  process.exit(1);
}

const parallelism = Math.max(2, availableParallelism());
// The warm builds' --jobs (both sides; B2 uses the cores): cache lookups wait on round trips, not
// on the CPU, so more of them at once may hide latency the cores cannot.
const warmJobCount = Number(option('jobs') ?? parallelism);
if (!Number.isInteger(warmJobCount) || warmJobCount < 1) {
  log(`Failed to parse --jobs=${option('jobs')}: expected a positive integer`);
  process.exit(2);
}
const warmJobs = `--jobs=${warmJobCount}`;
const jobs = `--jobs=${parallelism}`;
const root = mkdtempSync(join(tmpdir(), 'bzutil-profile-b2-'));
const workspace = generateWorkspace(join(root, 'ws'), join(dirname(binPath), '..', 'test', 'fixtures', 'bazel-workspace'), quick ? QUICK_SHAPE : FULL_SHAPE);
const remote = new BazelOutputBase(workspace.dir, join(root, 'ob-remote'));
const local = new BazelOutputBase(workspace.dir, join(root, 'ob-local'));
const diskCache = join(root, 'disk-cache');
if (keepLogs) mkdirSync(keepLogs, { recursive: true });

// The server's stderr, line by line; kept only while a warm build runs.
let capturing = false;
let partial = '';
let serverLines: string[] = [];
const onStderr = (chunk: string) => {
  const lines = (partial + chunk).split('\n');
  partial = lines.pop()!;
  if (capturing) serverLines.push(...lines);
};

let server: ServeAll | undefined;
try {
  log(`workspace: ${workspace.ccTargets} C/C++ targets, ${workspace.genrules} genrules; ${jobs}; load ${load()}`);
  server = await startServeAll({ binPath, slots: parallelism, logLevel: 'debug', onStderr });
  const cache = `--remote_cache=grpc://${server.apiserverAddress}`;
  await remote.runOk(['build', ...COMMON_BUILD_FLAGS, jobs, `--remote_executor=grpc://${server.schedulerAddress}`, '--remote_local_fallback=false', '//...'], 'fill the cache');
  await local.runOk(['build', ...COMMON_BUILD_FLAGS, jobs, `--disk_cache=${diskCache}`, '//...'], 'fill the disk cache');
  log(`caches filled; load ${load()}`);

  for (const minimal of modes) {
    const extra = minimal ? ['--remote_download_minimal'] : [];
    const label = minimal ? 'B2-minimal' : 'B2';
    const diskFlags = ['build', ...COMMON_BUILD_FLAGS, warmJobs, `--disk_cache=${diskCache}`, ...extra];
    await local.runOk(['clean'], 'clean');
    await local.runOk([...diskFlags, '--nobuild', '//...'], 'analyse');
    const disk = await local.runOk([...diskFlags, '//...'], `${label} --disk_cache`);
    const diskProfile = profileBreakdown(local.outputBase);
    if (keepLogs) copyFileSync(join(local.outputBase, 'command.profile.gz'), join(keepLogs, `${label}-disk.profile.gz`));

    const grpcLog = join(root, `${label}.grpc.log`);
    const ourFlags = ['build', ...COMMON_BUILD_FLAGS, warmJobs, cache, ...READ_ONLY_CACHE_FLAGS, ...extra];
    await remote.runOk(['clean'], 'clean');
    await remote.runOk([...ourFlags, '--nobuild', '//...'], 'analyse');
    serverLines = [];
    capturing = true;
    const ours = await remote.runOk([...ourFlags, `--experimental_remote_grpc_log=${grpcLog}`, '//...'], `${label} bzutil cache`);
    // The server's last records may still be in the pipe.
    await new Promise((r) => setTimeout(r, 500));
    capturing = false;
    const oursProfile = profileBreakdown(remote.outputBase);
    if (keepLogs) {
      copyFileSync(join(remote.outputBase, 'command.profile.gz'), join(keepLogs, `${label}-bzutil.profile.gz`));
      copyFileSync(grpcLog, join(keepLogs, `${label}.grpc.log`));
      writeFileSync(join(keepLogs, `${label}.server.log`), serverLines.join('\n') + '\n');
    }
    const notHits = notAllCacheHits(parseProcessSummary(ours.output));
    const profile = profileRpcs(readRemoteGrpcLog(grpcLog), parseServerRpcLines(serverLines));
    process.stdout.write(
      `\n## ${label}, ${warmJobs} (load ${load()})\n\n` +
        `--disk_cache ${(disk.wallMs / 1000).toFixed(2)} s; bzutil --remote_cache with the gRPC log ${(ours.wallMs / 1000).toFixed(2)} s` +
        `${notHits ? ` (NOT a pure cache replay: ${notHits})` : ''}\n\n${formatRpcProfile(profile)}\n\n` +
        `Bazel's profile (ms: count, total, p50, p90), --disk_cache: ${JSON.stringify(diskProfile)}\nbzutil: ${JSON.stringify(oursProfile)}\n`,
    );
  }
} finally {
  for (const ob of [local, remote]) await ob.shutdown();
  await server?.stop();
  spawnSync('chmod', ['-R', 'u+w', root]);
  rmSync(root, { recursive: true, force: true });
}
