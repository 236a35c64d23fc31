/**
 * The operator's surface of a `serve all` built from a resolved config on loopback ports: after
 * real calls (uploads, one succeeding and one failing action), named series on GET /metrics have
 * moved; each gRPC port answers health checks per service and lists exactly its services through
 * reflection v1 and v1alpha, with descriptors for them; draining turns health to NOT_SERVING.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CasClient } from '../../../src/lib/client/cas-client.js';
import { RemoteConnection } from '../../../src/lib/client/connection.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { encodeWithDigest } from '../../../src/lib/digest/encode-with-digest.js';
import { type longrunning, reapi } from '../../../src/lib/proto/index.js';
import { executionService } from '../../../src/lib/proto/services.js';
import type { HttpServer } from '../../../src/server/http/http-server.js';
import type { ServeAll } from '../../../src/server/serve-all.js';
import { startServeAllInProcess } from '../../helpers/serve-all-in-process.js';
import { healthCheck, listServices, reflect } from '../../helpers/introspection-clients.js';

const R = 'build.bazel.remote.execution.v2';
const STORAGE_SERVICES = [
  `${R}.ActionCache`,
  `${R}.Capabilities`,
  `${R}.ContentAddressableStorage`,
  'google.bytestream.ByteStream',
  // Remote Asset, over the asset index of storage.asset (served on both ports in serve all).
  'build.bazel.remote.asset.v1.Fetch',
  'build.bazel.remote.asset.v1.Push',
];
const ALWAYS = ['grpc.health.v1.Health', 'grpc.reflection.v1.ServerReflection', 'grpc.reflection.v1alpha.ServerReflection'];
const ExecutionClient = grpc.makeGenericClientConstructor(executionService, 'Execution');

describe('operator surface of serve all', () => {
  let work: string;
  let all: ServeAll;
  let http: HttpServer;
  let stop: (() => Promise<void>) | undefined;
  let connection: RemoteConnection;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'bzutil-ops-'));
    ({ all, http, close: stop } = await startServeAllInProcess(work));
    connection = new RemoteConnection(all.apiserver.address);
  });
  afterAll(async () => {
    connection?.close();
    await stop?.();
    rmSync(work, { recursive: true, force: true });
  });

  const scrape = async (): Promise<string> => {
    const res = await fetch(`http://${http.address}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/plain');
    return res.text();
  };
  /** The value of one series (0 when absent), given its name and a subset of its labels. */
  const value = (text: string, name: string, labels: Record<string, string> = {}): number => {
    let total = 0;
    for (const line of text.split('\n')) {
      const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
      if (!m || m[1] !== name) continue;
      const have = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
      if (Object.entries(labels).every(([k, v]) => have[k] === v)) total += Number(m[3]);
    }
    return total;
  };

  /** Uploads a command running `sh -c script` through the apiserver and executes it on the scheduler. */
  const run = async (script: string): Promise<reapi.IExecuteResponse> => {
    const cas = new CasClient(connection);
    const command = encodeWithDigest(reapi.Command, { arguments: ['sh', '-c', script], environmentVariables: [{ name: 'PATH', value: '/usr/bin:/bin' }] });
    const root = encodeWithDigest(reapi.Directory, {});
    const action = encodeWithDigest(reapi.Action, { commandDigest: command.digest.toProto(), inputRootDigest: root.digest.toProto() });
    for (const blob of [command, root, action]) await cas.putBlob(blob.digest, blob.bytes);
    const client = new ExecutionClient(all.scheduler.address, grpc.credentials.createInsecure());
    try {
      const call = (client as unknown as { execute(req: reapi.IExecuteRequest): AsyncIterable<longrunning.Operation> }).execute({ actionDigest: action.digest.toProto() });
      let last: longrunning.Operation | undefined;
      for await (const op of call) last = op;
      return reapi.ExecuteResponse.decode(last!.response!.value!);
    } finally {
      client.close();
    }
  };

  it('serves Prometheus text whose named series move with real calls', async () => {
    const before = await scrape();
    expect(value(before, 'process_cpu_user_seconds_total')).toBeGreaterThan(0);
    expect(value(before, 'bzutil_scheduler_workers')).toBe(1);
    expect(value(before, 'bzutil_scheduler_worker_slots', { state: 'total' })).toBe(1);

    expect((await run('echo ok')).result?.exitCode).toBe(0);
    expect((await run('exit 3')).result?.exitCode).toBe(3);
    const cached = await run('echo ok');
    expect(cached.cachedResult).toBe(true);

    const after = await scrape();
    const delta = (name: string, labels: Record<string, string> = {}) => value(after, name, labels) - value(before, name, labels);
    expect(delta('grpc_server_handled_total', { server: 'scheduler', grpc_service: 'Execution', grpc_method: 'Execute', grpc_code: 'OK' })).toBe(3);
    expect(delta('grpc_server_started_total', { server: 'apiserver' })).toBeGreaterThanOrEqual(9);
    expect(delta('grpc_server_handling_seconds_count', { server: 'apiserver', grpc_service: 'ContentAddressableStorage' })).toBeGreaterThanOrEqual(1);
    expect(delta('bzutil_blobstore_bytes_total', { store: 'storage.cas', kind: 'memory', direction: 'in' })).toBeGreaterThan(0);
    expect(delta('bzutil_blobstore_blobs_total', { store: 'storage.cas', direction: 'out' })).toBeGreaterThan(0);
    expect(delta('bzutil_blobstore_find_missing_digests_total', { store: 'storage.cas', result: 'present' })).toBeGreaterThan(0);
    expect(delta('bzutil_blobstore_operations_total', { store: 'storage.action_cache', operation: 'get', code: 'NOT_FOUND' })).toBeGreaterThanOrEqual(2);
    expect(delta('bzutil_scheduler_action_outcomes_total', { outcome: 'success' })).toBe(1);
    expect(delta('bzutil_scheduler_action_outcomes_total', { outcome: 'nonzero_exit' })).toBe(1);
    expect(delta('bzutil_scheduler_execute_cache_hits_total')).toBe(1);
    expect(delta('bzutil_scheduler_queued_seconds_count')).toBe(2);
    expect(delta('bzutil_scheduler_execution_seconds_count')).toBe(2);
    expect(value(after, 'bzutil_scheduler_operations', { stage: 'QUEUED' })).toBe(0);
  });

  it('answers 404 for unknown paths and 405 for other methods', async () => {
    expect((await fetch(`http://${http.address}/nope`)).status).toBe(404);
    expect((await fetch(`http://${http.address}/metrics`, { method: 'POST' })).status).toBe(405);
  });

  it('lists exactly the services of each port through reflection v1 and v1alpha, with descriptors', async () => {
    // WorkerQueue is never on the client port: only on the scheduler's private worker port.
    const scheduler = [...STORAGE_SERVICES, `${R}.Execution`, 'google.longrunning.Operations', ...ALWAYS].sort();
    for (const version of ['v1', 'v1alpha'] as const) {
      expect(await listServices(all.apiserver.address, version)).toEqual([...STORAGE_SERVICES, ...ALWAYS].sort());
      expect(await listServices(all.scheduler.address, version)).toEqual(scheduler);
      expect(await listServices(all.scheduler.workerAddress, version)).toEqual(['bzutil.worker.v1.WorkerQueue', ...ALWAYS].sort());
    }
    expect(all.scheduler.services).toEqual(scheduler);
    const files = await reflect(all.scheduler.address, 'v1', { file_containing_symbol: `${R}.Execution` });
    expect(files.file_descriptor_response?.file_descriptor_proto.length).toBeGreaterThan(0);
    expect(Buffer.concat(files.file_descriptor_response!.file_descriptor_proto).toString('latin1')).toContain('Execution');
  });

  it('reports SERVING per service, NOT_FOUND for others, and NOT_SERVING while draining', async () => {
    expect(await healthCheck(all.apiserver.address, '')).toBe('SERVING');
    expect(await healthCheck(all.apiserver.address, `${R}.ContentAddressableStorage`)).toBe('SERVING');
    expect(await healthCheck(all.scheduler.address, `${R}.Execution`)).toBe('SERVING');
    await expect(healthCheck(all.apiserver.address, `${R}.Execution`)).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    await all.drain(0);
    expect(await healthCheck(all.apiserver.address, '')).toBe('NOT_SERVING');
    expect(await healthCheck(all.scheduler.address, `${R}.Execution`)).toBe('NOT_SERVING');
    // New executions are refused with a code clients retry on; the storage APIs still answer.
    await expect(run('echo late')).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
  });
});
