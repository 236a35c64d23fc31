/**
 * REAPI Execution as a thin adapter over a BuildQueue: validates the request (instance name, action
 * digest, digest function against what Capabilities advertises), then streams the operation's
 * snapshots as google.longrunning Operations. Requests that cannot run fail the call with a
 * StatusError (FAILED_PRECONDITION + PreconditionFailure for missing inputs); failures of the
 * execution itself arrive in the final Operation's ExecuteResponse.status.
 */
import type * as grpc from '@grpc/grpc-js';
import type { DigestFunction } from '../../lib/digest/digest-function.js';
import { StatusError } from '../../lib/errors/status-error.js';
import type { longrunning, reapi } from '../../lib/proto/index.js';
import type { BuildQueue } from '../../lib/scheduler/build-queue.js';
import { toLongrunningOperation } from '../../lib/scheduler/operation-snapshot.js';
import type { HandlerFactory } from '../grpc/handlers.js';
import { digestFromRequest } from './capabilities-service.js';

export interface ExecutionServiceDeps {
  buildQueue: BuildQueue;
  /** Digest functions accepted, as advertised by Capabilities. @default ['sha256'] */
  digestFunctions?: readonly DigestFunction[];
}

/** The Execution service implementation for grpc-js. */
export function createExecutionService(handlers: HandlerFactory, deps: ExecutionServiceDeps): grpc.UntypedServiceImplementation {
  const served = deps.digestFunctions?.length ? deps.digestFunctions : (['sha256'] as const);
  const queue = deps.buildQueue;
  return {
    execute: handlers.serverStream<reapi.ExecuteRequest, longrunning.IOperation>('Execution.Execute', async function* (request, ctx) {
      const actionDigest = digestFromRequest(served, request.instanceName, request.digestFunction, request.actionDigest, 'action_digest');
      const snapshots = queue.execute(
        {
          actionDigest,
          skipCacheLookup: request.skipCacheLookup,
          priority: request.executionPolicy?.priority ?? 0,
          resultsCachePriority: request.resultsCachePolicy?.priority ?? 0,
        },
        { signal: ctx.signal },
      );
      for await (const snapshot of snapshots) yield toLongrunningOperation(snapshot);
    }),

    waitExecution: handlers.serverStream<reapi.WaitExecutionRequest, longrunning.IOperation>('Execution.WaitExecution', async function* (request, ctx) {
      for await (const snapshot of queue.waitExecution(requireName(request.name), { signal: ctx.signal })) yield toLongrunningOperation(snapshot);
    }),
  };
}

const BARE_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The operation name to look up; INVALID_ARGUMENT when empty. A bare UUID (the seed's
 * `--name=b53b5e99-...`) names the default instance's `operations/<uuid>`.
 */
export function requireName(name: string | null | undefined, field = 'name'): string {
  if (!name) throw StatusError.invalidArgument('Failed to find operation: the operation name is empty', [{ field, description: 'Must name an operation' }]);
  return BARE_UUID.test(name) ? `operations/${name.toLowerCase()}` : name;
}
