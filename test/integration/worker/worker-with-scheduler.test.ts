/**
 * The worker against the real scheduler: an Execute call over gRPC travels through the
 * InMemoryBuildQueue to startWorker's long-poll, runs, and comes back as the operation's response,
 * with inputs and outputs in a shared memory CAS.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { BlobStore } from '../../../src/lib/blobstore/blob-store.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { type DigestFunction, digestFunctionToProto, hashBytes } from '../../../src/lib/digest/digest-function.js';
import { Code, StatusError } from '../../../src/lib/errors/status-error.js';
import { encodeWithDigest } from '../../../src/lib/digest/encode-with-digest.js';
import { longrunning, reapi } from '../../../src/lib/proto/index.js';
import { executionService, unpackAny } from '../../../src/lib/proto/services.js';
import { silentLogger } from '../../../src/lib/util/logger.js';
import { type Scheduler, startScheduler } from '../../../src/server/scheduler.js';
import { startWorker, type WorkerHandle } from '../../../src/server/worker.js';
import { blobText, newMemoryStore, putTree } from '../../unit/worker/worker-test-helpers.js';

const ExecutionClient = grpc.makeGenericClientConstructor(executionService, 'Execution');

describe('worker with the real scheduler', () => {
  let workDir: string;
  let store: BlobStore;
  let results: Map<string, reapi.IActionResult>;
  let scheduler: Scheduler;
  let worker: WorkerHandle;
  let client: grpc.Client;

  beforeEach(async () => {
    workDir = mkdtempSync(path.join(tmpdir(), 'bzutil-worker-sched-'));
    store = newMemoryStore();
    results = new Map();
    scheduler = await startScheduler({
      listenAddress: '127.0.0.1:0',
      contentAddressableStorage: store,
      actionCache: {
        getActionResult: async (d) => {
          const r = results.get(d.key);
          if (!r) throw StatusError.notFound('miss');
          return r;
        },
        updateActionResult: async (d, r) => void results.set(d.key, r),
      },
      logger: silentLogger,
      serveStorage: false,
    });
    worker = await startWorker({
      schedulerAddress: scheduler.workerAddress,
      contentAddressableStorage: store,
      slots: 2,
      workDir,
      platform: {},
      workerName: 'e2e-worker',
      logger: silentLogger,
      // Two actions meet through a host directory here, which the bwrap sandbox (rightly) forbids;
      // the sandbox itself is covered by hostile-actions.test.ts.
      runner: 'local',
    });
    client = new ExecutionClient(scheduler.address, grpc.credentials.createInsecure());
  });
  afterEach(async () => {
    client.close();
    await worker.close();
    await scheduler.close();
    rmSync(workDir, { recursive: true, force: true });
  });

  /** Uploads Command and Action, calls Execute and returns the ExecuteResponse of the final Operation. */
  const execute = async (command: reapi.ICommand, inputRoot: Digest, digestFunction: DigestFunction = 'sha256'): Promise<reapi.IExecuteResponse> => {
    const cmd = encodeWithDigest(reapi.Command, command, { digestFunction });
    await store.put(cmd.digest, cmd.bytes);
    const action = encodeWithDigest(reapi.Action, { commandDigest: cmd.digest.toProto(), inputRootDigest: inputRoot.toProto(), doNotCache: true }, { digestFunction });
    await store.put(action.digest, action.bytes);
    const call = (client as unknown as { execute(req: reapi.IExecuteRequest): grpc.ClientReadableStream<longrunning.Operation> }).execute({
      actionDigest: action.digest.toProto(),
      skipCacheLookup: true,
      ...(digestFunction === 'sha256' ? {} : { digestFunction: digestFunctionToProto(digestFunction) }),
    });
    let last: longrunning.Operation | undefined;
    for await (const op of call as AsyncIterable<longrunning.Operation>) last = op;
    expect(last?.done).toBe(true);
    return unpackAny('build.bazel.remote.execution.v2.ExecuteResponse', reapi.ExecuteResponse, last!.response)!;
  };

  it('executes an action end to end and returns outputs in the CAS', async () => {
    const inputRoot = await putTree(store, { src: { 'in.txt': 'abc' } });

    const response = await execute(
      {
        arguments: ['sh', '-c', 'mkdir -p out/tree && tr a-z A-Z < src/in.txt > out/up.txt && echo x > out/tree/f && echo hi'],
        environmentVariables: [{ name: 'PATH', value: '/usr/bin:/bin' }],
        outputFiles: ['out/up.txt'],
        outputDirectories: ['out/tree'],
      },
      inputRoot,
    );

    expect(response.status?.code ?? Code.OK).toBe(Code.OK);
    expect(response.result?.exitCode ?? 0).toBe(0);
    expect(await blobText(store, response.result?.outputFiles?.[0]?.digest)).toBe('ABC');
    expect(response.result?.outputDirectories?.[0]?.path).toBe('out/tree');
    expect(await blobText(store, response.result?.stdoutDigest)).toBe('hi\n');
    expect(response.result?.executionMetadata?.worker).toBe('e2e-worker');
  });

  it('executes an action named by BLAKE3 digests, hashing its inputs and outputs with BLAKE3', async () => {
    const put = async (bytes: Uint8Array) => {
      const d = Digest.ofBytes(bytes, { digestFunction: 'blake3' });
      await store.put(d, bytes);
      return d;
    };
    const input = await put(new TextEncoder().encode('abc'));
    const src = encodeWithDigest(reapi.Directory, { files: [{ name: 'in.txt', digest: input.toProto() }] }, { digestFunction: 'blake3' });
    await store.put(src.digest, src.bytes);
    const root = encodeWithDigest(reapi.Directory, { directories: [{ name: 'src', digest: src.digest.toProto() }] }, { digestFunction: 'blake3' });
    await store.put(root.digest, root.bytes);

    const response = await execute(
      {
        arguments: ['sh', '-c', 'mkdir -p out && tr a-z A-Z < src/in.txt > out/up.txt'],
        environmentVariables: [{ name: 'PATH', value: '/usr/bin:/bin' }],
        outputFiles: ['out/up.txt'],
      },
      root.digest,
      'blake3',
    );
    expect(response.status?.code ?? Code.OK).toBe(Code.OK);
    const out = response.result?.outputFiles?.[0]?.digest;
    expect(out?.hash).toBe(hashBytes('blake3', new TextEncoder().encode('ABC')));
    const stored = await store.get(Digest.create('', 'blake3', out!.hash!, Number(out!.sizeBytes)));
    expect(new TextDecoder().decode(stored)).toBe('ABC');
  });

  it('runs two actions at once on two slots', async () => {
    // Each action announces itself and waits (bounded) for the other: run one after the other,
    // both would give up and exit 1.
    const rendezvous = path.join(workDir, 'rendezvous');
    const inputRoot = await putTree(store, {});
    const waitFor = (me: string, other: string) => ({
      arguments: ['sh', '-c', `mkdir -p ${rendezvous}; touch ${rendezvous}/${me}; i=0; while [ ! -e ${rendezvous}/${other} ]; do i=$((i+1)); [ $i -gt 200 ] && exit 1; sleep 0.05; done`],
      environmentVariables: [{ name: 'PATH', value: '/usr/bin:/bin' }],
    });

    const [a, b] = await Promise.all([execute(waitFor('a', 'b'), inputRoot), execute(waitFor('b', 'a'), inputRoot)]);

    expect(a.result?.exitCode ?? 0).toBe(0);
    expect(b.result?.exitCode ?? 0).toBe(0);
  });
});
