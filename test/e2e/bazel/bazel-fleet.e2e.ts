/**
 * Issue 12's fleet test with a real client: Bazel 4.2.3 builds the fixture workspace remotely on a
 * fleet of separate processes, each on its own loopback address (127.0.0.x standing in for hosts):
 * Redis; two `serve apiserver` sharing a sharded CAS (each its half on its own disk, the other half
 * forwarded to its peer) and an action cache in Redis; two `serve scheduler --state redis://…`; three
 * single-slot `serve worker --scheduler A,B`; and in front of the schedulers a TCP failover proxy
 * (the load balancer of README's "Running a fleet": Bazel takes one address).
 *
 * Mid-build, at a known point (every worker has started a task it has not finished, read from the
 * workers' own logs), scheduler A and one busy worker are killed with SIGKILL. Bazel's connection
 * drops with A; it reconnects through the proxy to B, where WaitExecution reattaches to the
 * operations A named; the other workers fail over to B keeping their leases; the killed worker's
 * task is requeued by B once the worker's grace has passed. The build must finish green, every
 * action remote, with outputs byte-identical to a local build.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FailoverProxy, startFailoverProxy } from '../../helpers/failover-proxy.js';
import { hasRedisServer, type RedisServer, startRedis } from '../../helpers/redis-server.js';
import { type ServeProcess, startServe } from '../../helpers/serve-process.js';
import { startShardedApiservers } from '../../helpers/sharded-apiservers.js';
import { bazelAvailable, collectOutputs, COMMON_FLAGS, COMPARED_OUTPUTS, copyWorkspace, processSummary, runBazel, type Workspace } from './bazel-harness.js';

const haveBazel = bazelAvailable();
const haveRedis = hasRedisServer();
if (haveBazel && !haveRedis) console.warn('SKIPPING the Bazel fleet e2e: redis-server is not installed (CI installs it)');
const BAZEL_TIMEOUT_MS = 900_000;

/** Genrules that each sleep: long enough that every worker is busy at once, whatever else runs. */
const SLOW_ACTIONS = 4;
const SLOW_OUTPUTS = Array.from({ length: SLOW_ACTIONS }, (_, i) => `slow/slow${i}.txt`);

/** Adds the `slow` package to the workspace copy (the shared fixture stays as it is). */
function addSlowPackage(ws: Workspace): void {
  mkdirSync(join(ws.dir, 'slow'));
  writeFileSync(
    join(ws.dir, 'slow/BUILD'),
    `[genrule(
    name = "slow%d" % i,
    outs = ["slow%d.txt" % i],
    cmd = "sleep 6 && echo slow action %d > $@" % i,
) for i in range(${SLOW_ACTIONS})]
`,
  );
}

interface LogEntry {
  msg?: string;
  time?: string;
  taskId?: string;
  workersLost?: number;
}

/** A process's JSON log lines (stderr is not a terminal, so serve logs JSON). */
function logEntries(logs: string): LogEntry[] {
  const entries: LogEntry[] = [];
  for (const line of logs.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      entries.push(JSON.parse(line) as LogEntry);
    } catch {
      // A line cut by the log buffer's trimming.
    }
  }
  return entries;
}

/** Tasks a worker started and has not finished (id -> start time), from its log (`--log_level=debug`). */
function unfinishedTasks(logs: string): Map<string, string> {
  const started = new Map<string, string>();
  for (const entry of logEntries(logs)) {
    if (!entry.taskId) continue;
    if (entry.msg === 'Task started') started.set(entry.taskId, entry.time ?? '');
    else if (entry.msg === 'Task finished') started.delete(entry.taskId);
  }
  return started;
}

/** The latest start time among a worker's unfinished tasks ('' when idle). */
const lastStart = (w: ServeProcess) => [...unfinishedTasks(w.logs()).values()].sort().at(-1) ?? '';

describe.skipIf(!haveBazel || !haveRedis)('Bazel 4.2.3 on a fleet: scheduler and worker killed with SIGKILL mid-build', () => {
  let ws: Workspace;
  let localOutputs: Record<string, string>;
  let redis: RedisServer;
  let proxy: FailoverProxy | undefined;
  const apiservers: ServeProcess[] = [];
  const schedulers: ServeProcess[] = [];
  const workers: ServeProcess[] = [];
  const scratch = mkdtempSync(join(tmpdir(), 'bzutil-bazel-fleet-'));

  beforeAll(async () => {
    ws = copyWorkspace('fleet');
    addSlowPackage(ws);
    const local = await runBazel(ws, join(ws.root, 'ob-local'), ['build', ...COMMON_FLAGS, '//...'], BAZEL_TIMEOUT_MS);
    expect(local.code, `local build failed:\n${local.output.slice(-6000)}`).toBe(0);
    localOutputs = await collectOutputs(ws, join(ws.root, 'ob-local'), [...COMPARED_OUTPUTS, ...SLOW_OUTPUTS]);

    redis = await startRedis({ host: '127.0.0.1' });
    const actionCache = `${redis.url}/1`;
    const storage = await startShardedApiservers(scratch, ['127.0.0.2', '127.0.0.3'], actionCache);
    apiservers.push(...storage.processes);
    const cas = storage.addresses;
    for (const [i, host] of ['127.0.0.4', '127.0.0.5'].entries()) {
      schedulers.push(
        await startServe(
          [
            'scheduler',
            `--listen=${host}:0`,
            `--worker_listen=${host}:0`,
            `--http_listen=${host}:0`,
            `--state=${redis.url}/0`,
            `--cas=${cas.join(',')}`,
            `--ac=${actionCache}`,
            '--worker_grace=3s',
            `--data_dir=${join(scratch, `scheduler${i}`)}`,
          ],
          ['scheduler', 'workers'],
        ),
      );
    }
    const [a, b] = schedulers as [ServeProcess, ServeProcess];
    for (const [i, host] of ['127.0.0.6', '127.0.0.7', '127.0.0.8'].entries()) {
      workers.push(
        await startServe(
          [
            'worker',
            `--scheduler=${a.addresses.workers},${b.addresses.workers}`,
            `--cas=${cas.join(',')}`,
            '--slots=1',
            `--work_dir=${join(scratch, `worker${i}`)}`,
            `--http_listen=${host}:0`,
            '--log_level=debug',
          ],
          ['worker'],
        ),
      );
    }
    proxy = await startFailoverProxy('127.0.0.9', [a.addresses.scheduler!, b.addresses.scheduler!]);
  }, BAZEL_TIMEOUT_MS);

  afterAll(async () => {
    await proxy?.close();
    for (const p of [...workers, ...schedulers, ...apiservers]) await p.stop();
    await redis?.stop();
    await ws?.cleanup();
    rmSync(scratch, { recursive: true, force: true });
  }, 120_000);

  it('finishes green with outputs identical to a local build', async () => {
    const [a, b] = schedulers as [ServeProcess, ServeProcess];
    const ob = join(ws.root, 'ob-fleet');
    const build = runBazel(
      ws,
      ob,
      [
        'build',
        ...COMMON_FLAGS,
        `--remote_executor=grpc://${proxy!.address}`,
        '--remote_local_fallback=false',
        '--remote_retries=20',
        '--remote_timeout=120',
        '--jobs=8',
        '//...',
      ],
      BAZEL_TIMEOUT_MS,
    );
    let buildDone = false;
    void build.then(() => (buildDone = true));

    // The known point: every worker has started a task it has not finished (bounded wait).
    for (let i = 0; i < 3000 && !buildDone && !workers.every((w) => lastStart(w) !== ''); i++) await new Promise((r) => setTimeout(r, 100));
    expect(buildDone, 'the build ended before the fleet was busy').toBe(false);
    expect(workers.every((w) => lastStart(w) !== ''), 'every worker busy').toBe(true);

    // Kill scheduler A and the worker whose task started last (the least likely to be about to finish).
    const victim = [...workers].sort((x, y) => lastStart(x).localeCompare(lastStart(y))).at(-1)!;
    await Promise.all(
      [a, victim].map(
        (p) =>
          new Promise<void>((resolve) => {
            p.child.once('exit', () => resolve());
            process.kill(p.child.pid!, 'SIGKILL');
          }),
      ),
    );
    // It died holding a lease: a task it had started and never reported.
    expect(unfinishedTasks(victim.logs()).size, 'the killed worker was running a task').toBeGreaterThan(0);

    const result = await build;
    expect(result.code, `build across the kills failed:\n${result.output.slice(-6000)}`).toBe(0);
    const summary = processSummary(result.output);
    expect(summary.remote, `expected remote processes in ${JSON.stringify(summary)}`).toBeGreaterThan(0);
    for (const local of ['linux-sandbox', 'local', 'processwrapper-sandbox']) expect(summary[local] ?? 0).toBe(0);
    expect(await collectOutputs(ws, ob, [...COMPARED_OUTPUTS, ...SLOW_OUTPUTS])).toEqual(localOutputs);

    // Bazel went on through scheduler B, and B requeued the killed worker's task once its grace ran out.
    expect(proxy!.connections[b.addresses.scheduler!], JSON.stringify(proxy!.connections)).toBeGreaterThan(0);
    const sweeps = logEntries(b.logs()).filter((e) => e.msg === 'Swept the shared queue');
    expect(sweeps.reduce((n, e) => n + (e.workersLost ?? 0), 0), `B's sweeps: ${JSON.stringify(sweeps)}`).toBeGreaterThan(0);
    // The surviving workers moved to B and finished there.
    for (const w of workers.filter((w) => w !== victim)) expect([...unfinishedTasks(w.logs()).keys()]).toEqual([]);
  }, BAZEL_TIMEOUT_MS);
});
