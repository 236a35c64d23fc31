/**
 * `bzutil serve all` with no --state keeps its scheduler state in <storage_dir>/scheduler.db: kill
 * it with SIGKILL (by its pid) and start it again on the same storage dir, and every operation it
 * named answers, a queued action stays queued and completes, and the action that was running is
 * requeued under the same operation name (its worker, same stable id, came back without it).
 */
import { access, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Digest } from '../../src/lib/digest/digest.js';
import { CasClient } from '../../src/lib/client/cas-client.js';
import { RemoteConnection } from '../../src/lib/client/connection.js';
import { decodeOperation, type DecodedOperation, ExecutionClient } from '../../src/lib/client/execution-client.js';
import { encodeWithDigest } from '../../src/lib/digest/encode-with-digest.js';
import { reapi } from '../../src/lib/proto/index.js';
import { runCli } from '../helpers/run-cli.js';
import { type ServeProcess, startServe } from '../helpers/serve-process.js';

let work: string;
let serve: ServeProcess | undefined;
const connections: RemoteConnection[] = [];

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'bzutil-restart-'));
});
afterAll(async () => {
  for (const c of connections) c.close();
  await serve?.stop();
  await rm(work, { recursive: true, force: true });
});

function start(slots: number): Promise<ServeProcess> {
  return startServe(
    ['all', '--apiserver_listen=127.0.0.1:0', '--scheduler_listen=127.0.0.1:0', `--storage_dir=${join(work, 'storage')}`, `--work_dir=${join(work, 'work')}`, `--slots=${slots}`],
    ['apiserver', 'scheduler'],
    { env: { XDG_CACHE_HOME: join(work, 'cache') } },
  );
}

function clients(address: string): { cas: CasClient; execution: ExecutionClient } {
  const connection = new RemoteConnection(address);
  connections.push(connection);
  return { cas: new CasClient(connection), execution: new ExecutionClient(connection) };
}

async function uploadAction(cas: CasClient, script: string): Promise<Digest> {
  const put = async <T>(cls: { encode(m: T): { finish(): Uint8Array } }, message: T) => {
    const { bytes, digest } = encodeWithDigest(cls, message);
    await cas.putBlob(digest, bytes);
    return digest;
  };
  const inputRoot = await put(reapi.Directory, {});
  const command = await put(reapi.Command, { arguments: ['/bin/sh', '-c', script] });
  return put(reapi.Action, { commandDigest: command.toProto(), inputRootDigest: inputRoot.toProto(), doNotCache: true });
}

/** Starts an execution and returns its name once the first Operation arrived (the stream is then dropped). */
async function startExecution(execution: ExecutionClient, action: Digest): Promise<DecodedOperation> {
  const abort = new AbortController();
  try {
    for await (const op of execution.execute(action, { signal: abort.signal, skipCacheLookup: true })) return decodeOperation(op);
  } finally {
    abort.abort();
  }
  throw new Error('Execute ended without an Operation');
}

async function waitDone(execution: ExecutionClient, name: string): Promise<DecodedOperation> {
  let last: DecodedOperation | undefined;
  for await (const op of execution.waitExecution(name, { timeoutMs: 60_000 })) last = decodeOperation(op);
  expect(last?.done).toBe(true);
  return last!;
}

async function getOperation(execution: ExecutionClient, name: string): Promise<DecodedOperation> {
  return decodeOperation(await execution.getOperation(name));
}

describe('serve all, killed with SIGKILL and restarted on the same storage dir', () => {
  it('keeps every operation: finished ones answer, the queued one completes, the running one is requeued', async () => {
    serve = await start(1);
    let { cas, execution } = clients(serve.addresses.scheduler!);

    const finishedAction = await uploadAction(cas, 'echo finished');
    const finished = await startExecution(execution, finishedAction);
    expect((await waitDone(execution, finished.name)).response?.result?.exitCode ?? 0).toBe(0);

    // One slot: the first sleeps (EXECUTING), the second waits behind it (QUEUED).
    const running = await startExecution(execution, await uploadAction(cas, 'sleep 3; echo running'));
    for (let i = 0; i < 100 && (await getOperation(execution, running.name)).stage !== 'EXECUTING'; i++) await new Promise((r) => setTimeout(r, 50));
    expect((await getOperation(execution, running.name)).stage).toBe('EXECUTING');
    const queued = await startExecution(execution, await uploadAction(cas, 'echo queued'));
    expect((await getOperation(execution, queued.name)).stage).toBe('QUEUED');

    // The default state is a file in the storage dir.
    await access(join(work, 'storage', 'scheduler.db'));

    const killed = serve;
    await new Promise<void>((resolve) => {
      killed.child.once('exit', () => resolve());
      process.kill(killed.child.pid!, 'SIGKILL');
    });
    serve = await start(2);
    ({ cas, execution } = clients(serve.addresses.scheduler!));

    // From the first call after the restart, every name answers.
    const afterFinished = await getOperation(execution, finished.name);
    expect(afterFinished.done).toBe(true);
    expect(afterFinished.stage).toBe('COMPLETED');
    expect(['QUEUED', 'EXECUTING', 'COMPLETED']).toContain((await getOperation(execution, queued.name)).stage);
    expect(['QUEUED', 'EXECUTING', 'COMPLETED']).toContain((await getOperation(execution, running.name)).stage);

    const queuedDone = await waitDone(execution, queued.name);
    expect(queuedDone.response?.status?.code ?? 0).toBe(0);
    expect(queuedDone.response?.result?.exitCode ?? 0).toBe(0);
    const runningDone = await waitDone(execution, running.name);
    expect(runningDone.response?.status?.code ?? 0).toBe(0);
    expect(runningDone.response?.result?.exitCode ?? 0).toBe(0);
    expect(serve.logs()).toMatch(/Restored the scheduler state/);

    // A second process on the same state file is refused, and says why.
    const second = await runCli(
      ['serve', 'all', '--apiserver_listen=127.0.0.1:0', '--scheduler_listen=127.0.0.1:0', `--storage_dir=${join(work, 'storage')}`, `--work_dir=${join(work, 'work2')}`, '--slots=0'],
      { env: { XDG_CACHE_HOME: join(work, 'cache') }, timeoutMs: 30_000 },
    );
    expect(second.exitCode).not.toBe(0);
    expect(second.stderr).toContain('in use by another bzutil scheduler');
    expect(second.stdout).not.toContain('scheduler listening');
  }, 120_000);
});
