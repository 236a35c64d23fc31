/**
 * The Remote Asset API's Fetch and Push services (build.bazel.remote.asset.v1) as thin adapters
 * over lib/asset's RemoteAsset, which holds the logic (index, CAS checks, downloads).
 */
import type * as grpc from '@grpc/grpc-js';
import type { RemoteAsset } from '../../lib/asset/remote-asset.js';
import type { asset } from '../../lib/proto/index.js';
import type { HandlerFactory } from '../grpc/handlers.js';

/** The Fetch service implementation for grpc-js. */
export function createFetchService(handlers: HandlerFactory, remoteAsset: RemoteAsset): grpc.UntypedServiceImplementation {
  return {
    fetchBlob: handlers.unary<asset.FetchBlobRequest, asset.IFetchBlobResponse>('Fetch.FetchBlob', (request, ctx) =>
      remoteAsset.fetchBlob(request, { signal: ctx.signal }),
    ),
    fetchDirectory: handlers.unary<asset.FetchDirectoryRequest, asset.IFetchDirectoryResponse>('Fetch.FetchDirectory', (request, ctx) =>
      remoteAsset.fetchDirectory(request, { signal: ctx.signal }),
    ),
  };
}

/** The Push service implementation for grpc-js. */
export function createPushService(handlers: HandlerFactory, remoteAsset: RemoteAsset): grpc.UntypedServiceImplementation {
  return {
    pushBlob: handlers.unary<asset.PushBlobRequest, asset.IPushBlobResponse>('Push.PushBlob', async (request, ctx) => {
      await remoteAsset.pushBlob(request, { signal: ctx.signal });
      return {};
    }),
    pushDirectory: handlers.unary<asset.PushDirectoryRequest, asset.IPushDirectoryResponse>('Push.PushDirectory', async (request, ctx) => {
      await remoteAsset.pushDirectory(request, { signal: ctx.signal });
      return {};
    }),
  };
}
