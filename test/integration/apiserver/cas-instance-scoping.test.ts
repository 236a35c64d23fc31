/**
 * `storage.cas_instance_scoping` over real gRPC: `shared` (the default) finds a blob uploaded under
 * instance A under instance B too; `per_instance` does not (FindMissingBlobs, BatchReadBlobs and
 * ByteStream Read all say it is missing), and the action cache is per instance either way.
 */
import { randomUUID } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { CasInstanceScoping } from '../../../src/lib/config/config.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code } from '../../../src/lib/errors/status-error.js';
import type { reapi } from '../../../src/lib/proto/index.js';
import { expectStatus, type Harness, readStream, startHarness, unary, writeBlob } from './harness.js';

const data = new TextEncoder().encode('a blob of team A');

describe('storage.cas_instance_scoping', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  async function start(scoping?: CasInstanceScoping): Promise<Harness> {
    return startHarness({
      storage: {
        cas: { memory: { max_size_bytes: 16 * 1024 * 1024 } },
        action_cache: { memory: { max_size_bytes: 1024 * 1024 } },
        ...(scoping ? { cas_instance_scoping: scoping } : {}),
      },
      capabilities: { actionCacheUpdateEnabled: true },
    });
  }

  const missingUnder = async (instanceName: string, digest: Digest): Promise<boolean> => {
    const res = await unary<reapi.FindMissingBlobsResponse>(h!.cas, 'findMissingBlobs', { instanceName, blobDigests: [digest.toProto()] });
    return res.missingBlobDigests.length === 1;
  };

  it('per_instance: a blob uploaded under A is missing under B for FindMissingBlobs, BatchReadBlobs and ByteStream', async () => {
    h = await start('per_instance');
    const digest = Digest.ofBytes(data, { instanceName: 'team-a' });
    await writeBlob(h.byteStream, digest.toByteStreamWritePath(randomUUID()), data);
    expect(await missingUnder('team-a', digest)).toBe(false);
    expect(await missingUnder('team-b', digest)).toBe(true);

    const batch = await unary<reapi.BatchReadBlobsResponse>(h.cas, 'batchReadBlobs', { instanceName: 'team-b', digests: [digest.toProto()] });
    expect(batch.responses[0]?.status?.code).toBe(Code.NOT_FOUND);
    await expectStatus(readStream(h.byteStream, 'read', { resourceName: digest.withInstanceName('team-b').toByteStreamReadPath() }), Code.NOT_FOUND);
    const own = await readStream<{ data: Uint8Array }>(h.byteStream, 'read', { resourceName: digest.toByteStreamReadPath() });
    expect(Buffer.concat(own.map((m) => m.data)).equals(Buffer.from(data))).toBe(true);
  });

  it('shared (the default): a blob uploaded under A is found and read under B', async () => {
    h = await start();
    const digest = Digest.ofBytes(data, { instanceName: 'team-a' });
    await writeBlob(h.byteStream, digest.toByteStreamWritePath(randomUUID()), data);
    expect(await missingUnder('team-b', digest)).toBe(false);
    expect(await missingUnder('', digest)).toBe(false);
    const batch = await unary<reapi.BatchReadBlobsResponse>(h.cas, 'batchReadBlobs', { instanceName: 'team-b', digests: [digest.toProto()] });
    expect(batch.responses[0]?.status?.code ?? Code.OK).toBe(Code.OK);
    expect(Buffer.from(batch.responses[0]!.data).equals(Buffer.from(data))).toBe(true);
  });

  it('keeps the action cache per instance even with a shared CAS', async () => {
    h = await start('shared');
    const actionDigest = Digest.ofBytes(new TextEncoder().encode('an action'));
    await unary(h.actionCache, 'updateActionResult', { instanceName: 'team-a', actionDigest: actionDigest.toProto(), actionResult: { exitCode: 0 } });
    await unary(h.actionCache, 'getActionResult', { instanceName: 'team-a', actionDigest: actionDigest.toProto() });
    await expectStatus(unary(h.actionCache, 'getActionResult', { instanceName: 'team-b', actionDigest: actionDigest.toProto() }), Code.NOT_FOUND);
  });
});
