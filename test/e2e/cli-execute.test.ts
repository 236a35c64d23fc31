/**
 * The execution half of the CLI, through the built binary against `bzutil serve all` (also the
 * built binary) on ports 0: execute, get_operation, wait_execution, list_operations,
 * cancel_operation and get_outputs, with --json results parsed as each command's exported type.
 *
 * Exit codes asserted (src/lib/cli/exit-codes.ts): 0 for a failing action (it is a result), 1
 * with --fail_on_nonzero, 3 for a server refusal (not a scheduler), 4 for not found (missing inputs,
 * unknown operation), 5 for an unreachable scheduler.
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CancelOperationResult } from '../../src/commands/cancel_operation.js';
import type { ExecuteResult } from '../../src/commands/execute.js';
import type { GetOperationResult } from '../../src/commands/get_operation.js';
import type { GetOutputsResult } from '../../src/commands/get_outputs.js';
import type { ListOperationsResult } from '../../src/commands/list_operations.js';
import type { WaitExecutionResult } from '../../src/commands/wait_execution.js';
import type { ErrorJson } from '../../src/lib/cli/base-command.js';
import type { OperationView } from '../../src/lib/cli/operation-format.js';
import { encodeCanonical } from '../../src/lib/proto/canonical.js';
import { reapi } from '../../src/lib/proto/index.js';
import { runCli, runCliJson } from '../helpers/run-cli.js';
import { type ServeProcess, startServe } from '../helpers/serve-process.js';

const sha256 = (data: Uint8Array | string) => createHash('sha256').update(data).digest('hex');

let serve: ServeProcess;
let work: string;
let cas: string;
let scheduler: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'bzutil-e2e-exec-'));
  serve = await startServe(
    ['all', '--apiserver_listen=127.0.0.1:0', '--scheduler_listen=127.0.0.1:0', `--storage_dir=${join(work, 'storage')}`, `--work_dir=${join(work, 'work')}`, '--slots=2'],
    ['apiserver', 'scheduler'],
  );
  cas = `--cas_addr=${serve.addresses.apiserver}`;
  scheduler = `--grpc_addr=${serve.addresses.scheduler}`;
});
afterAll(async () => {
  await serve?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

/** upload_command + upload_action (empty input root unless given); returns the action digest. */
async function uploadAction(argv: string[], opts: { outputPaths?: string[]; inputRoot?: string; noCache?: boolean } = {}): Promise<string> {
  const outputs = opts.outputPaths?.length ? [`--output_paths=${opts.outputPaths.join(',')}`] : [];
  const command = await runCliJson<{ digest: string }>(['upload_command', cas, ...outputs, '--', ...argv]);
  const action = await runCliJson<{ digest: string }>([
    'upload_action',
    cas,
    `--command=${command.digest}`,
    ...(opts.inputRoot ? [`--input_root=${opts.inputRoot}`] : []),
    ...(opts.noCache ? ['--no_cache'] : []),
  ]);
  return action.digest;
}

describe('bzutil execute and friends', () => {
  it('runs an action to completion, reports it, and downloads its outputs', async () => {
    const action = await uploadAction(['sh', '-c', 'echo hello from the action; mkdir -p out; printf "#!/bin/sh\\necho tool\\n" > out/tool; chmod +x out/tool; echo data > out/data.txt'], {
      outputPaths: ['out/tool', 'out/data.txt'],
    });

    const executed = await runCliJson<ExecuteResult>(['execute', scheduler, `--action=${action}`, '--wait', '--skip_cache']);
    expect(executed).toMatchObject({ done: true, stage: 'COMPLETED', actionDigest: action });
    expect(executed.response?.status).toEqual({ code: 0, codeName: 'OK', message: '' });
    expect(executed.response?.cachedResult).toBe(false);
    const result = executed.response!.result!;
    expect(result.exitCode).toBe(0);
    expect(result.outputFiles).toEqual([
      { path: 'out/data.txt', digest: `${sha256('data\n')}/5`, isExecutable: false },
      { path: 'out/tool', digest: `${sha256('#!/bin/sh\necho tool\n')}/20`, isExecutable: true },
    ]);
    expect(result.stdoutDigest).toBe(`${sha256('hello from the action\n')}/22`);

    // get_operation reports the same, done, with every phase timed.
    const got = (await runCliJson<GetOperationResult>(['get_operation', scheduler, `--name=${executed.name}`])) as OperationView;
    expect(got).toMatchObject({ name: executed.name, done: true, stage: 'COMPLETED' });
    const metadata = got.response!.result!.executionMetadata!;
    expect(metadata.worker).not.toBe('');
    for (const key of ['queueLatencyMs', 'workerTotalMs', 'inputFetchMs', 'executionMs', 'outputUploadMs'] as const) {
      expect(metadata[key], key).toBeGreaterThanOrEqual(0);
    }
    expect(metadata.workerTotalMs!).toBeGreaterThanOrEqual(metadata.executionMs!);
    expect(Date.parse(metadata.queuedTimestamp!)).toBeLessThanOrEqual(Date.parse(metadata.workerCompletedTimestamp!));

    // The human form of the same operation, in the seed's layout.
    const human = await runCli(['get_operation', scheduler, `--name=${executed.name}`]);
    expect(human.exitCode).toBe(0);
    expect(human.stdout).toMatch(new RegExp(`^Operation: ${executed.name}\n\tDone: true\n\tMetadata:\n\t\tStage: COMPLETED\n`));
    expect(human.stdout).toContain(`\t\t\t\tout/tool ${sha256('#!/bin/sh\necho tool\n')}/20 [x]\n`);

    // --json_full is the whole Operation with its Anys unpacked.
    const full = (await runCliJson<GetOperationResult>(['get_operation', scheduler, `--name=${executed.name}`, '--json_full'])) as Record<string, any>;
    expect(full.metadata['@type']).toBe('type.googleapis.com/build.bazel.remote.execution.v2.ExecuteOperationMetadata');
    expect(full.response.result.outputFiles).toHaveLength(2);

    // get_outputs: blobs from the scheduler's address by default.
    const dest = join(work, 'outputs');
    const outputs = await runCliJson<GetOutputsResult>(['get_outputs', scheduler, `--name=${executed.name}`, '-o', dest]);
    expect(outputs).toMatchObject({ name: executed.name, output: dest, exitCode: 0 });
    expect(await readFile(join(dest, 'stdout'), 'utf8')).toBe('hello from the action\n');
    expect(await readFile(join(dest, 'out/tool'), 'utf8')).toBe('#!/bin/sh\necho tool\n');
    expect((await stat(join(dest, 'out/tool'))).mode & 0o100).toBe(0o100);
    expect((await stat(join(dest, 'out/data.txt'))).mode & 0o111).toBe(0);
    // The action wrote nothing to stderr: the worker still sets the (empty blob) digest, as Scoot
    // does, so the stderr file exists and is empty.
    expect((await readdir(dest)).sort()).toEqual(['out', 'stderr', 'stdout']);
    expect(await readFile(join(dest, 'stderr'), 'utf8')).toBe('');

    // Again into the same directory: refused (exit 2) without --force, fine with it.
    const again = await runCli(['get_outputs', scheduler, `--name=${executed.name}`, '-o', dest]);
    expect(again.exitCode).toBe(2);
    expect(again.stderr).toContain('--force');
    await runCliJson<GetOutputsResult>(['get_outputs', scheduler, `--action=${action}`, '-o', dest, '--force', cas]);
    expect(await readFile(join(dest, 'out/data.txt'), 'utf8')).toBe('data\n');
  });

  it('prints the operation name at once without --wait, and wait_execution follows it to the end', async () => {
    const action = await uploadAction(['sleep', '1'], { noCache: true });
    const first = await runCli(['execute', scheduler, `--action=${action}`]);
    expect(first.exitCode).toBe(0);
    const name = /^Operation: (\S+)\n\tDone: false\n/.exec(first.stdout)?.[1];
    expect(name, first.stdout).toBeDefined();

    const waited = await runCliJson<WaitExecutionResult>(['wait_execution', scheduler, `--name=${name}`]);
    expect(waited).toMatchObject({ name, done: true, stage: 'COMPLETED' });
    expect(waited.response?.result?.exitCode).toBe(0);

    const listed = await runCliJson<ListOperationsResult>(['list_operations', scheduler, '--filter=done=true', '--all']);
    expect(listed.operations.map((o) => o.name)).toContain(name);
    expect(listed.operations.every((o) => o.done)).toBe(true);
  });

  it('reports a failing action as a result (exit 0), and fails with --fail_on_nonzero', async () => {
    const action = await uploadAction(['sh', '-c', 'echo broken >&2; exit 7']);
    const run = await runCli(['execute', scheduler, `--action=${action}`, '--wait', '--json']);
    expect(run.exitCode).toBe(0);
    const view = JSON.parse(run.stdout) as ExecuteResult;
    expect(view.response?.status.codeName).toBe('OK');
    expect(view.response?.result?.exitCode).toBe(7);
    expect(view.response?.result?.stderrDigest).toBe(`${sha256('broken\n')}/7`);

    const strict = await runCli(['execute', scheduler, `--action=${action}`, '--wait', '--fail_on_nonzero']);
    expect(strict.exitCode).toBe(1);
    expect(strict.stdout).toContain('\t\t\tExitCode: 7\n');
    expect(strict.stderr).toContain('the action exited with code 7');
  });

  it('refuses an action whose inputs are missing with exit code 4, listing the blob', async () => {
    // An input root whose one file was never uploaded: the Directory itself goes up with batch_upload.
    const absentFile = Buffer.from('this file is never uploaded');
    const absentDigest = `${sha256(absentFile)}/${absentFile.length}`;
    const directory = encodeCanonical(reapi.Directory, { files: [{ name: 'input.txt', digest: { hash: sha256(absentFile), sizeBytes: absentFile.length } }] });
    const dirBlobs = join(work, 'directory-blob');
    await mkdir(dirBlobs);
    await writeFile(join(dirBlobs, 'root.directory'), directory);
    await runCliJson(['batch_upload', cas, `--dir=${dirBlobs}`]);
    const action = await uploadAction(['cat', 'input.txt'], { inputRoot: `${sha256(directory)}/${directory.length}` });

    const run = await runCli(['execute', scheduler, `--action=${action}`, '--wait']);
    expect(run.exitCode).toBe(4);
    expect(run.stdout).toBe('');
    expect(run.stderr).toContain(`Failed to execute action ${action}: the CAS lacks 1 blob(s); upload them first:\n  ${absentDigest}`);

    const asJson = await runCli(['execute', scheduler, `--action=${action}`, '--json']);
    expect(asJson.exitCode).toBe(4);
    expect(JSON.parse(asJson.stdout) as ErrorJson).toMatchObject({ status: 4, code: 'FAILED_PRECONDITION', details: [{ typeUrl: 'type.googleapis.com/google.rpc.PreconditionFailure' }] });
  });

  it('cancels a running action, which ends with CANCELLED', async () => {
    const action = await uploadAction(['sleep', '60'], { noCache: true });
    const started = await runCliJson<ExecuteResult>(['execute', scheduler, `--action=${action}`]);
    // Wait (bounded) until a worker runs it, so that the cancellation has to kill a process.
    let stage = started.stage;
    for (let i = 0; i < 40 && stage !== 'EXECUTING'; i++) {
      stage = ((await runCliJson<GetOperationResult>(['get_operation', scheduler, `--name=${started.name}`])) as OperationView).stage;
    }
    expect(stage).toBe('EXECUTING');

    const cancelled = await runCliJson<CancelOperationResult>(['cancel_operation', scheduler, `--name=${started.name}`, '--wait']);
    expect(cancelled).toMatchObject({ name: started.name, done: true, stage: 'COMPLETED' });
    expect(cancelled.response?.status.codeName).toBe('CANCELLED');
  });

  it('fails with exit code 4 for an unknown operation and 3 for an address that is not a scheduler', async () => {
    const unknown = await runCli(['get_operation', scheduler, '--name=operations/does-not-exist']);
    expect(unknown.exitCode).toBe(4);
    expect(unknown.stderr).toMatch(/^Error: Failed to get operation "operations\/does-not-exist": .*unknown/);

    const unknownJson = await runCli(['wait_execution', scheduler, '--name=operations/does-not-exist', '--json']);
    expect(unknownJson.exitCode).toBe(4);
    expect(JSON.parse(unknownJson.stdout)).toMatchObject({ status: 4, code: 'NOT_FOUND' });

    const apiserver = await runCli(['execute', `--grpc_addr=${serve.addresses.apiserver}`, `--action=${sha256('x')}/1`]);
    expect(apiserver.exitCode).toBe(3);
    expect(apiserver.stderr).toContain('does not offer remote execution');
  });

  it('fails with exit code 5 and a clear message when the scheduler cannot be reached', async () => {
    const run = await runCli(['execute', '--grpc_addr=127.0.0.1:1', `--action=${sha256('x')}/1`]);
    expect(run.exitCode).toBe(5);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(/^Error: Failed to reach the scheduler at 127\.0\.0\.1:1: /);

    const asJson = await runCli(['list_operations', '--scheduler_addr=127.0.0.1:1', '--json']);
    expect(asJson.exitCode).toBe(5);
    expect(JSON.parse(asJson.stdout)).toMatchObject({ status: 5, code: 'UNAVAILABLE' });
  });
});
