/**
 * REAPI Execution as a thin adapter over a BuildQueue: validates the request (instance name, action
 * digest, digest function against what Capabilities advertises), then streams the operation's
 * snapshots as google.longrunning Operations. Requests that cannot run fail the call with a
 * StatusError (FAILED_PRECONDITION + PreconditionFailure for missing inputs); failures of the
 * execution itself arrive in the final Operation's ExecuteResponse.status.
 */
import type * as grpc from '@grpc/grpc-js';
import { DIGEST_FUNCTIONS, type DigestFunction } from '../../lib/digest/digest-function.js';
import type { longrunning, reapi } from '../../lib/proto/index.js';
import type { BuildQueue } from '../../lib/scheduler/build-queue.js';
import { toLongrunningOperation } from '../../lib/scheduler/operation-snapshot.js';
import { StatusError } from '../../lib/errors/status-error.js';
import type { HandlerFactory } from '../grpc/handlers.js';
import type { ActionObserver } from '../observability/action-observer.js';
import { digestFromRequest, requireName } from './request-fields.js';

export interface ExecutionServiceDeps {
  buildQueue: BuildQueue;
  /** Digest functions accepted, as advertised by Capabilities. @default DIGEST_FUNCTIONS */
  digestFunctions?: readonly DigestFunction[];
  /** Told the first state of every Execute (logs and metrics). */
  observer?: ActionObserver;
  /** True once the server is shutting down: new executions are refused with UNAVAILABLE (clients retry elsewhere). */
  draining?: () => boolean;
}

/** The Execution service implementation for grpc-js. */
export function createExecutionService(handlers: HandlerFactory, deps: ExecutionServiceDeps): grpc.UntypedServiceImplementation {
  const served = deps.digestFunctions?.length ? deps.digestFunctions : DIGEST_FUNCTIONS;
  const queue = deps.buildQueue;
  return {
    execute: handlers.serverStream<reapi.ExecuteRequest, longrunning.IOperation>('Execution.Execute', async function* (request, ctx) {
      const actionDigest = digestFromRequest(served, request.instanceName, request.digestFunction, request.actionDigest, 'action_digest');
      if (deps.draining?.()) throw StatusError.unavailable('Failed to execute: the scheduler is shutting down');
      const snapshots = queue.execute(
        {
          actionDigest,
          skipCacheLookup: request.skipCacheLookup,
          priority: request.executionPolicy?.priority ?? 0,
          resultsCachePriority: request.resultsCachePolicy?.priority ?? 0,
        },
        { signal: ctx.signal },
      );
      let first = true;
      for await (const snapshot of snapshots) {
        if (first) deps.observer?.executeStarted(snapshot);
        first = false;
        yield toLongrunningOperation(snapshot);
      }
    }),

    waitExecution: handlers.serverStream<reapi.WaitExecutionRequest, longrunning.IOperation>('Execution.WaitExecution', async function* (request, ctx) {
      for await (const snapshot of queue.waitExecution(requireName(request.name), { signal: ctx.signal })) yield toLongrunningOperation(snapshot);
    }),
  };
}

