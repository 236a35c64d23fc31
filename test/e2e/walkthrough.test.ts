/**
 * The seed walkthrough (Twitter Scoot's bzutil README), run verbatim against `serve all`:
 *
 *   bzutil upload_command --cas_addr="<apiserver>" sleep 1
 *   bzutil upload_dir --cas_addr=<apiserver> ./dir                  (the seed used fs_util here)
 *   bzutil upload_action --cas_addr=<apiserver> --command="<d>" --input_root="<d>"
 *   bzutil execute --action="<d>"
 *   bzutil get_operation --name="<bare uuid>"                        (until Done: true)
 *
 * execute and get_operation take no address flag, as in the seed: the scheduler's address comes from
 * BZUTIL_SCHEDULER_ADDR, since the servers listen on port 0. Every step runs the built binary without
 * --json, and the printouts are compared field by field with the seed's own (below, with logrus's
 * `INFO[0000]` prefix and `sourceLine=` suffix taken off): same fields, same order, same tab
 * indentation, values equal where they are fixed (Done, Stage, Code, Cached, ExitCode, [], the empty
 * blob's digest) and of the same shape where they vary (UUIDs, digests, durations, worker names).
 *
 * One deliberate difference: the Operation line carries the REAPI resource name
 * `operations/<uuid>`, which works for every instance name; the bare `<uuid>` the seed prints is
 * accepted wherever a name is (and is what this test passes to get_operation).
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliRun, runCli } from '../helpers/run-cli.js';
import { type ServeProcess, startServe } from '../helpers/serve-process.js';

const SEED_EXECUTE = `Operation: b53b5e99-0162-43e1-6cbd-e44f8e6d1566
\tDone: false
\tMetadata:
\t\tStage: QUEUED
\t\tActionDigest: 905f62f396fd837d111ac96007e38502736799a98f7207f90460004667e7fe25/138
`;

const SEED_GET_OPERATION = `Operation: b53b5e99-0162-43e1-6cbd-e44f8e6d1566
\tDone: true
\tMetadata:
\t\tStage: COMPLETED
\t\tActionDigest: 0cb08d1ec25eeed4d7a10d8a2cce85ea7810b76cfd43926e305288b19cf9aa3c/141
\tExecResponse:
\t\tStatus:
\t\t\tCode: OK
\t\tCached: false
\t\tActionResult:
\t\t\tExitCode: 0
\t\t\tOutputFiles: []
\t\t\tOutputDirectories: []
\t\t\tStdoutDigest: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/0
\t\t\tStderrDigest: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/0
\t\t\tExecutionMetadata:
\t\t\t\tWorker: bazel-worker
\t\t\t\tQueueLatency: 420ms
\t\t\t\tWorkerTotal: 17078ms
\t\t\t\tInputFetch: 35ms
\t\t\t\tExecution: 17031ms
\t\t\t\tOutputUpload: 3ms
`;

const UUID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';
const EMPTY_BLOB = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/0';

/**
 * How each varying field's value must look; fields not listed must equal the seed's value. Stage
 * while queued may be any stage before completion (the action can be picked up at once).
 */
const SHAPES: Record<string, RegExp> = {
  Operation: new RegExp(`^(operations/)?${UUID}$`),
  ActionDigest: /^[0-9a-f]{64}\/\d+$/,
  Worker: /^\S+$/,
  QueueLatency: /^\d+ms$/,
  WorkerTotal: /^\d+ms$/,
  InputFetch: /^\d+ms$/,
  Execution: /^\d+ms$/,
  OutputUpload: /^\d+ms$/,
};

interface Field {
  depth: number;
  key: string;
  value: string;
}

/** `\t\tKey: value` lines as {depth: 2, key, value}; throws on a line of another form. */
function fields(text: string): Field[] {
  return text
    .replace(/\n$/, '')
    .split('\n')
    .map((line) => {
      const m = /^(\t*)([A-Za-z]+):(?: (.*))?$/.exec(line);
      if (!m) throw new Error(`not a seed-layout line: ${JSON.stringify(line)}`);
      return { depth: m[1]!.length, key: m[2]!, value: m[3] ?? '' };
    });
}

/** Compares `actual` with the seed's printout field by field; `stages` are the Stage values allowed. */
function expectSeedLayout(actual: string, seed: string, stages: string[]): void {
  const got = fields(actual);
  const want = fields(seed);
  expect(got.map((f) => `${'\t'.repeat(f.depth)}${f.key}`), actual).toEqual(want.map((f) => `${'\t'.repeat(f.depth)}${f.key}`));
  for (const [i, w] of want.entries()) {
    const g = got[i]!;
    if (w.key === 'Stage') expect(stages, `Stage in ${actual}`).toContain(g.value);
    else if (SHAPES[w.key]) expect(g.value, `${w.key} in ${actual}`).toMatch(SHAPES[w.key]!);
    else expect(g.value, `${w.key} in ${actual}`).toBe(w.value);
  }
}

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

/** Runs a walkthrough step in the user's directory, with the scheduler's address in the environment, and insists it succeeded. */
async function step(args: string[]): Promise<CliRun> {
  const run = await runCli(args, { cwd: work, env: { BZUTIL_SCHEDULER_ADDR: serve.addresses.scheduler! } });
  if (run.exitCode !== 0) throw new Error(`bzutil ${args.join(' ')} exited ${run.exitCode}\nstdout: ${run.stdout}\nstderr: ${run.stderr}\nserver: ${serve.logs()}`);
  return run;
}

function digestFrom(run: CliRun, what: string): string {
  const m = /^([0-9a-f]{64}\/\d+)\n$/.exec(run.stdout);
  if (!m) throw new Error(`${what} did not print a single <sha256>/<size> line: ${JSON.stringify(run.stdout)}`);
  return m[1]!;
}

describe('the seed walkthrough, verbatim', () => {
  it('checks its own field-by-field comparison against the seed text', () => {
    // The comparison must be able to fail: a two-space layout, a missing field, a wrong value.
    expect(() => expectSeedLayout(SEED_GET_OPERATION.replaceAll('\t', '  '), SEED_GET_OPERATION, ['COMPLETED'])).toThrow();
    expect(() => expectSeedLayout(SEED_GET_OPERATION.replace('\t\t\tOutputFiles: []\n', ''), SEED_GET_OPERATION, ['COMPLETED'])).toThrow();
    expect(() => expectSeedLayout(SEED_GET_OPERATION.replace('Code: OK', 'Code: OK (0)'), SEED_GET_OPERATION, ['COMPLETED'])).toThrow();
    expect(() => expectSeedLayout(SEED_GET_OPERATION.replace('3ms', '3.5ms'), SEED_GET_OPERATION, ['COMPLETED'])).toThrow();
    expectSeedLayout(SEED_GET_OPERATION, SEED_GET_OPERATION, ['COMPLETED']);
  });

  it('prints what the seed prints for execute and get_operation with the bare UUID', async () => {
    const apiserver = serve.addresses.apiserver!;
    await mkdir(join(work, 'dir/sub'), { recursive: true });
    await writeFile(join(work, 'dir/hello.txt'), 'hello\n');
    await writeFile(join(work, 'dir/sub/data.bin'), Buffer.alloc(1024, 7));

    const command = digestFrom(await step(['upload_command', `--cas_addr=${apiserver}`, 'sleep', '1']), 'upload_command');
    const inputRoot = digestFrom(await step(['upload_dir', `--cas_addr=${apiserver}`, './dir']), 'upload_dir');
    const action = digestFrom(await step(['upload_action', `--cas_addr=${apiserver}`, `--command=${command}`, `--input_root=${inputRoot}`]), 'upload_action');

    // execute prints the Operation at once, before the action has finished.
    const executed = (await step(['execute', `--action=${action}`])).stdout;
    expectSeedLayout(executed, SEED_EXECUTE, ['CACHE_CHECK', 'QUEUED', 'EXECUTING']);
    expect(executed).toContain(`\t\tActionDigest: ${action}\n`);
    const uuid = new RegExp(`^Operation: (?:operations/)?(${UUID})$`, 'm').exec(executed)![1]!;

    // get_operation with the bare UUID, as the seed passes it, until Done: true. Each run is a new
    // process (about half a second) and the action sleeps one second: the bound keeps a hang finite.
    let report = '';
    for (let poll = 0; poll < 60; poll++) {
      report = (await step(['get_operation', `--name=${uuid}`])).stdout;
      if (report.includes('\tDone: true\n')) break;
      expectSeedLayout(report, SEED_EXECUTE, ['CACHE_CHECK', 'QUEUED', 'EXECUTING']);
    }
    expectSeedLayout(report, SEED_GET_OPERATION, ['COMPLETED']);
    expect(report).toContain(`\t\tActionDigest: ${action}\n`);
    expect(report).toContain(`\t\t\tStdoutDigest: ${EMPTY_BLOB}\n`);

    // The full name resolves to the same operation.
    const byFullName = (await step(['get_operation', `--name=operations/${uuid}`])).stdout;
    expect(byFullName).toBe(report);

    // The timings are real: `sleep 1` spends at least a second executing.
    const ms = (key: string) => Number(new RegExp(`^\\t{4}${key}: (\\d+)ms$`, 'm').exec(report)![1]);
    expect(ms('Execution')).toBeGreaterThanOrEqual(1000);
    expect(ms('WorkerTotal')).toBeGreaterThanOrEqual(ms('Execution'));
  });
});
