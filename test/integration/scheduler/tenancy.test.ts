/**
 * Tenancy over real gRPC: an operation belongs to the instance its action was executed in, and the
 * Operations and WaitExecution calls only see operations of the instance they name; instance names
 * that could reach the filesystem (too long, `..`, control characters) answer INVALID_ARGUMENT
 * without a server path in the text.
 */
import * as grpc from '@grpc/grpc-js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fromGrpcError } from '../../../src/lib/errors/grpc-status.js';
import { Code } from '../../../src/lib/errors/status-error.js';
import { type longrunning, reapi } from '../../../src/lib/proto/index.js';
import { actionCacheService, contentAddressableStorageService, executionService, operationsService } from '../../../src/lib/proto/services.js';
import { silentLogger } from '../../../src/lib/util/logger.js';
import { type Scheduler, startScheduler } from '../../../src/server/scheduler.js';
import { createStores, type TestStores, uploadAction } from '../../unit/scheduler/scheduler-fixtures.js';

type Callback<T> = (err: grpc.ServiceError | null, res?: T) => void;
interface GenericClient extends grpc.Client {
  [method: string]: unknown;
}

let stores: TestStores;
let scheduler: Scheduler;
let clients: GenericClient[] = [];

function connect(def: grpc.ServiceDefinition, name: string): GenericClient {
  const Ctor = grpc.makeGenericClientConstructor(def, name);
  const client = new Ctor(scheduler.address, grpc.credentials.createInsecure()) as unknown as GenericClient;
  clients.push(client);
  return client;
}

function unary<Res>(client: GenericClient, method: string, request: unknown): Promise<Res> {
  return new Promise((resolve, reject) => {
    (client[method] as (req: unknown, cb: Callback<Res>) => void).call(client, request, (err, res) => (err ? reject(err) : resolve(res!)));
  });
}

async function refusal(p: Promise<unknown>): Promise<ReturnType<typeof fromGrpcError>> {
  try {
    await p;
  } catch (err) {
    return fromGrpcError(err);
  }
  throw new Error('expected the call to fail');
}

function firstOperation(client: GenericClient, request: unknown): { op: Promise<longrunning.Operation>; call: grpc.ClientReadableStream<longrunning.Operation> } {
  const call = (client.execute as (req: unknown) => grpc.ClientReadableStream<longrunning.Operation>).call(client, request);
  const op = new Promise<longrunning.Operation>((resolve, reject) => {
    call.once('data', resolve);
    call.once('error', reject);
  });
  return { op, call };
}

beforeEach(async () => {
  stores = createStores();
  scheduler = await startScheduler({ listenAddress: '127.0.0.1:0', contentAddressableStorage: stores.cas, actionCache: stores.actionCache, logger: silentLogger });
});

afterEach(async () => {
  for (const c of clients) c.close();
  clients = [];
  await scheduler?.close();
});

describe('operations are scoped by instance', () => {
  it('lists, gets, waits for, cancels and deletes only within the named instance', async () => {
    const execution = connect(executionService, 'Execution');
    const operations = connect(operationsService, 'Operations');
    const a = await uploadAction(stores.cas, { instanceName: 'team-a' });
    const { op, call } = firstOperation(execution, { instanceName: 'team-a', actionDigest: a.actionDigest.toProto() });
    const name = (await op).name;
    expect(name).toMatch(/^team-a\/operations\/[0-9a-f-]{36}$/);
    const id = name.slice('team-a/operations/'.length);

    const list = (collection: string) => unary<longrunning.ListOperationsResponse>(operations, 'listOperations', { name: collection, pageSize: 10 });
    expect((await list('team-a/operations')).operations.map((o) => o.name)).toEqual([name]);
    // Another instance, the empty instance (never "all"), and a name prefix of the instance see nothing.
    expect((await list('team-b/operations')).operations).toEqual([]);
    expect((await list('')).operations).toEqual([]);
    expect((await list('operations')).operations).toEqual([]);
    expect((await list('team')).operations).toEqual([]);

    // The same id under another instance (or bare) is not this operation.
    for (const other of [`team-b/operations/${id}`, `operations/${id}`, id]) {
      expect((await refusal(unary(operations, 'getOperation', { name: other }))).code).toBe(Code.NOT_FOUND);
      expect((await refusal(unary(operations, 'cancelOperation', { name: other }))).code).toBe(Code.NOT_FOUND);
      expect((await refusal(unary(operations, 'deleteOperation', { name: other }))).code).toBe(Code.NOT_FOUND);
      const wait = (execution.waitExecution as (req: unknown) => grpc.ClientReadableStream<longrunning.Operation>).call(execution, { name: other });
      const waited = await refusal(new Promise((resolve, reject) => {
        wait.on('data', resolve);
        wait.on('error', reject);
      }));
      expect(waited.code).toBe(Code.NOT_FOUND);
    }
    expect((await unary<longrunning.Operation>(operations, 'getOperation', { name })).name).toBe(name);
    call.on('error', () => {});
    call.cancel();
  });

  it('refuses malformed operation names and instance names with INVALID_ARGUMENT', async () => {
    const operations = connect(operationsService, 'Operations');
    for (const name of ['../operations/x', 'a/../operations/x', 'team-a/ops/x', 'operations/', `${'x'.repeat(300)}/operations/x`]) {
      const err = await refusal(unary(operations, 'getOperation', { name }));
      expect({ name, code: err.code }).toEqual({ name, code: Code.INVALID_ARGUMENT });
      expect(err.fieldViolations()[0]?.field).toBe('name');
    }
    const err = await refusal(unary(operations, 'listOperations', { name: '../operations' }));
    expect(err.code).toBe(Code.INVALID_ARGUMENT);
  });
});

describe('instance names', () => {
  const hostile = ['x'.repeat(256), 'é'.repeat(128), '..', 'a/../b', 'a\u0000b', 'a\\b', 'line\nbreak'];

  it('are refused with INVALID_ARGUMENT, a BadRequest violation and no server path, on every service', async () => {
    const cas = connect(contentAddressableStorageService, 'ContentAddressableStorage');
    const ac = connect(actionCacheService, 'ActionCache');
    const execution = connect(executionService, 'Execution');
    const digest = { hash: 'a'.repeat(64), sizeBytes: 3 };
    for (const instanceName of hostile) {
      const calls = [
        unary(cas, 'findMissingBlobs', { instanceName, blobDigests: [digest] }),
        unary(cas, 'batchUpdateBlobs', { instanceName, requests: [{ digest, data: Buffer.from('abc') }] }),
        unary(ac, 'getActionResult', { instanceName, actionDigest: digest }),
        firstOperation(execution, { instanceName, actionDigest: digest }).op,
      ];
      for (const call of calls) {
        const err = await refusal(call);
        expect({ instanceName, code: err.code }).toEqual({ instanceName, code: Code.INVALID_ARGUMENT });
        expect(err.fieldViolations().length).toBeGreaterThan(0);
        expect(err.message).not.toMatch(/\/(tmp|var|home|root)\//);
        expect(Buffer.byteLength(err.message)).toBeLessThan(4096);
      }
    }
  });

  it('of 255 bytes are accepted', async () => {
    const cas = connect(contentAddressableStorageService, 'ContentAddressableStorage');
    const res = await unary<reapi.FindMissingBlobsResponse>(cas, 'findMissingBlobs', { instanceName: 'x'.repeat(255), blobDigests: [{ hash: 'a'.repeat(64), sizeBytes: 3 }] });
    expect(res.missingBlobDigests).toHaveLength(1);
  });
});
