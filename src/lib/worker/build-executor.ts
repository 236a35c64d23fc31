/**
 * What a worker does with one task, after Buildbarn's BuildExecutor: take an action and produce an
 * ExecuteResponse. Failures of the execution itself (missing inputs, timeout, cancellation, upload
 * errors) are *data* in `response.status`, never exceptions, so that the scheduler always gets a
 * response to hand back to the client; a non-zero exit code is a result, not an error.
 * Decorators (AC writing, logging, metrics) wrap a BuildExecutor and add one concern each.
 */
import type { CallOptions } from '../blobstore/blob-store.js';
import type { Digest } from '../digest/digest.js';
import { abortStatus as abortStatusOf, Code, StatusError, toStatusError } from '../errors/status-error.js';
import type { protobuf, reapi, workerapi } from '../proto/index.js';
import type { OutputFiles } from './output-follower.js';

/** One action to run, as the scheduler hands it out (Action and Command already fetched). */
export interface ExecutionTask {
  /** Unique id of this attempt; names the action directory. */
  taskId: string;
  /** Carries the instance name and digest function used for every blob of the task. */
  actionDigest: Digest;
  action: reapi.IAction;
  command: reapi.ICommand;
  /** Effective execution timeout; 0 for none. */
  timeoutMs: number;
  /** When the operation was queued, copied into ExecutedActionMetadata. */
  queuedTimestamp?: protobuf.ITimestamp | null;
  /** The input tree's Directories as the scheduler resolved and checked them (Task.input_directories). */
  inputDirectories?: workerapi.IResolvedDirectory[] | null;
}

export type ExecutionStage = 'FETCHING_INPUTS' | 'RUNNING' | 'UPLOADING_OUTPUTS';

export interface ExecuteOptions extends CallOptions {
  /** Told when the task enters each stage, e.g. to report progress. */
  onStage?: (stage: ExecutionStage) => void;
  /**
   * Called as the command starts with the files its stdout and stderr go to (empty then); the
   * returned `stop` is awaited once it has exited, before the files are read or reused (live logs).
   */
  followOutput?: (files: OutputFiles) => { stop(): Promise<void> };
}

export interface BuildExecutor {
  /**
   * Runs the task and resolves with its response; does not reject for execution failures. When
   * `signal` fires the task is stopped and the response carries CANCELLED, or the StatusError given
   * as the signal's reason (e.g. UNAVAILABLE when the worker shuts down).
   */
  execute(task: ExecutionTask, opts?: ExecuteOptions): Promise<reapi.IExecuteResponse>;
  /** Resolves once the work an executor does after returning results (e.g. cleanup) is done. */
  settled?(): Promise<void>;
}

/**
 * Records `err` in `response.status` unless an error is already there: the first error is the cause,
 * later ones are usually its consequences (bb's attachErrorToExecuteResponse).
 */
export function attachError(response: reapi.IExecuteResponse, err: unknown): void {
  if (response.status && (response.status.code ?? Code.OK) !== Code.OK) return;
  response.status = toStatusError(err).toProto();
}

/** The status a task gets when its signal fired (see lib/errors). */
export function abortStatus(signal: AbortSignal): StatusError {
  return abortStatusOf(signal, 'Task was cancelled');
}
