/**
 * The server factories, driven by resolved configuration trees the way the serve commands drive
 * them: serve all shares one verified CAS between apiserver, scheduler and worker; a standalone
 * scheduler forwards storage to an apiserver and leaves the hashing of uploads to it.
 */
 import { access, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { GrpcBlobStore } from '../../../src/lib/blobstore/grpc-blob-store.js';
import { InstanceSharingBlobStore } from '../../../src/lib/blobstore/instance-sharing-blob-store.js';
import { VerifyingBlobStore } from '../../../src/lib/blobstore/verifying-blob-store.js';
import { CasClient } from '../../../src/lib/client/cas-client.js';
import { RemoteConnection } from '../../../src/lib/client/connection.js';
import { resolveConfig } from '../../../src/lib/config/resolve-config.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code } from '../../../src/lib/errors/status-error.js';
import { silentLogger } from '../../../src/lib/util/logger.js';
 import { createApiServer, createScheduler, createWorker, defaultWorkerId } from '../../../src/server/create-servers.js';
import { MemoryBlobStore } from '../../../src/lib/blobstore/memory-blob-store.js';
import { startAll } from '../../../src/server/serve-all.js';
import { bytes, expectCode, rejectionOf } from '../../helpers/blob-store-contract.js';
import { nextSnapshot, uploadAction } from '../../unit/scheduler/scheduler-fixtures.js';

const inMemory = { cas: { memory: { max_size_bytes: '64MiB' } }, action_cache: { memory: { max_size_bytes: '16MiB' } } };

describe('server factories', () => {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  it('serve all: the scheduler uses the apiserver\'s verified CAS, with no second verifier', async () => {
    const config = resolveConfig({
      role: 'all',
      overrides: { apiserver: { listen_address: '127.0.0.1:0' }, scheduler: { listen_address: '127.0.0.1:0', state: 'memory' }, worker: { slots: 0 }, storage: inMemory },
    });
    const all = await startAll(config, { logger: silentLogger });
    cleanups.push(() => all.close());
    expect(all.worker).toBeUndefined();
    // The shared-instance pool (storage.cas_instance_scoping's default) over one verifier.
    expect(all.apiserver.contentAddressableStorage).toBeInstanceOf(InstanceSharingBlobStore);
    expect((all.apiserver.contentAddressableStorage as unknown as { base: unknown }).base).toBeInstanceOf(VerifyingBlobStore);
    expect(all.scheduler.contentAddressableStorage).toBe(all.apiserver.contentAddressableStorage);
  });

  it('serve all: scheduler.max_queued_actions_per_instance from the tree reaches the queue (RESOURCE_EXHAUSTED naming the key)', async () => {
    const config = resolveConfig({
      role: 'all',
      overrides: {
        apiserver: { listen_address: '127.0.0.1:0' },
        scheduler: { listen_address: '127.0.0.1:0', state: 'memory', max_queued_actions_per_instance: 1 },
        worker: { slots: 0 },
        storage: inMemory,
      },
    });
    const all = await startAll(config, { logger: silentLogger });
    cleanups.push(() => all.close());
    const cas = all.apiserver.contentAddressableStorage as unknown as MemoryBlobStore;
    // No worker: both stay queued, and the second is over the limit of one per instance.
    const first = await uploadAction(cas, { args: ['one'], instanceName: 'main' });
    const second = await uploadAction(cas, { args: ['two'], instanceName: 'main' });
    const queued = await nextSnapshot(all.scheduler.buildQueue.execute({ actionDigest: first.actionDigest, skipCacheLookup: true, priority: 0 })[Symbol.asyncIterator]());
    expect(queued.stage).toBe('QUEUED');
    const refused = await nextSnapshot(all.scheduler.buildQueue.execute({ actionDigest: second.actionDigest, skipCacheLookup: true, priority: 0 })[Symbol.asyncIterator]()).catch((e: unknown) => e);
    expectCode(refused, Code.RESOURCE_EXHAUSTED);
    expect((refused as Error).message).toContain('scheduler.max_queued_actions_per_instance');
  });

  it('worker: the runner keys reach startWorker (chroot with the local runner is refused there too)', async () => {
    const workDir = await mkdtemp(path.join(tmpdir(), 'bzutil-factory-worker-'));
    cleanups.push(() => rm(workDir, { recursive: true, force: true }));
    const config = resolveConfig({ role: 'all', overrides: { worker: { slots: 1, runner: 'local', work_dir: workDir }, storage: inMemory } });
    config.worker!.chroot = true; // past validation, which refuses it: the worker must refuse it as well
    const shared = { schedulerAddress: '127.0.0.1:1', contentAddressableStorage: new MemoryBlobStore({ maxSizeBytes: 1 << 20 }) };
    await expect(createWorker(config, { logger: silentLogger }, shared)).rejects.toThrow(/chroot mode needs the bwrap runner/);
  });

  it('standalone scheduler: forwards uploads to the apiserver, which alone verifies them', async () => {
    const apiConfig = resolveConfig({ role: 'apiserver', overrides: { apiserver: { listen_address: '127.0.0.1:0' }, storage: inMemory } });
    const apiserver = await createApiServer(apiConfig, { logger: silentLogger });
    cleanups.push(() => apiserver.close());
    const schedulerConfig = resolveConfig({
      role: 'scheduler',
      overrides: {
        scheduler: { listen_address: '127.0.0.1:0', state: 'memory' },
        storage: { cas: { grpc: { address: apiserver.address } }, action_cache: { grpc: { address: apiserver.address } } },
      },
    });
    const scheduler = await createScheduler(schedulerConfig, { logger: silentLogger });
    cleanups.push(() => scheduler.close());
    expect(scheduler.contentAddressableStorage).toBeInstanceOf(GrpcBlobStore);

    const connection = new RemoteConnection(scheduler.address);
    cleanups.push(() => connection.close());
    const cas = new CasClient(connection);
    // A good upload through the scheduler's port lands in the apiserver.
    const data = bytes('through the scheduler');
    await cas.putBlob(Digest.ofBytes(data), data);
    expect(Buffer.from(await apiserver.contentAddressableStorage.get(Digest.ofBytes(data))).toString()).toBe('through the scheduler');
    // A bad one is still refused: by the apiserver, its answer passed through unchanged.
    const err = await rejectionOf(cas.putBlob(Digest.ofBytes(bytes('claimed')), bytes('other')));
    expectCode(err, Code.INVALID_ARGUMENT);
    expect(await apiserver.contentAddressableStorage.findMissing([Digest.ofBytes(bytes('claimed'))])).toHaveLength(1);
  });

  it('serve all: the worker keeps a stable id (worker.id, else host and work dir) and the scheduler its state file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'bzutil-factories-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    expect(defaultWorkerId(join(dir, 'work'))).toBe(defaultWorkerId(join(dir, 'work')));
    expect(defaultWorkerId(join(dir, 'work'))).not.toBe(defaultWorkerId(join(dir, 'other')));
    const config = resolveConfig({
      role: 'all',
      overrides: {
        apiserver: { listen_address: '127.0.0.1:0' },
        scheduler: { listen_address: '127.0.0.1:0', state: `sqlite:${join(dir, 'state', 'scheduler.db')}` },
        worker: { slots: 1, work_dir: join(dir, 'work'), id: 'builder-7' },
        storage: inMemory,
      },
    });
    const all = await startAll(config, { logger: silentLogger });
    cleanups.push(() => all.close());
    expect(all.worker?.workerId).toBe('builder-7');
    await access(join(dir, 'state', 'scheduler.db'));
  });
});
