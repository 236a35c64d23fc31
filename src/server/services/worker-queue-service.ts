/**
 * bzutil's WorkerQueue (proto/bzutil/worker/v1/worker.proto) over a BuildQueue: workers long-poll
 * Synchronize for tasks and cancellations, hand results in through CompleteTask and running tasks'
 * output through AppendLogs (into LogStreams, which learns here which worker holds which task). A
 * worker that disconnects while its Synchronize is held is noticed through the call's AbortSignal.
 */
import type * as grpc from '@grpc/grpc-js';
import { Code, StatusError, toStatusError } from '../../lib/errors/status-error.js';
import type { workerapi } from '../../lib/proto/index.js';
import type { BuildQueue } from '../../lib/scheduler/build-queue.js';
import type { LogStreams } from '../../lib/scheduler/log-streams.js';
import type { HandlerFactory } from '../grpc/handlers.js';
import type { ActionObserver } from '../observability/action-observer.js';

/** The WorkerQueue service implementation for grpc-js. */
export function createWorkerQueueService(handlers: HandlerFactory, deps: { buildQueue: BuildQueue; observer?: ActionObserver; logStreams?: LogStreams }): grpc.UntypedServiceImplementation {
  const queue = deps.buildQueue;
  return {
    synchronize: handlers.unary<workerapi.SynchronizeRequest, workerapi.ISynchronizeResponse>('WorkerQueue.Synchronize', async (request, ctx) => {
      deps.observer?.synchronizing(request);
      const response = await queue.synchronize(request, { signal: ctx.signal });
      deps.observer?.synchronized(request, response);
      for (const task of response.tasks ?? []) deps.logStreams?.taskAssigned(task, request.workerId ?? '');
      return response;
    }),

    completeTask: handlers.unary<workerapi.CompleteTaskRequest, workerapi.ICompleteTaskResponse>('WorkerQueue.CompleteTask', async (request) => {
      if (!request.taskId) {
        throw StatusError.invalidArgument('Failed to complete task: task_id is empty', [{ field: 'task_id', description: 'Must name the task' }]);
      }
      try {
        await queue.completeTask(request);
      } catch (err) {
        if (toStatusError(err).code === Code.NOT_FOUND) deps.logStreams?.taskEnded(request.taskId);
        throw err;
      }
      deps.logStreams?.taskEnded(request.taskId);
      deps.observer?.taskCompleted(request);
      return {};
    }),

    appendLogs: handlers.unary<workerapi.AppendLogsRequest, workerapi.IAppendLogsResponse>('WorkerQueue.AppendLogs', async (request) => {
      if (!deps.logStreams) throw StatusError.unimplemented('Live logs are off on this scheduler');
      deps.logStreams.append(request);
      return {};
    }),
  };
}
