import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GrpcActionCache } from '../../../src/lib/actioncache/grpc-action-cache.js';
import { GrpcBlobStore } from '../../../src/lib/blobstore/grpc-blob-store.js';
import { CasClient } from '../../../src/lib/client/cas-client.js';
import { RemoteConnection } from '../../../src/lib/client/connection.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code } from '../../../src/lib/errors/status-error.js';
import { describeBlobStoreContract, expectCode, rejectionOf } from '../../helpers/blob-store-contract.js';
import { type StorageServer, startStorageServer } from './storage-server.js';

describeBlobStoreContract('GrpcBlobStore', async () => {
  const server = await startStorageServer();
  const connection = new RemoteConnection(server.address);
  return {
    store: new GrpcBlobStore(new CasClient(connection, { retry: { maxAttempts: 1 } })),
    close: async () => {
      connection.close();
      await server.close();
    },
  };
});

describe('GrpcActionCache', () => {
  let server: StorageServer;
  let connection: RemoteConnection;
  beforeEach(async () => {
    server = await startStorageServer();
    connection = new RemoteConnection(server.address);
  });
  afterEach(async () => {
    connection.close();
    await server.close();
  });

  it('returns NOT_FOUND on a miss', async () => {
    const cache = new GrpcActionCache(connection);
    const actionDigest = Digest.ofBytes(new TextEncoder().encode('some action'));
    const err = await rejectionOf(cache.getActionResult(actionDigest));
    expectCode(err, Code.NOT_FOUND);
    expect((err as Error).message).toContain(actionDigest.toString());
  });

  it('returns the result it stored', async () => {
    const cache = new GrpcActionCache(connection);
    const actionDigest = Digest.ofBytes(new TextEncoder().encode('another action'));
    await cache.updateActionResult(actionDigest, { exitCode: 3, stdoutRaw: new TextEncoder().encode('out') });
    const result = await cache.getActionResult(actionDigest);
    expect(result.exitCode).toBe(3);
  });
});
