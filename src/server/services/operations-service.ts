/**
 * google.longrunning Operations over a BuildQueue, so that clients can look up, list, wait for,
 * cancel and forget the operations that Execute created (`bzutil get_operation` uses GetOperation).
 * Cancellation is reported in the operation's ExecuteResponse.status, not as a call error.
 */
import type * as grpc from '@grpc/grpc-js';
import type { longrunning, protobuf } from '../../lib/proto/index.js';
import type { BuildQueue } from '../../lib/scheduler/build-queue.js';
import { toLongrunningOperation } from '../../lib/scheduler/operation-snapshot.js';
import { durationToMs } from '../../lib/proto/proto-time.js';
import type { HandlerFactory } from '../grpc/handlers.js';
import { requireName } from './request-fields.js';

/** WaitOperation without a timeout waits this long at most. */
export const DEFAULT_WAIT_OPERATION_TIMEOUT_MS = 60_000;

/** The Operations service implementation for grpc-js. */
export function createOperationsService(handlers: HandlerFactory, deps: { buildQueue: BuildQueue }): grpc.UntypedServiceImplementation {
  const queue = deps.buildQueue;
  return {
    getOperation: handlers.unary<longrunning.GetOperationRequest, longrunning.IOperation>('Operations.GetOperation', async (request) =>
      toLongrunningOperation(await queue.getOperation(requireName(request.name))),
    ),

    listOperations: handlers.unary<longrunning.ListOperationsRequest, longrunning.IListOperationsResponse>('Operations.ListOperations', async (request) => {
      const page = await queue.listOperations({ name: request.name, filter: request.filter, pageSize: request.pageSize, pageToken: request.pageToken });
      return { operations: page.operations.map(toLongrunningOperation), nextPageToken: page.nextPageToken };
    }),

    cancelOperation: handlers.unary<longrunning.CancelOperationRequest, protobuf.IEmpty>('Operations.CancelOperation', async (request) => {
      await queue.cancelOperation(requireName(request.name));
      return {};
    }),

    deleteOperation: handlers.unary<longrunning.DeleteOperationRequest, protobuf.IEmpty>('Operations.DeleteOperation', async (request) => {
      await queue.deleteOperation(requireName(request.name));
      return {};
    }),

    waitOperation: handlers.unary<longrunning.WaitOperationRequest, longrunning.IOperation>('Operations.WaitOperation', async (request, ctx) => {
      const timeoutMs = durationToMs(request.timeout) || DEFAULT_WAIT_OPERATION_TIMEOUT_MS;
      return toLongrunningOperation(await queue.waitOperation(requireName(request.name), timeoutMs, { signal: ctx.signal }));
    }),
  };
}
