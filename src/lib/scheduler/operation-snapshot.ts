/**
 * What the scheduler reports about one operation, and its google.longrunning form. Execution
 * failures (timeouts, cancellation, lost workers, unschedulable platforms) travel in
 * ExecuteResponse.status of a done operation, never in Operation.error, as REAPI asks: Bazel reads
 * the response, including the PreconditionFailure details, from there.
 */
import type { Digest } from '../digest/digest.js';
import { logStreamName } from './log-streams.js';
import type { PlatformProperties } from './platform-properties.js';
import { digestFunctionToProto } from '../digest/digest-function.js';
import { longrunning, reapi } from '../proto/index.js';
import { packAny } from '../proto/services.js';

/** The REAPI execution stages, in the order an operation goes through them. */
export type ExecutionStage = 'CACHE_CHECK' | 'QUEUED' | 'EXECUTING' | 'COMPLETED';

export interface OperationSnapshot {
  /** `operations/<uuid>`, or `<instance>/operations/<uuid>` for a non-empty instance name. */
  name: string;
  actionDigest: Digest;
  stage: ExecutionStage;
  /** The platform the action needs, while QUEUED or EXECUTING (for the per-platform queue metrics). */
  platform?: PlatformProperties;
  /**
   * The operation whose live log streams this one shows: the execution's first operation when this
   * one joined it (log-streams.ts). @default name
   */
  logStreamOperation?: string;
  /** Set exactly when `stage` is COMPLETED; a failure is in `response.status`. */
  response?: reapi.IExecuteResponse;
}

export const EXECUTE_OPERATION_METADATA_TYPE = 'build.bazel.remote.execution.v2.ExecuteOperationMetadata';
export const EXECUTE_RESPONSE_TYPE = 'build.bazel.remote.execution.v2.ExecuteResponse';

/** Converts a snapshot into the Operation that Execute, WaitExecution and the Operations service return. */
export function toLongrunningOperation(snapshot: OperationSnapshot): longrunning.IOperation {
  const done = snapshot.stage === 'COMPLETED';
  const metadata: reapi.IExecuteOperationMetadata = {
    stage: reapi.ExecutionStage.Value[snapshot.stage],
    actionDigest: snapshot.actionDigest.toProto(),
    digestFunction: digestFunctionToProto(snapshot.actionDigest.digestFunction),
  };
  if (snapshot.stage !== 'CACHE_CHECK') {
    // ByteStream names on the scheduler's port: live while the action runs, its final output after.
    const owner = snapshot.logStreamOperation ?? snapshot.name;
    metadata.stdoutStreamName = logStreamName(owner, 'stdout');
    metadata.stderrStreamName = logStreamName(owner, 'stderr');
  }
  const op: longrunning.IOperation = {
    name: snapshot.name,
    done,
    metadata: packAny(EXECUTE_OPERATION_METADATA_TYPE, reapi.ExecuteOperationMetadata, metadata),
  };
  if (done) op.response = packAny(EXECUTE_RESPONSE_TYPE, reapi.ExecuteResponse, snapshot.response ?? {});
  return op;
}
