/**
 * Builds the asset index from its configuration (the `storage.asset` tree): any blob store that
 * holds keyed records, as for the action cache. Not `verifying` (keys are hashes of URIs, not of
 * the records) and not `grpc` (a remote CAS would verify, and the REAPI has no generic key-value
 * service: a scheduler without a local index serves no Remote Asset).
 */
import { type BlobStoreConfig, terminalBlobStore } from '../blobstore/config.js';
import { configError, createBlobStore, type CreateBlobStoreDeps } from '../blobstore/create-blob-store.js';
import { type AssetIndex, BlobStoreAssetIndex } from './asset-index.js';

export async function createAssetIndex(config: BlobStoreConfig, deps: CreateBlobStoreDeps = {}, path = 'asset'): Promise<AssetIndex> {
  if ('verifying' in config) throw configError(`${path}.verifying`, 'the asset index cannot be verified (its keys are hashes of URIs)');
  if ('grpc' in terminalBlobStore(config)) throw configError(`${path}.grpc`, 'the asset index must be a local store (disk or memory)');
  return new BlobStoreAssetIndex(await createBlobStore(config, deps, path));
}
