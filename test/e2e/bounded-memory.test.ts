/**
 * Issue 11, "Done means": a real `bzutil serve all` with 300 queued actions whose Commands are
 * 1.4 MiB each grows by less than 200 MiB of resident memory, whatever the scheduler state (SQLite,
 * the default, or `memory`): queued Commands are kept on disk, not as decoded copies. The actions
 * ask for a platform no worker offers, so they all stay QUEUED while RSS is read from /proc.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Digest as DigestClass } from '../../src/lib/digest/digest.js';
import { byteStreamService } from '../../src/lib/proto/services.js';
import type { Digest } from '../../src/lib/digest/digest.js';
import { CasClient } from '../../src/lib/client/cas-client.js';
import { RemoteConnection } from '../../src/lib/client/connection.js';
import { decodeOperation, ExecutionClient } from '../../src/lib/client/execution-client.js';
import { encodeWithDigest } from '../../src/lib/digest/encode-with-digest.js';
import { reapi } from '../../src/lib/proto/index.js';
import { mapConcurrent } from '../../src/lib/util/concurrency.js';
import { mebibytes, residentBytes } from '../helpers/resident-memory.js';
import { type ServeProcess, startServe } from '../helpers/serve-process.js';

const ACTIONS = 300;
const COMMANDS = 60;
const COMMAND_BYTES = 1.4 * 1024 * 1024;
const MAX_GROWTH_BYTES = 200 * 1024 * 1024;

let work: string;
const started: ServeProcess[] = [];
const connections: RemoteConnection[] = [];

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'bzutil-bounded-memory-'));
});
afterAll(async () => {
  for (const c of connections) c.close();
  for (const s of started) await s.stop();
  await rm(work, { recursive: true, force: true });
});

/** A Command of about COMMAND_BYTES, distinct from every other (random arguments). */
function bigCommand(): reapi.ICommand {
  const args = ['/bin/sh', '-c', 'true'];
  for (let total = 0; total < COMMAND_BYTES; total += 1024) args.push(randomBytes(512).toString('hex'));
  return { arguments: args };
}

/**
 * Uploads ACTIONS Actions over COMMANDS distinct Commands (each Command shared by ACTIONS / COMMANDS
 * Actions that differ by their salt). The scheduler loads, decodes and queues every action's
 * Command on its own, so this is the same load on the queue as 300 distinct Commands at a fifth
 * of the upload time.
 */
async function uploadActions(cas: CasClient): Promise<Digest[]> {
  const put = async <T>(cls: { encode(m: T): { finish(): Uint8Array } }, message: T) => {
    const { bytes, digest } = encodeWithDigest(cls, message);
    await cas.putBlob(digest, bytes);
    return digest;
  };
  const inputRoot = await put(reapi.Directory, {});
  const commands = await mapConcurrent(Array.from({ length: COMMANDS }, (_, i) => i), 4, () => put(reapi.Command, bigCommand()));
  return mapConcurrent(Array.from({ length: ACTIONS }, (_, i) => i), 8, (i) => {
    // No worker offers pool=nowhere: the action stays queued.
    const platform = { properties: [{ name: 'pool', value: 'nowhere' }] };
    const salt = Buffer.from(`salt-${i}`);
    return put(reapi.Action, { commandDigest: commands[i % COMMANDS]!.toProto(), inputRootDigest: inputRoot.toProto(), doNotCache: true, platform, salt });
  });
}

/** Starts an execution and returns once it is QUEUED (the stream is then dropped; the operation stays). */
async function queue(execution: ExecutionClient, action: Digest): Promise<void> {
  const abort = new AbortController();
  try {
    for await (const op of execution.execute(action, { signal: abort.signal, skipCacheLookup: true })) {
      const decoded = decodeOperation(op);
      if (decoded.done) throw new Error(`action ${action} finished instead of queueing: ${JSON.stringify(decoded.response?.status)}`);
      if (decoded.stage === 'QUEUED') return;
    }
  } finally {
    abort.abort();
  }
  throw new Error('Execute ended before the action was queued');
}

describe.each(['sqlite', 'memory'])('serve all with --state %s and 300 queued 1.4 MiB Commands', (state) => {
  it(`grows the process RSS by less than 200 MiB`, async () => {
    const dir = join(work, state);
    const serve = await startServe(
      [
        'all',
        '--apiserver_listen=127.0.0.1:0',
        '--scheduler_listen=127.0.0.1:0',
        `--storage_dir=${join(dir, 'storage')}`,
        `--work_dir=${join(dir, 'work')}`,
        '--slots=1',
        ...(state === 'memory' ? ['--state=memory'] : []),
      ],
      ['apiserver', 'scheduler'],
      { env: { XDG_CACHE_HOME: join(dir, 'cache') } },
    );
    started.push(serve);
    const connection = new RemoteConnection(serve.addresses.scheduler!);
    connections.push(connection);
    const cas = new CasClient(connection);
    const execution = new ExecutionClient(connection);

    const t0 = Date.now();
    const actions = await uploadActions(cas);
    const t1 = Date.now();
    const before = await residentBytes(serve.child.pid!);
    await mapConcurrent(actions, 8, (action) => queue(execution, action));
    const after = await residentBytes(serve.child.pid!);
    const growth = after - before;
    console.log(`state=${state}: upload ${t1 - t0} ms, queueing ${Date.now() - t1} ms; RSS ${mebibytes(before)} -> ${mebibytes(after)} (+${mebibytes(growth)}) with ${ACTIONS} queued`);
    expect(growth).toBeLessThan(MAX_GROWTH_BYTES);
    await serve.stop();
  }, 120_000);
});

const PARKED_UPLOADS = 500;
/** What each parked upload has sent of its 4 MiB blob before its stream ended without finish_write (25 x 64 KiB). */
const PARKED_BYTES = 25 * 64 * 1024;
const ByteStreamClient = grpc.makeGenericClientConstructor(byteStreamService, 'ByteStream');

/** Sends the first PARKED_BYTES of a 4 MiB blob in 64 KiB messages and half-closes: the upload parks. */
function parkUpload(client: grpc.Client, i: number): Promise<number> {
  // The upload never finishes: only its first PARKED_BYTES are sent, so the hash need not match them.
  const blob = randomBytes(PARKED_BYTES);
  const digest = DigestClass.create('', 'sha256', randomBytes(32).toString('hex'), 4 * 1024 * 1024);
  const name = digest.toByteStreamWritePath(randomUUID());
  return new Promise((resolve, reject) => {
    const call = (client as unknown as { write(cb: (err: grpc.ServiceError | null, res: { committedSize: number }) => void): grpc.ClientWritableStream<unknown> }).write((err, res) =>
      err ? reject(new Error(`upload ${i}: ${err.message}`)) : resolve(Number(res.committedSize)),
    );
    const CHUNK = 64 * 1024;
    for (let offset = 0; offset < PARKED_BYTES; offset += CHUNK) {
      call.write({ resourceName: offset === 0 ? name : '', writeOffset: offset, data: blob.subarray(offset, Math.min(offset + CHUNK, PARKED_BYTES)) });
    }
    call.end();
  });
}

describe('serve all with 500 parked resumable uploads', () => {
  it('grows the process RSS by less than 200 MiB', async () => {
    const dir = join(work, 'uploads');
    const serve = await startServe(
      ['all', '--apiserver_listen=127.0.0.1:0', '--scheduler_listen=127.0.0.1:0', `--storage_dir=${join(dir, 'storage')}`, `--work_dir=${join(dir, 'work')}`, '--slots=1'],
      ['apiserver', 'scheduler'],
      { env: { XDG_CACHE_HOME: join(dir, 'cache') } },
    );
    started.push(serve);
    const client = new ByteStreamClient(serve.addresses.apiserver!, grpc.credentials.createInsecure());
    try {
      const before = await residentBytes(serve.child.pid!);
      const t0 = Date.now();
      const committed = await mapConcurrent(Array.from({ length: PARKED_UPLOADS }, (_, i) => i), 8, (i) => parkUpload(client, i));
      const after = await residentBytes(serve.child.pid!);
      const growth = after - before;
      console.log(`parked uploads: ${Date.now() - t0} ms; RSS ${mebibytes(before)} -> ${mebibytes(after)} (+${mebibytes(growth)}) with ${PARKED_UPLOADS} parked`);
      // Every upload is parked with all it sent (nothing dropped to save memory).
      expect(committed.every((c) => c === PARKED_BYTES)).toBe(true);
      expect(growth).toBeLessThan(MAX_GROWTH_BYTES);
    } finally {
      client.close();
      await serve.stop();
    }
  }, 120_000);
});

