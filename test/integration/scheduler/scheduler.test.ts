/**
 * The scheduler over real gRPC on 127.0.0.1:0, with the worker side played by this test through a
 * grpc-js WorkerQueue client (a fake worker), so that the protocol itself is what is tested.
 */
import * as grpc from '@grpc/grpc-js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fromGrpcError } from '../../../src/lib/errors/grpc-status.js';
import { Code } from '../../../src/lib/errors/status-error.js';
import { longrunning, reapi, workerapi } from '../../../src/lib/proto/index.js';
import {
  capabilitiesService,
  executionService,
  operationsService,
  unpackAny,
  workerQueueService,
} from '../../../src/lib/proto/services.js';
import { EXECUTE_OPERATION_METADATA_TYPE, EXECUTE_RESPONSE_TYPE } from '../../../src/lib/scheduler/operation-snapshot.js';
import { FakeClock } from '../../../src/lib/util/clock.js';
import { silentLogger } from '../../../src/lib/util/logger.js';
import { type Scheduler, type SchedulerConfig, startScheduler } from '../../../src/server/scheduler.js';
import { createStores, okResponse, type TestStores, uploadAction } from '../../unit/scheduler/scheduler-fixtures.js';

type Callback<T> = (err: grpc.ServiceError | null, res?: T) => void;
interface GenericClient extends grpc.Client {
  [method: string]: unknown;
}

let stores: TestStores;
let scheduler: Scheduler;
let clients: GenericClient[] = [];
let execution: GenericClient;
let operations: GenericClient;
let workerQueue: GenericClient;
let capabilities: GenericClient;

function connect(def: grpc.ServiceDefinition, name: string, address = scheduler.address): GenericClient {
  const Ctor = grpc.makeGenericClientConstructor(def, name);
  const client = new Ctor(address, grpc.credentials.createInsecure()) as unknown as GenericClient;
  clients.push(client);
  return client;
}

function unary<Req, Res>(client: GenericClient, method: string, request: Req): Promise<Res> {
  return new Promise((resolve, reject) => {
    (client[method] as (req: Req, cb: Callback<Res>) => void).call(client, request, (err, res) => (err ? reject(err) : resolve(res!)));
  });
}

function stream(client: GenericClient, method: string, request: unknown): grpc.ClientReadableStream<longrunning.Operation> {
  return (client[method] as (req: unknown) => grpc.ClientReadableStream<longrunning.Operation>).call(client, request);
}

/** Reads operations until the stream ends (at most `limit`). */
async function readOperations(s: grpc.ClientReadableStream<longrunning.Operation>, limit = 20): Promise<longrunning.Operation[]> {
  const ops: longrunning.Operation[] = [];
  for await (const op of s) {
    ops.push(op as longrunning.Operation);
    if (ops.length >= limit) break;
  }
  return ops;
}

/** Cancels a call the test no longer needs; the resulting CANCELLED is expected. */
function abandon(s: grpc.ClientReadableStream<longrunning.Operation>): void {
  s.on('error', () => {});
  s.cancel();
}

/** The first operation a stream sends. */
function firstOperation(s: grpc.ClientReadableStream<longrunning.Operation>): Promise<longrunning.Operation> {
  return new Promise((resolve, reject) => {
    s.once('data', resolve);
    s.once('error', reject);
  });
}

function stageOf(op: longrunning.IOperation): string {
  const md = unpackAny(EXECUTE_OPERATION_METADATA_TYPE, reapi.ExecuteOperationMetadata, op.metadata);
  return reapi.ExecutionStage.Value[md?.stage ?? 0]!;
}

function responseOf(op: longrunning.IOperation): reapi.IExecuteResponse | undefined {
  return unpackAny(EXECUTE_RESPONSE_TYPE, reapi.ExecuteResponse, op.response);
}

function synchronize(workerId: string, runningTaskIds: string[] = []): Promise<workerapi.SynchronizeResponse> {
  return unary(workerQueue, 'synchronize', {
    workerId,
    workerName: `fake-${workerId}`,
    slots: 1,
    platform: { properties: [] },
    runningTaskIds,
  } satisfies workerapi.ISynchronizeRequest);
}

function completeTask(workerId: string, task: workerapi.ITask | undefined, response: reapi.IExecuteResponse): Promise<unknown> {
  return unary(workerQueue, 'completeTask', { workerId, taskId: task?.taskId, leaseToken: task?.leaseToken, response } satisfies workerapi.ICompleteTaskRequest);
}

/** (Re)starts the scheduler under test with `opts` and connects a client per service. */
async function restart(opts: Partial<SchedulerConfig> = {}): Promise<void> {
  await stop();
  scheduler = await startScheduler({
    listenAddress: '127.0.0.1:0',
    contentAddressableStorage: stores.cas,
    actionCache: stores.actionCache,
    logger: silentLogger,
    ...opts,
  });
  execution = connect(executionService, 'Execution');
  operations = connect(operationsService, 'Operations');
  workerQueue = connect(workerQueueService, 'WorkerQueue', scheduler.workerAddress);
  capabilities = connect(capabilitiesService, 'Capabilities');
}

async function stop(): Promise<void> {
  for (const c of clients) c.close();
  clients = [];
  await scheduler?.close();
}

beforeEach(async () => {
  stores = createStores();
  await restart();
});

afterEach(stop);

describe('scheduler over gRPC', () => {
  it('streams QUEUED, EXECUTING and a done COMPLETED operation for an executed action', async () => {
    const { actionDigest } = await uploadAction(stores.cas);
    const s = stream(execution, 'execute', { actionDigest: actionDigest.toProto(), digestFunction: reapi.DigestFunction.Value.SHA256 });
    const all = readOperations(s);

    const res = await synchronize('w1');
    expect(res.tasks).toHaveLength(1);
    await completeTask('w1', res.tasks[0], okResponse(0, 'remote'));

    const ops = await all;
    expect(ops.map(stageOf)).toEqual(['QUEUED', 'EXECUTING', 'COMPLETED']);
    const last = ops[ops.length - 1]!;
    expect(last.done).toBe(true);
    expect(last.error).toBeFalsy();
    expect(new Set(ops.map((o) => o.name)).size).toBe(1);
    const response = responseOf(last)!;
    expect(response.status?.code ?? 0).toBe(Code.OK);
    expect(new TextDecoder().decode(response.result!.stdoutRaw)).toBe('remote');
    const md = unpackAny(EXECUTE_OPERATION_METADATA_TYPE, reapi.ExecuteOperationMetadata, last.metadata)!;
    expect(md.actionDigest?.hash).toBe(actionDigest.hash);
    expect(md.digestFunction).toBe(reapi.DigestFunction.Value.SHA256);
  });

  it('serves a second Execute of a successful action from the action cache', async () => {
    const { actionDigest } = await uploadAction(stores.cas);
    const first = readOperations(stream(execution, 'execute', { actionDigest: actionDigest.toProto() }));
    const res = await synchronize('w1');
    await completeTask('w1', res.tasks[0], okResponse());
    await first;

    const again = await readOperations(stream(execution, 'execute', { actionDigest: actionDigest.toProto() }));
    expect(again.map(stageOf)).toEqual(['COMPLETED']);
    expect(responseOf(again[0]!)!.cachedResult).toBe(true);
  });

  it('answers a held Synchronize as soon as an action is queued', async () => {
    const poll = synchronize('w1');
    const { actionDigest } = await uploadAction(stores.cas);
    const s = stream(execution, 'execute', { actionDigest: actionDigest.toProto() });
    const res = await poll;
    expect(res.tasks).toHaveLength(1);
    expect(res.tasks[0]!.actionDigest?.hash).toBe(actionDigest.hash);
    abandon(s);
  });

  it('lets WaitExecution reattach after the Execute stream is gone', async () => {
    const { actionDigest } = await uploadAction(stores.cas);
    const s = stream(execution, 'execute', { actionDigest: actionDigest.toProto() });
    const first = await firstOperation(s);
    abandon(s);

    const wait = stream(execution, 'waitExecution', { name: first.name });
    const all = readOperations(wait);
    const res = await synchronize('w1');
    await completeTask('w1', res.tasks[0], okResponse());
    const ops = await all;
    expect(ops[0]!.name).toBe(first.name);
    expect(stageOf(ops[ops.length - 1]!)).toBe('COMPLETED');
    expect(ops[ops.length - 1]!.done).toBe(true);
  });

  it('fails GetOperation and WaitExecution with NOT_FOUND for unknown names', async () => {
    const err = await unary(operations, 'getOperation', { name: 'operations/unknown' }).catch((e: unknown) => fromGrpcError(e));
    expect(err).toMatchObject({ code: Code.NOT_FOUND });
    const waitErr = await readOperations(stream(execution, 'waitExecution', { name: 'operations/unknown' })).catch((e: unknown) => fromGrpcError(e));
    expect(waitErr).toMatchObject({ code: Code.NOT_FOUND });
  });

  it('reports missing inputs as FAILED_PRECONDITION with MISSING violations in grpc-status-details-bin', async () => {
    const { actionDigest, deepFileDigest, commandDigest } = await uploadAction(stores.cas, { omit: ['deepFile', 'command'] });
    const err = await readOperations(stream(execution, 'execute', { actionDigest: actionDigest.toProto() })).then(
      () => undefined,
      (e: unknown) => fromGrpcError(e),
    );
    expect(err?.code).toBe(Code.FAILED_PRECONDITION);
    expect(err!.preconditionViolations().map((v) => [v.type, v.subject])).toEqual([
      ['MISSING', commandDigest.toMissingSubject()],
      ['MISSING', deepFileDigest.toMissingSubject()],
    ]);
  });

  it('rejects a malformed action digest with INVALID_ARGUMENT', async () => {
    const err = await readOperations(stream(execution, 'execute', { actionDigest: { hash: 'xyz', sizeBytes: 3 } })).catch((e: unknown) => fromGrpcError(e));
    expect(err).toMatchObject({ code: Code.INVALID_ARGUMENT });
  });

  it('cancels a queued operation through CancelOperation: done with CANCELLED in ExecuteResponse.status', async () => {
    const { actionDigest } = await uploadAction(stores.cas);
    const s = stream(execution, 'execute', { actionDigest: actionDigest.toProto() });
    const first = await firstOperation(s);
    const rest = readOperations(s);
    await unary(operations, 'cancelOperation', { name: first.name });
    const ops = await rest;
    const last = ops[ops.length - 1]!;
    expect(last.done).toBe(true);
    expect(last.error).toBeFalsy();
    expect(responseOf(last)!.status?.code).toBe(Code.CANCELLED);

    const got = await unary<unknown, longrunning.Operation>(operations, 'getOperation', { name: first.name });
    expect(got.done).toBe(true);
  });

  it('cancels an executing operation by telling the worker in its held Synchronize', async () => {
    const { actionDigest } = await uploadAction(stores.cas);
    const s = stream(execution, 'execute', { actionDigest: actionDigest.toProto() });
    const first = await firstOperation(s);
    const rest = readOperations(s);
    const res = await synchronize('w1');
    const taskId = res.tasks[0]!.taskId!;
    const held = synchronize('w1', [taskId]);
    await unary(operations, 'cancelOperation', { name: first.name });
    expect((await held).cancelTaskIds).toEqual([taskId]);
    await completeTask('w1', res.tasks[0], { status: { code: Code.CANCELLED, message: 'killed' } });
    const ops = await rest;
    expect(responseOf(ops[ops.length - 1]!)!.status?.code).toBe(Code.CANCELLED);
  });

  it('lists operations through ListOperations', async () => {
    const { actionDigest } = await uploadAction(stores.cas);
    const s = stream(execution, 'execute', { actionDigest: actionDigest.toProto() });
    const first = await firstOperation(s);
    const list = await unary<unknown, longrunning.ListOperationsResponse>(operations, 'listOperations', { name: '', pageSize: 10 });
    expect(list.operations.map((o) => o.name)).toEqual([first.name]);
    abandon(s);
  });

  it('advertises execution in Capabilities on the same port', async () => {
    const caps = await unary<unknown, reapi.ServerCapabilities>(capabilities, 'getCapabilities', {});
    expect(caps.executionCapabilities?.execEnabled).toBe(true);
    expect(caps.executionCapabilities?.digestFunction).toBe(reapi.DigestFunction.Value.SHA256);
    expect(caps.cacheCapabilities?.digestFunctions).toContain(reapi.DigestFunction.Value.SHA256);
  });
});

describe('scheduler over gRPC: worker loss', () => {
  it('requeues the task of a worker that hangs up, and a second worker finishes it', async () => {
    // A scheduler on a fake clock, so that the lease runs out without waiting.
    const clock = new FakeClock(1_700_000_000_000);
    await restart({ clock, workerLeaseMs: 5_000 });

    const { actionDigest } = await uploadAction(stores.cas);
    const s = stream(execution, 'execute', { actionDigest: actionDigest.toProto() });
    const all = readOperations(s);
    const first = await synchronize('w1');
    const taskId = first.tasks[0]!.taskId!;

    // w1 holds its next Synchronize, then its connection goes away.
    const dying = connect(workerQueueService, 'WorkerQueue');
    const call = (dying['synchronize'] as (req: unknown, cb: Callback<unknown>) => grpc.ClientUnaryCall).call(
      dying,
      { workerId: 'w1', slots: 1, runningTaskIds: [taskId] },
      () => {},
    );
    call.cancel();

    // Once the server has seen the hang-up and the lease has run out, the task is requeued.
    // w2 long-polls meanwhile; time moves a second per I/O turn, a bounded number of times.
    let second: workerapi.SynchronizeResponse | undefined;
    for (let round = 0; round < 10 && !second?.tasks.length; round++) {
      let answer: workerapi.SynchronizeResponse | undefined;
      const poll = synchronize('w2').then((r) => (answer = r));
      for (let step = 0; step < 20 && !answer; step++) {
        await clock.advance(1_000);
        await new Promise((resolve) => setImmediate(resolve));
      }
      second = await poll;
    }
    expect(second?.tasks).toHaveLength(1);
    expect(second!.tasks[0]!.taskId).not.toBe(taskId);
    await completeTask('w2', second!.tasks[0], okResponse(0, 'from w2'));

    const ops = await all;
    // Followers report the state when they look: the requeue and the reassignment to w2 happen in
    // one turn, so the intermediate QUEUED may or may not be seen.
    const stages = ops.map(stageOf);
    expect(stages.slice(0, 2)).toEqual(['QUEUED', 'EXECUTING']);
    expect(stages.slice(-2)).toEqual(['EXECUTING', 'COMPLETED']);
    expect(new TextDecoder().decode(responseOf(ops[ops.length - 1]!)!.result!.stdoutRaw)).toBe('from w2');
  });
});
