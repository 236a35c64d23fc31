/**
 * The messages the scheduler exchanges with workers about one execution: the Task it hands out
 * and the ExecuteResponse it accepts back (with the scheduler's invariants applied).
 */
import { digestFunctionToProto } from '../digest/digest-function.js';
import { Code } from '../errors/status-error.js';
import { type reapi, workerapi } from '../proto/index.js';
import { msToDuration, msToTimestamp } from '../proto/proto-time.js';
import type { LoadedAction } from './load-action.js';
import type { Execution, OperationEntry } from './scheduler-state.js';

/** Tasks handed out in one Synchronize response stop here (a single task may exceed it). */
export const SYNCHRONIZE_RESPONSE_BUDGET_BYTES = 3 * 1024 * 1024;

/** What a task says of the execution it is an attempt of. */
export interface TaskOrigin {
  actionDigest: Execution['actionDigest'];
  queuedAtMs: number;
  /** The operation named in the task (for the worker's logs). */
  operationName: string;
}

/** The origin of an in-memory execution's task. */
export function originOf(execution: Execution): TaskOrigin {
  const primary = execution.entries.values().next().value as OperationEntry | undefined;
  return { actionDigest: execution.actionDigest, queuedAtMs: execution.queuedAtMs, operationName: primary?.name ?? '' };
}

/** The Task for one attempt of an execution, and its encoded size (for the response budget). */
export function toTaskProto(origin: TaskOrigin, loaded: LoadedAction, taskId: string, leaseToken: string): { task: workerapi.ITask; sizeBytes: number } {
  const task: workerapi.ITask = {
    taskId,
    operationName: origin.operationName,
    instanceName: origin.actionDigest.instanceName,
    digestFunction: digestFunctionToProto(origin.actionDigest.digestFunction),
    actionDigest: origin.actionDigest.toProto(),
    action: loaded.action,
    command: loaded.command,
    timeout: msToDuration(loaded.timeoutMs),
    queuedTimestamp: msToTimestamp(origin.queuedAtMs),
    leaseToken,
    ...(loaded.inputDirectories ? { inputDirectories: loaded.inputDirectories } : {}),
  };
  return { task, sizeBytes: workerapi.Task.encode(task).finish().length };
}

/** The worker's response with the scheduler's invariants: a status always, a result on success. */
export function normalizeResponse(origin: Pick<TaskOrigin, 'actionDigest' | 'queuedAtMs'>, workerName: string, reported: reapi.IExecuteResponse | null | undefined): reapi.IExecuteResponse {
  const response: reapi.IExecuteResponse = { ...(reported ?? {}), cachedResult: false };
  let status = response.status ?? { code: Code.OK };
  if ((status.code ?? Code.OK) === Code.OK && !response.result) {
    status = { code: Code.INTERNAL, message: `Failed to execute action ${origin.actionDigest}: worker ${JSON.stringify(workerName)} reported success without an ActionResult` };
  }
  response.status = status;
  if (response.result) {
    const metadata: reapi.IExecutedActionMetadata = { ...(response.result.executionMetadata ?? {}) };
    metadata.queuedTimestamp ??= msToTimestamp(origin.queuedAtMs);
    if (!metadata.worker) metadata.worker = workerName;
    response.result = { ...response.result, executionMetadata: metadata };
  }
  return response;
}
