/**
 * Builds the action cache from its configuration (a `storage.action_cache` tree). A `grpc` node is
 * a remote ActionCache service, used as is: the server behind it checks completeness against its own
 * CAS. Any other tree holds ActionResults as blobs keyed by action digest, and a hit is answered only
 * when every output it names is still in `contentAddressableStorage` (otherwise Bazel would get a hit
 * whose outputs it cannot download).
 */
import type { BlobStore } from '../blobstore/blob-store.js';
import type { BlobStoreConfig } from '../blobstore/config.js';
import { configError, connect, createBlobStore, type CreateBlobStoreDeps } from '../blobstore/create-blob-store.js';
import { type ActionCache, BlobStoreActionCache } from './action-cache.js';
import { CompletenessCheckingActionCache } from './completeness-checking-action-cache.js';
import { GrpcActionCache } from './grpc-action-cache.js';

export async function createActionCache(
  config: BlobStoreConfig,
  contentAddressableStorage: BlobStore,
  deps: CreateBlobStoreDeps = {},
  path = 'action_cache',
): Promise<ActionCache> {
  if ('grpc' in config) {
    return new GrpcActionCache(connect(config.grpc, `${path}.grpc`, deps), { instanceName: config.grpc.instance_name ?? '' });
  }
  // Action cache keys are action digests, not digests of the stored ActionResult: verifying would
  // reject every write.
  if ('verifying' in config) throw configError(`${path}.verifying`, 'an action cache cannot be verified (its keys are action digests)');
  return new CompletenessCheckingActionCache(new BlobStoreActionCache(await createBlobStore(config, deps, path)), contentAddressableStorage);
}

