/**
 * Hostile input: bytes that are not the method's protobuf message, sent to every unary and
 * streaming method of `serve all` (apiserver, scheduler and its private worker port), answer
 * INVALID_ARGUMENT with a BadRequest violation, and the server keeps serving.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromGrpcError, MAX_STATUS_BYTES } from '../../../src/lib/errors/grpc-status.js';
import { Code } from '../../../src/lib/errors/status-error.js';
import {
  actionCacheService,
  byteStreamService,
  capabilitiesService,
  contentAddressableStorageService,
  executionService,
  operationsService,
  workerQueueService,
} from '../../../src/lib/proto/services.js';
import { startServeAllInProcess } from '../../helpers/serve-all-in-process.js';

/** No such wire type; lengths that overrun the message; a truncated varint. */
const GARBAGE = [Buffer.from([0x0f, 0xff, 0xff]), Buffer.from([0x0a, 0xff, 0x01, 0x41]), Buffer.from([0x12, 0x05, 0x01]), Buffer.from([0x08, 0x80, 0x80])];
const identity = (b: Buffer): Buffer => b;

type Definition = Record<string, grpc.MethodDefinition<unknown, unknown>>;

describe('garbage protobuf on every method', () => {
  let dir: string;
  let served: Awaited<ReturnType<typeof startServeAllInProcess>>;
  let clients: grpc.Client[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'bzutil-garbage-'));
    served = await startServeAllInProcess(dir);
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await served?.close();
    await rm(dir, { recursive: true, force: true });
  });

  function client(address: string): grpc.Client {
    const c = new grpc.Client(address, grpc.credentials.createInsecure());
    clients.push(c);
    return c;
  }

  /** Sends `bytes` as the request of `method` and returns the call's error (or undefined on success). */
  function send(c: grpc.Client, method: grpc.MethodDefinition<unknown, unknown>, bytes: Buffer): Promise<grpc.ServiceError | undefined> {
    const deadline = Date.now() + 10_000;
    return new Promise((resolve) => {
      if (!method.requestStream && !method.responseStream) {
        c.makeUnaryRequest(method.path, identity, identity, bytes, { deadline }, (err) => resolve(err ?? undefined));
      } else if (method.responseStream) {
        const call = c.makeServerStreamRequest(method.path, identity, identity, bytes, { deadline });
        call.on('data', () => {});
        call.on('error', (err: grpc.ServiceError) => resolve(err));
        call.on('end', () => resolve(undefined));
      } else {
        const call = c.makeClientStreamRequest(method.path, identity, identity, { deadline }, (err) => resolve(err ?? undefined));
        call.write(bytes);
        call.end();
      }
    });
  }

  async function expectRefused(address: string, services: Definition[]): Promise<number> {
    const c = client(address);
    let methods = 0;
    for (const service of services) {
      for (const [name, method] of Object.entries(service)) {
        for (const bytes of GARBAGE) {
          const err = await send(c, method, bytes);
          expect(err, `${name} accepted garbage`).toBeDefined();
          expect({ name, code: err!.code }).toEqual({ name, code: grpc.status.INVALID_ARGUMENT });
          const status = fromGrpcError(err);
          expect(status.code).toBe(Code.INVALID_ARGUMENT);
          expect(status.fieldViolations().map((v) => v.field)).toEqual(['request']);
          expect(Buffer.byteLength(err!.details)).toBeLessThanOrEqual(MAX_STATUS_BYTES);
        }
        methods++;
      }
    }
    return methods;
  }

  it('answers INVALID_ARGUMENT on the apiserver and scheduler ports and keeps serving', async () => {
    const storage = [capabilitiesService, contentAddressableStorageService, byteStreamService, actionCacheService];
    const onApi = await expectRefused(served.all.apiserver.address, storage as unknown as Definition[]);
    const onScheduler = await expectRefused(served.all.scheduler.address, [executionService, operationsService] as unknown as Definition[]);
    expect(onApi + onScheduler).toBeGreaterThanOrEqual(18);

    // Still serving: a real GetCapabilities answers.
    const c = client(served.all.apiserver.address);
    const ok = await send(c, capabilitiesService.getCapabilities as grpc.MethodDefinition<unknown, unknown>, Buffer.alloc(0));
    expect(ok).toBeUndefined();
  });

  it('answers INVALID_ARGUMENT on the worker port and registers no worker', async () => {
    const before = served.all.scheduler.workers().length;
    await expectRefused(served.all.scheduler.workerAddress, [workerQueueService] as unknown as Definition[]);
    expect(served.all.scheduler.workers().length).toBe(before);
  });
});
