/**
 * A fleet as separate processes on distinct loopback addresses (127.0.0.x standing in for hosts):
 * Redis, one `serve apiserver`, two `serve scheduler --state redis://…` and three `serve worker
 * --scheduler A,B`. Actions are submitted through scheduler A, which is then killed with SIGKILL:
 * every operation A named is still answered by scheduler B, and the queued and running work
 * completes there (the workers fail over to B).
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExecuteResult } from '../../src/commands/execute.js';
import type { GetOperationResult } from '../../src/commands/get_operation.js';
import type { WaitExecutionResult } from '../../src/commands/wait_execution.js';
import { hasRedisServer, type RedisServer, startRedis } from '../helpers/redis-server.js';
import { runCliJson } from '../helpers/run-cli.js';
import { type ServeProcess, startServe } from '../helpers/serve-process.js';

const available = hasRedisServer();
if (!available) console.warn('SKIPPING fleet e2e: redis-server is not installed (CI installs it)');

describe.skipIf(!available)('a fleet: Redis, one apiserver, two schedulers, three workers', () => {
  let work: string;
  let redis: RedisServer;
  let apiserver: ServeProcess;
  let schedulerA: ServeProcess;
  let schedulerB: ServeProcess;
  const workers: ServeProcess[] = [];

  const startScheduler = (host: string, label: string) =>
    startServe(
      [
        'scheduler',
        `--listen=${host}:0`,
        `--worker_listen=${host}:0`,
        `--cas=${apiserver.addresses.apiserver}`,
        `--state=${redis.url}/0`,
        '--worker_grace=3s',
        '--allow_ac_updates',
        `--data_dir=${join(work, label)}`,
      ],
      ['scheduler', 'workers'],
    );

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'bzutil-e2e-fleet-'));
    redis = await startRedis({ host: '127.0.0.1' });
    apiserver = await startServe(['apiserver', '--listen=127.0.0.2:0', '--allow_ac_updates', `--storage_dir=${join(work, 'storage')}`], ['apiserver']);
    schedulerA = await startScheduler('127.0.0.3', 'a');
    schedulerB = await startScheduler('127.0.0.4', 'b');
    for (const label of ['w1', 'w2', 'w3']) {
      workers.push(
        await startServe(
          ['worker', `--scheduler=${schedulerA.addresses.workers},${schedulerB.addresses.workers}`, `--cas=${apiserver.addresses.apiserver}`, '--slots=1', `--work_dir=${join(work, label)}`],
          ['worker'],
        ),
      );
    }
  }, 120_000);

  afterAll(async () => {
    for (const w of workers) await w.stop();
    await schedulerA?.stop();
    await schedulerB?.stop();
    await apiserver?.stop();
    await redis?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  async function uploadAction(casAddr: string, argv: string[]): Promise<string> {
    const command = await runCliJson<{ digest: string }>(['upload_command', `--cas_addr=${casAddr}`, '--', ...argv]);
    const action = await runCliJson<{ digest: string }>(['upload_action', `--cas_addr=${casAddr}`, `--command=${command.digest}`]);
    return action.digest;
  }

  it('answers and completes, on scheduler B, the operations scheduler A named before it was killed', async () => {
    const a = schedulerA.addresses.scheduler!;
    const b = schedulerB.addresses.scheduler!;
    expect(a.startsWith('127.0.0.3:')).toBe(true);
    expect(b.startsWith('127.0.0.4:')).toBe(true);

    // Five actions for three single-slot workers: some run, some wait in the queue when A dies.
    const names: string[] = [];
    for (let i = 0; i < 5; i++) {
      const action = await uploadAction(apiserver.addresses.apiserver!, ['sh', '-c', `sleep 6; echo fleet-${i}`]);
      const started = await runCliJson<ExecuteResult>(['execute', `--grpc_addr=${a}`, `--action=${action}`]);
      expect(started.done).toBe(false);
      names.push(started.name);
    }
    // Scheduler B knows them all at once (the stage depends on how fast this machine is).
    for (const name of names) {
      const seen = await runCliJson<GetOperationResult>(['get_operation', `--grpc_addr=${b}`, `--name=${name}`]);
      expect(seen.name).toBe(name);
      expect(['QUEUED', 'EXECUTING', 'COMPLETED']).toContain(seen.stage);
    }

    schedulerA.child.kill('SIGKILL');
    await schedulerA.stop();

    for (const [i, name] of names.entries()) {
      const finished = await runCliJson<WaitExecutionResult>(['wait_execution', `--grpc_addr=${b}`, `--name=${name}`]);
      expect(finished.done).toBe(true);
      expect(finished.response?.status?.codeName).toBe('OK');
      expect(finished.response?.result?.exitCode).toBe(0);
      // Each operation has its own action's output: nothing was mixed up across schedulers.
      const stdout = `fleet-${i}\n`;
      expect(finished.response?.result?.stdoutDigest).toBe(`${createHash('sha256').update(stdout).digest('hex')}/${stdout.length}`);
    }
    // Every worker is alive and now polls B: a new action runs there.
    const after = await uploadAction(apiserver.addresses.apiserver!, ['sh', '-c', 'echo after']);
    const done = await runCliJson<ExecuteResult>(['execute', `--grpc_addr=${b}`, `--action=${after}`, '--wait']);
    expect(done.response?.result?.exitCode).toBe(0);
  }, 300_000); // about 30 CLI processes and 6 s actions: over 2 minutes on a loaded 2-core machine
});
