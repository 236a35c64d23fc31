/**
 * Issue 12's crash test with a real client: Bazel 4.2.3 builds the fixture workspace remotely
 * against `bzutil serve all` (default state: <storage_dir>/scheduler.db); once the scheduler has
 * handed out a few tasks, `serve all` is killed with SIGKILL (by pid) and started again on the same
 * storage dir and the same scheduler port (the one the OS gave the first run), and Bazel, with
 * --remote_retries, finishes the build green, every action remote.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startServe, type ServeProcess } from '../../helpers/serve-process.js';
import { bazelAvailable, COMMON_FLAGS, copyWorkspace, processSummary, runBazel, type Workspace } from './bazel-harness.js';

const haveBazel = bazelAvailable();
const BAZEL_TIMEOUT_MS = 900_000;

describe.skipIf(!haveBazel)('Bazel 4.2.3 across a kill -9 of serve all', () => {
  let ws: Workspace | undefined;
  let serve: ServeProcess | undefined;
  const scratch = mkdtempSync(join(tmpdir(), 'bzutil-bazel-restart-'));

  afterAll(async () => {
    await serve?.stop();
    await ws?.cleanup();
    rmSync(scratch, { recursive: true, force: true });
  }, 120_000);

  const start = (schedulerListen: string) =>
    startServe(
      [
        'all',
        '--apiserver_listen=127.0.0.1:0',
        `--scheduler_listen=${schedulerListen}`,
        `--storage_dir=${join(scratch, 'storage')}`,
        `--work_dir=${join(scratch, 'work')}`,
        '--slots=2',
        '--log_level=debug',
      ],
      ['apiserver', 'scheduler'],
    );

  it('finishes the build green after the scheduler was killed mid-build and restarted', async () => {
    ws = copyWorkspace('restart');
    serve = await start('127.0.0.1:0');
    const address = serve.addresses.scheduler!;
    const build = runBazel(
      ws,
      join(ws.root, 'ob'),
      ['build', ...COMMON_FLAGS, `--remote_executor=grpc://${address}`, '--remote_local_fallback=false', '--remote_retries=20', '--remote_timeout=120', '//...'],
      BAZEL_TIMEOUT_MS,
    );
    let buildDone = false;
    void build.then(() => (buildDone = true));

    // Mid-build: a few tasks handed out (bounded wait).
    const first = serve;
    for (let i = 0; i < 1200 && !buildDone && (first.logs().match(/Assigned task/g) ?? []).length < 4; i++) await new Promise((r) => setTimeout(r, 100));
    expect(buildDone, 'the build ended before the scheduler could be killed').toBe(false);
    await new Promise<void>((resolve) => {
      first.child.once('exit', () => resolve());
      process.kill(first.child.pid!, 'SIGKILL');
    });
    serve = await start(address);

    const result = await build;
    expect(result.code, `build across the restart failed:\n${result.output.slice(-6000)}`).toBe(0);
    const summary = processSummary(result.output);
    expect(summary.remote, `expected remote processes in ${JSON.stringify(summary)}`).toBeGreaterThan(0);
    for (const local of ['linux-sandbox', 'local', 'processwrapper-sandbox']) expect(summary[local] ?? 0).toBe(0);
    expect(serve.logs()).toMatch(/Restored the scheduler state/);
  }, BAZEL_TIMEOUT_MS);
});
