/**
 * The WorkerQueue as a hostile peer would call it, over real gRPC: it is not served on the client
 * port at all (a rogue worker there gets UNIMPLEMENTED), only on the private worker port, where
 * garbage bytes sent as a Synchronize register no worker.
 */
import { stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { workerapi } from '../../../src/lib/proto/index.js';
import { silentLogger } from '../../../src/lib/util/logger.js';
import { type Scheduler, startScheduler } from '../../../src/server/scheduler.js';
import { createStores } from '../../unit/scheduler/scheduler-fixtures.js';

let scheduler: Scheduler;
let client: grpc.Client | undefined;

beforeEach(async () => {
  const stores = createStores();
  scheduler = await startScheduler({ listenAddress: '127.0.0.1:0', contentAddressableStorage: stores.cas, actionCache: stores.actionCache, logger: silentLogger });
});

afterEach(async () => {
  client?.close();
  await scheduler.close();
});

/** Sends `body` as the raw request bytes of `method` and resolves to the status code. */
function rawCall(address: string, method: string, body: Buffer): Promise<grpc.status> {
  client = new grpc.Client(address, grpc.credentials.createInsecure());
  return new Promise((resolve) => {
    client!.makeUnaryRequest(
      method,
      (b: Buffer) => b,
      (b: Buffer) => b,
      body,
      { deadline: Date.now() + 5_000 },
      (err) => resolve(err ? err.code : grpc.status.OK),
    );
  });
}

const VALID_SYNCHRONIZE = Buffer.from(workerapi.SynchronizeRequest.encode({ workerId: 'rogue', slots: 4 }).finish());

describe('the private worker port', () => {
  it('answers a rogue worker on the client port with UNIMPLEMENTED and registers nothing', async () => {
    for (const method of ['Synchronize', 'CompleteTask']) {
      expect(await rawCall(scheduler.address, `/bzutil.worker.v1.WorkerQueue/${method}`, VALID_SYNCHRONIZE)).toBe(grpc.status.UNIMPLEMENTED);
    }
    expect(scheduler.buildQueue.stats().workers).toBe(0);
  });

  it('is a Unix socket in a private directory by default, and a TCP port when an address is given', async () => {
    expect(scheduler.workerAddress).toMatch(/^unix:\//);
    const dir = dirname(scheduler.workerAddress.slice('unix:'.length));
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    const stores = createStores();
    const tcp = await startScheduler({
      listenAddress: '127.0.0.1:0',
      workerListenAddress: '127.0.0.1:0',
      contentAddressableStorage: stores.cas,
      actionCache: stores.actionCache,
      logger: silentLogger,
    });
    try {
      expect(tcp.workerAddress).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(tcp.workerAddress).not.toBe(tcp.address);
    } finally {
      await tcp.close();
    }
    await scheduler.close();
    await expect(stat(dir)).rejects.toThrow();
  });
});

describe('WorkerQueue against garbage', () => {
  it.each([
    ['bytes that are not protobuf', Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x07])],
    // Field 1 (worker_id) as a length-delimited string of control bytes: decodes, but names no worker.
    ['a worker id of control bytes', Buffer.from([0x0a, 0x03, 0x00, 0x01, 0x02, 0x20, 0x10])],
    ['an empty message', Buffer.alloc(0)],
  ])('a Synchronize of %s is refused and registers no worker', async (_label, body) => {
    const code = await rawCall(scheduler.workerAddress, '/bzutil.worker.v1.WorkerQueue/Synchronize', body);
    expect(code).not.toBe(grpc.status.OK);
    expect(scheduler.buildQueue.stats().workers).toBe(0);
  });
});
