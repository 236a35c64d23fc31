/**
 * A real `bzutil serve all` process and SIGTERM: the health service turns NOT_SERVING at once, the
 * running action still finishes and its Execute call gets the result, the process exits 0 within
 * the grace period. Its stderr is JSON lines with one record per RPC (debug) and per action state
 * change (info) naming operation, action digest, worker and instance; /metrics answers on the HTTP port.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, describe, expect, it } from 'vitest';
import { CasClient } from '../../src/lib/client/cas-client.js';
import { RemoteConnection } from '../../src/lib/client/connection.js';
import { encodeWithDigest } from '../../src/lib/digest/encode-with-digest.js';
import { type longrunning, reapi } from '../../src/lib/proto/index.js';
import { executionService } from '../../src/lib/proto/services.js';
import { healthCheck } from '../helpers/introspection-clients.js';
import { type ServeProcess, startServe } from '../helpers/serve-process.js';

const ExecutionClient = grpc.makeGenericClientConstructor(executionService, 'Execution');

async function waitFor(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('serve all on SIGTERM', () => {
  const work = mkdtempSync(join(tmpdir(), 'bzutil-shutdown-'));
  let serve: ServeProcess | undefined;
  afterAll(async () => {
    await serve?.stop();
    rmSync(work, { recursive: true, force: true });
  });

  it('reports NOT_SERVING, lets the running action finish, and exits 0', async () => {
    serve = await startServe(
      ['all', '--apiserver_listen=127.0.0.1:0', '--scheduler_listen=127.0.0.1:0', '--in_memory', `--work_dir=${join(work, 'work')}`, '--slots=1', '--shutdown_grace_period=20s', '--log_level=debug'],
      ['apiserver', 'scheduler', 'http'],
    );
    const { apiserver, scheduler, http } = serve.addresses as Record<string, string>;
    expect((await fetch(`http://${http}/metrics`)).status).toBe(200);

    const connection = new RemoteConnection(apiserver!);
    const command = encodeWithDigest(reapi.Command, { arguments: ['sh', '-c', 'sleep 2 && echo finished'], environmentVariables: [{ name: 'PATH', value: '/usr/bin:/bin' }] });
    const root = encodeWithDigest(reapi.Directory, {});
    const action = encodeWithDigest(reapi.Action, { commandDigest: command.digest.toProto(), inputRootDigest: root.digest.toProto(), doNotCache: true });
    const cas = new CasClient(connection);
    for (const blob of [command, root, action]) await cas.putBlob(blob.digest, blob.bytes);
    connection.close();

    const client = new ExecutionClient(scheduler!, grpc.credentials.createInsecure());
    const call = (client as unknown as { execute(req: reapi.IExecuteRequest): AsyncIterable<longrunning.Operation> }).execute({ actionDigest: action.digest.toProto() });
    const final = (async () => {
      let last: longrunning.Operation | undefined;
      for await (const op of call) last = op;
      return last;
    })();
    await waitFor(() => serve!.logs().includes('"msg":"Action executing"'), 'the action to start');

    const exited = new Promise<number | null>((resolve) => serve!.child.once('exit', (code) => resolve(code)));
    const signalledAt = Date.now();
    serve.child.kill('SIGTERM');
    await waitFor(async () => (await healthCheck(scheduler!, '').catch(() => '')) === 'NOT_SERVING', 'NOT_SERVING on the scheduler port', 5_000);

    const last = await final;
    client.close();
    expect(last?.done).toBe(true);
    const response = reapi.ExecuteResponse.decode(last!.response!.value!);
    expect(response.status?.code ?? 0).toBe(0);
    expect(response.result?.exitCode).toBe(0);
    expect(await exited).toBe(0);
    expect(Date.now() - signalledAt).toBeLessThan(20_000);

    const records = serve
      .logs()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const executing = records.find((r) => r.msg === 'Action executing');
    expect(executing).toMatchObject({ level: 'info', actionDigest: action.digest.toString(), instance: '' });
    expect(executing?.operation).toMatch(/^operations\/[0-9a-f-]{36}$/);
    expect(executing?.worker).toEqual(expect.any(String));
    expect(records.find((r) => r.msg === 'Action completed')).toMatchObject({ level: 'info', operation: executing?.operation, outcome: 'success', worker: executing?.worker });
    expect(records.find((r) => r.msg === 'Action requested')).toMatchObject({ level: 'info', operation: executing?.operation, actionDigest: action.digest.toString() });
    expect(executing?.queuedMs).toEqual(expect.any(Number));
    expect(records.some((r) => r.msg === 'RPC' && r.level === 'debug' && r.method === 'Execution.Execute' && r.code === 'OK')).toBe(true);
    expect(records.some((r) => typeof r.msg === 'string' && r.msg.startsWith('Received SIGTERM'))).toBe(true);
  });
});
