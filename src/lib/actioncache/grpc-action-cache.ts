/**
 * An ActionCache backed by a remote ActionCache service, for a scheduler or worker whose action
 * cache lives in a separate apiserver. Misses stay NOT_FOUND.
 */
import { ActionCacheClient, type ActionCacheClientOptions } from '../client/action-cache-client.js';
import type { RemoteConnection } from '../client/connection.js';
import type { Digest } from '../digest/digest.js';
import type { reapi } from '../proto/index.js';
import type { CallOptions } from '../blobstore/blob-store.js';
import type { ActionCache } from './action-cache.js';

export class GrpcActionCache implements ActionCache {
  private readonly client: ActionCacheClient;

  constructor(connection: RemoteConnection, opts: ActionCacheClientOptions = {}) {
    this.client = new ActionCacheClient(connection, opts);
  }

  getActionResult(actionDigest: Digest, opts: CallOptions = {}): Promise<reapi.IActionResult> {
    return this.client.getActionResult(actionDigest, { signal: opts.signal });
  }

  async updateActionResult(actionDigest: Digest, result: reapi.IActionResult, opts: CallOptions = {}): Promise<void> {
    await this.client.updateActionResult(actionDigest, result, { signal: opts.signal });
  }
}
