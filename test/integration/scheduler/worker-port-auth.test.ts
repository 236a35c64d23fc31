/**
 * Credentials on the private worker port, as a rogue worker and a real one see them: with worker
 * tokens a worker without the token (or with a wrong one) gets UNAUTHENTICATED and registers
 * nothing, a worker with it registers; with worker mTLS a peer without a client certificate cannot
 * even connect; and on the client port, whatever its auth, WorkerQueue does not exist.
 */
import { readFileSync, rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { hashToken, TokenFileAuthenticator } from '../../../src/lib/auth/token-file.js';
import { workerapi } from '../../../src/lib/proto/index.js';
import { silentLogger } from '../../../src/lib/util/logger.js';
import { createServerTls } from '../../../src/server/grpc/tls.js';
import { type Scheduler, startScheduler } from '../../../src/server/scheduler.js';
import { startWorker, type WorkerHandle } from '../../../src/server/worker.js';
import { createThrowawayPki, type ThrowawayPki } from '../../helpers/throwaway-ca.js';
import { createStores } from '../../unit/scheduler/scheduler-fixtures.js';

const WORKER_TOKEN = 'worker-token-for-tests-7c1d';
let dir: string;
let pki: ThrowawayPki;
let workerTokens: TokenFileAuthenticator;
const cleanups: (() => Promise<void> | void)[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bzutil-worker-auth-'));
  const file = join(dir, 'workers.yaml');
  await writeFile(file, `tokens:\n  - name: worker-1\n    sha256: ${hashToken(WORKER_TOKEN)}\n`);
  workerTokens = await TokenFileAuthenticator.open({ file, logger: silentLogger, requirePermissions: false });
  pki = createThrowawayPki();
}, 60_000);

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

afterAll(async () => {
  rmSync(pki.dir, { recursive: true, force: true });
  await rm(dir, { recursive: true, force: true });
});

async function scheduler(opts: Partial<Parameters<typeof startScheduler>[0]> = {}): Promise<Scheduler> {
  const stores = createStores();
  const s = await startScheduler({
    listenAddress: '127.0.0.1:0',
    workerListenAddress: '127.0.0.1:0',
    contentAddressableStorage: stores.cas,
    actionCache: stores.actionCache,
    logger: silentLogger,
    workerAuthenticator: workerTokens,
    ...opts,
  } as Parameters<typeof startScheduler>[0]);
  cleanups.push(() => s.close());
  return s;
}

const SYNCHRONIZE = Buffer.from(workerapi.SynchronizeRequest.encode({ workerId: 'rogue', slots: 4 }).finish());

/** A raw Synchronize, as a rogue worker sends it; resolves to the status code. */
function rawSynchronize(address: string, opts: { token?: string; credentials?: grpc.ChannelCredentials } = {}): Promise<grpc.status> {
  const client = new grpc.Client(address, opts.credentials ?? grpc.credentials.createInsecure());
  cleanups.push(() => client.close());
  const metadata = new grpc.Metadata();
  if (opts.token !== undefined) metadata.set('authorization', `Bearer ${opts.token}`);
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      '/bzutil.worker.v1.WorkerQueue/Synchronize',
      (b: Buffer) => b,
      (b: Buffer) => b,
      SYNCHRONIZE,
      metadata,
      // Short: the scheduler may hold an idle Synchronize; only the refusal matters here.
      { deadline: Date.now() + 3_000 },
      (err) => resolve(err ? err.code : grpc.status.OK),
    );
  });
}

describe('worker tokens on the worker port', () => {
  it('answers a rogue worker without a token, or with a wrong one, UNAUTHENTICATED and registers nothing', async () => {
    const s = await scheduler();
    expect(await rawSynchronize(s.workerAddress)).toBe(grpc.status.UNAUTHENTICATED);
    expect(await rawSynchronize(s.workerAddress, { token: 'guessed' })).toBe(grpc.status.UNAUTHENTICATED);
    expect(s.buildQueue.stats().workers).toBe(0);
  });

  it('registers a worker that sends its token', async () => {
    const s = await scheduler();
    const workDir = await mkdtemp(join(dir, 'work-'));
    const worker: WorkerHandle = await startWorker({
      schedulerAddress: s.workerAddress,
      token: WORKER_TOKEN,
      contentAddressableStorage: createStores().cas,
      slots: 1,
      workDir,
      platform: {},
      logger: silentLogger,
      runner: 'local',
    });
    cleanups.push(() => worker.close());
    for (let i = 0; i < 100 && s.buildQueue.stats().workers === 0; i++) await new Promise((r) => setTimeout(r, 50));
    expect(s.buildQueue.stats().workers).toBe(1);
  });

  it('a rogue worker on the client port gets UNIMPLEMENTED, with or without client auth', async () => {
    const s = await scheduler({ authenticator: workerTokens });
    expect(await rawSynchronize(s.address)).toBe(grpc.status.UNIMPLEMENTED);
    expect(await rawSynchronize(s.address, { token: WORKER_TOKEN })).toBe(grpc.status.UNIMPLEMENTED);
    expect(s.buildQueue.stats().workers).toBe(0);
  });
});

describe('worker mTLS on the worker port', () => {
  it('refuses a peer without a client certificate and serves one with it', async () => {
    const tls = createServerTls({ certFile: pki.serverCert, keyFile: pki.serverKey, clientCaFile: pki.caCert });
    const s = await scheduler({ workerTls: tls, workerAuthenticator: undefined, workerListenAddress: 'localhost:0' });
    const ca = readFileSync(pki.caCert);
    expect(await rawSynchronize(s.workerAddress, { credentials: grpc.credentials.createSsl(ca) })).toBe(grpc.status.UNAVAILABLE);
    expect(s.buildQueue.stats().workers).toBe(0);
    const withCert = grpc.credentials.createSsl(ca, readFileSync(pki.clientKey), readFileSync(pki.clientCert));
    const code = await rawSynchronize(s.workerAddress, { credentials: withCert });
    // Admitted: the call runs (it may be held until the deadline when there is no work).
    expect([grpc.status.OK, grpc.status.DEADLINE_EXCEEDED]).toContain(code);
    expect(s.buildQueue.stats().workers).toBe(1);
  });
});
