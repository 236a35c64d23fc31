/**
 * The messages the scheduler exchanges with workers about one execution: the Task it hands out
 * and the ExecuteResponse it accepts back (with the scheduler's invariants applied).
 */
import { digestFunctionToProto } from '../digest/digest-function.js';
import { Code } from '../errors/status-error.js';
import { type reapi, workerapi } from '../proto/index.js';
import { msToDuration, msToTimestamp } from '../proto/proto-time.js';
import type { LoadedAction } from './load-action.js';
import type { Execution, OperationEntry, WorkerState } from './scheduler-state.js';

/** Tasks handed out in one Synchronize response stop here (a single task may exceed it). */
export const SYNCHRONIZE_RESPONSE_BUDGET_BYTES = 3 * 1024 * 1024;

/** The Task for one attempt of `execution`, and its encoded size (for the response budget). */
export function toTaskProto(execution: Execution, loaded: LoadedAction, taskId: string, leaseToken: string): { task: workerapi.ITask; sizeBytes: number } {
  const primary = execution.entries.values().next().value as OperationEntry | undefined;
  const task: workerapi.ITask = {
    taskId,
    operationName: primary?.name ?? '',
    instanceName: execution.actionDigest.instanceName,
    digestFunction: digestFunctionToProto(execution.actionDigest.digestFunction),
    actionDigest: execution.actionDigest.toProto(),
    action: loaded.action,
    command: loaded.command,
    timeout: msToDuration(loaded.timeoutMs),
    queuedTimestamp: msToTimestamp(execution.queuedAtMs),
    leaseToken,
    ...(loaded.inputDirectories ? { inputDirectories: loaded.inputDirectories } : {}),
  };
  return { task, sizeBytes: workerapi.Task.encode(task).finish().length };
}

/** The worker's response with the scheduler's invariants: a status always, a result on success. */
export function normalizeResponse(execution: Execution, worker: WorkerState, reported: reapi.IExecuteResponse | null | undefined): reapi.IExecuteResponse {
  const response: reapi.IExecuteResponse = { ...(reported ?? {}), cachedResult: false };
  let status = response.status ?? { code: Code.OK };
  if ((status.code ?? Code.OK) === Code.OK && !response.result) {
    status = { code: Code.INTERNAL, message: `Failed to execute action ${execution.actionDigest}: worker ${JSON.stringify(worker.name)} reported success without an ActionResult` };
  }
  response.status = status;
  if (response.result) {
    const metadata: reapi.IExecutedActionMetadata = { ...(response.result.executionMetadata ?? {}) };
    metadata.queuedTimestamp ??= msToTimestamp(execution.queuedAtMs);
    if (!metadata.worker) metadata.worker = worker.name;
    response.result = { ...response.result, executionMetadata: metadata };
  }
  return response;
}
