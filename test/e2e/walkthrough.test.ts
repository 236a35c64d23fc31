/**
 * The seed walkthrough, as a user types it: `serve all`, then
 *
 *   bzutil upload_command --cas_addr=<apiserver> sleep 1
 *   bzutil upload_dir --cas_addr=<apiserver> ./dir
 *   bzutil upload_action --cas_addr=<apiserver> --command=<d> --input_root=<d>
 *   bzutil execute --action=<d> --grpc_addr=<scheduler>
 *   bzutil get_operation --name=<op> --grpc_addr=<scheduler>     (until Done: true)
 *
 * Every step runs the built binary without --json and this test reads the human output, since that
 * is the interface the walkthrough documents. Ports are 0, so the addresses come from serve's
 * "<service> listening on <address>" lines.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliRun, runCli } from '../helpers/run-cli.js';
import { type ServeProcess, startServe } from '../helpers/serve-process.js';

const DIGEST_LINE = /^([0-9a-f]{64}\/\d+)\n$/;

let serve: ServeProcess;
let work: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'bzutil-walkthrough-'));
  serve = await startServe(
    ['all', '--apiserver_listen=127.0.0.1:0', '--scheduler_listen=127.0.0.1:0', `--storage_dir=${join(work, 'storage')}`, `--work_dir=${join(work, 'work')}`, '--slots=2'],
    ['apiserver', 'scheduler'],
  );
});
afterAll(async () => {
  await serve?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

/** Runs a walkthrough step in the user's directory and insists it succeeded. */
async function step(args: string[]): Promise<CliRun> {
  const run = await runCli(args, { cwd: work });
  if (run.exitCode !== 0) throw new Error(`bzutil ${args.join(' ')} exited ${run.exitCode}\nstdout: ${run.stdout}\nstderr: ${run.stderr}\nserver: ${serve.logs()}`);
  return run;
}

function digestFrom(run: CliRun, what: string): string {
  const m = DIGEST_LINE.exec(run.stdout);
  if (!m) throw new Error(`${what} did not print a single <sha256>/<size> line: ${JSON.stringify(run.stdout)}`);
  return m[1]!;
}

describe('the seed walkthrough', () => {
  it('uploads a command, a directory and an action, executes it and follows it to Done: true', async () => {
    const apiserver = serve.addresses.apiserver!;
    const scheduler = serve.addresses.scheduler!;
    await mkdir(join(work, 'dir/sub'), { recursive: true });
    await writeFile(join(work, 'dir/hello.txt'), 'hello\n');
    await writeFile(join(work, 'dir/sub/data.bin'), Buffer.alloc(1024, 7));

    const command = digestFrom(await step(['upload_command', `--cas_addr=${apiserver}`, 'sleep', '1']), 'upload_command');
    const inputRoot = digestFrom(await step(['upload_dir', `--cas_addr=${apiserver}`, './dir']), 'upload_dir');
    const action = digestFrom(await step(['upload_action', `--cas_addr=${apiserver}`, `--command=${command}`, `--input_root=${inputRoot}`]), 'upload_action');

    // execute prints the Operation at once, with its name, before the action has finished.
    const executed = await step(['execute', `--action=${action}`, `--grpc_addr=${scheduler}`]);
    const name = /^Operation: (\S+)$/m.exec(executed.stdout)?.[1];
    expect(name, executed.stdout).toMatch(/^operations\/[0-9a-f-]{36}$/);
    expect(executed.stdout).toContain('  Done: false\n');
    expect(executed.stdout).toMatch(/^ {4}Stage: (CACHE_CHECK|QUEUED|EXECUTING)$/m);
    expect(executed.stdout).toContain(`    ActionDigest: ${action}\n`);

    // get_operation until Done: true. Each run is a new process (about half a second), and the
    // action sleeps one second, so a handful of polls suffice; the bound keeps a hang finite.
    let report = '';
    for (let poll = 0; poll < 60; poll++) {
      report = (await step(['get_operation', `--name=${name}`, `--grpc_addr=${scheduler}`])).stdout;
      if (report.includes('  Done: true\n')) break;
      expect(report).toContain('  Done: false\n');
    }
    expect(report).toContain('  Done: true\n');
    expect(report).toMatch(new RegExp(`^Operation: ${name}\n`));
    expect(report).toContain('    Stage: COMPLETED\n');
    expect(report).toContain('      Code: OK (0)\n');
    expect(report).toContain('    Cached: false\n');
    expect(report).toContain('      ExitCode: 0\n');
    expect(report).toMatch(/^ {8}Worker: \S+$/m);

    // The timings, in milliseconds; `sleep 1` spends at least a second executing.
    const timings: Record<string, number> = {};
    for (const m of report.matchAll(/^ {8}(QueueLatency|WorkerTotal|InputFetch|Execution|OutputUpload): (\d+(?:\.\d+)?)ms$/gm)) timings[m[1]!] = Number(m[2]);
    expect(Object.keys(timings).sort()).toEqual(['Execution', 'InputFetch', 'OutputUpload', 'QueueLatency', 'WorkerTotal']);
    expect(timings.Execution).toBeGreaterThanOrEqual(1000);
    expect(timings.WorkerTotal).toBeGreaterThanOrEqual(timings.Execution!);
  });
});
