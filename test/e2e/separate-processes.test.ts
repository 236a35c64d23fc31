/**
 * bzutil deployed apart, as on several hosts: `serve apiserver`, `serve scheduler --cas=<apiserver>`
 * and `serve worker --scheduler=<worker port> --cas`, each its own process (the built binary), all on 127.0.0.1.
 * Clients talk only to the scheduler, which forwards CAS and action-cache calls to the apiserver.
 * Then the worker is killed in the middle of an action: the scheduler requeues it once the worker's
 * lease runs out, and a second worker finishes it.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExecuteResult } from '../../src/commands/execute.js';
import type { GetOperationResult } from '../../src/commands/get_operation.js';
import type { WaitExecutionResult } from '../../src/commands/wait_execution.js';
import { runCliJson } from '../helpers/run-cli.js';
import { type ServeProcess, startServe } from '../helpers/serve-process.js';

const sha256 = (data: string) => createHash('sha256').update(data).digest('hex');

let work: string;
let apiserver: ServeProcess;
let scheduler: ServeProcess;
const workers: ServeProcess[] = [];

const startWorkerProcess = async (label: string) => {
  const worker = await startServe(
    ['worker', `--scheduler=${scheduler.addresses.workers}`, `--cas=${apiserver.addresses.apiserver}`, '--slots=1', `--work_dir=${join(work, label)}`],
    ['worker'],
  );
  workers.push(worker);
  return worker;
};

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'bzutil-e2e-apart-'));
  apiserver = await startServe(['apiserver', '--listen=127.0.0.1:0', '--allow_ac_updates', `--storage_dir=${join(work, 'storage')}`], ['apiserver']);
  // A short lease so that a dead worker's action is requeued within the test's time.
  scheduler = await startServe(
    ['scheduler', '--listen=127.0.0.1:0', '--worker_listen=127.0.0.1:0', `--cas=${apiserver.addresses.apiserver}`, '--worker_lease=2s', `--data_dir=${join(work, 'scheduler')}`],
    ['scheduler', 'workers'],
  );
});

afterAll(async () => {
  for (const w of workers) await w.stop();
  await scheduler?.stop();
  await apiserver?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

/** Uploads a command and its action through `--cas_addr` and returns the action digest. */
async function uploadAction(casAddr: string, argv: string[], outputFiles: string[] = []): Promise<string> {
  const outputs = outputFiles.length ? [`--output_files=${outputFiles.join(',')}`] : [];
  const command = await runCliJson<{ digest: string }>(['upload_command', `--cas_addr=${casAddr}`, ...outputs, '--', ...argv]);
  const action = await runCliJson<{ digest: string }>(['upload_action', `--cas_addr=${casAddr}`, `--command=${command.digest}`]);
  return action.digest;
}

describe('apiserver, scheduler and workers as separate processes', () => {
  it('runs an action with every client call going to the scheduler, storing blobs in the apiserver', async () => {
    const worker = await startWorkerProcess('w1');
    const sched = scheduler.addresses.scheduler!;
    const action = await uploadAction(sched, ['sh', '-c', 'echo apart > result.txt; echo ran apart'], ['result.txt']);

    const executed = await runCliJson<ExecuteResult>(['execute', `--grpc_addr=${sched}`, `--action=${action}`, '--wait']);
    expect(executed.done).toBe(true);
    expect(executed.response?.status?.codeName).toBe('OK');
    expect(executed.response?.result?.exitCode).toBe(0);
    expect(executed.response?.result?.outputFiles).toEqual([{ path: 'result.txt', digest: `${sha256('apart\n')}/6`, isExecutable: false }]);
    expect(executed.response?.result?.executionMetadata?.worker).toContain(`:${worker.child.pid}`);

    // The output went to the apiserver itself: fetch it from there, not through the scheduler.
    const dest = join(work, 'out');
    await runCliJson(['get_outputs', `--grpc_addr=${sched}`, `--cas_addr=${apiserver.addresses.apiserver}`, `--name=${executed.name}`, '-o', dest]);
    expect(await readFile(join(dest, 'result.txt'), 'utf8')).toBe('apart\n');
    expect(await readFile(join(dest, 'stdout'), 'utf8')).toBe('ran apart\n');

    // A second Execute of the same action is answered from the (forwarded) action cache.
    const cached = await runCliJson<ExecuteResult>(['execute', `--grpc_addr=${sched}`, `--action=${action}`, '--wait']);
    expect(cached.response?.cachedResult).toBe(true);
  });

  it('requeues the action of a worker killed mid-action, and another worker finishes it', async () => {
    const sched = scheduler.addresses.scheduler!;
    const first = workers[0]!;
    const action = await uploadAction(sched, ['sh', '-c', 'sleep 3; echo survived']);

    const started = await runCliJson<ExecuteResult>(['execute', `--grpc_addr=${sched}`, `--action=${action}`]);
    // Wait (bounded) until the first worker is running it.
    let stage = started.stage;
    for (let i = 0; i < 50 && stage !== 'EXECUTING'; i++) {
      await new Promise((r) => setTimeout(r, 100));
      stage = (await runCliJson<GetOperationResult>(['get_operation', `--grpc_addr=${sched}`, `--name=${started.name}`])).stage;
    }
    expect(stage).toBe('EXECUTING');

    first.child.kill('SIGKILL');
    await first.stop();
    const second = await startWorkerProcess('w2');

    const finished = await runCliJson<WaitExecutionResult>(['wait_execution', `--grpc_addr=${sched}`, `--name=${started.name}`]);
    expect(finished.done).toBe(true);
    expect(finished.response?.status?.codeName).toBe('OK');
    expect(finished.response?.result?.exitCode).toBe(0);
    expect(finished.response?.result?.executionMetadata?.worker).toContain(`:${second.child.pid}`);
  }, 60_000);
});
