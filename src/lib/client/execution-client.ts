/**
 * The remote Execution and Operations services: start an action, follow its Operation stream,
 * reattach to it by name, and decode what the Operation carries (ExecuteOperationMetadata and
 * ExecuteResponse packed in Any). Used by the `execute` and `get_operation` commands.
 */
import type { Digest } from '../digest/digest.js';
import { Code, hasCode, StatusError, wrapStatus } from '../errors/status-error.js';
import { reapi, type longrunning } from '../proto/index.js';
import { byteStreamService, executionService, operationsService, unpackAny } from '../proto/services.js';
import type { RemoteCallOptions } from './connection.js';
import { withRetry } from './retry.js';
import { ServiceClient, type ServiceClientOptions } from './service-client.js';

export type ExecutionClientOptions = ServiceClientOptions;

export interface ExecuteOptions extends RemoteCallOptions {
  skipCacheLookup?: boolean;
  /** ExecutionPolicy.priority: lower runs sooner; 0 is the server default. */
  priority?: number;
}

/** An Operation with its Any fields decoded. */
export interface DecodedOperation {
  name: string;
  done: boolean;
  /** QUEUED, EXECUTING, COMPLETED... from the metadata; UNKNOWN when absent. */
  stage: keyof typeof reapi.ExecutionStage.Value;
  metadata?: reapi.IExecuteOperationMetadata;
  response?: reapi.IExecuteResponse;
  /** Operation.error: the execution could not be carried out at all (as opposed to a failing action). */
  error?: StatusError;
}

const METADATA_TYPE = 'build.bazel.remote.execution.v2.ExecuteOperationMetadata';
const RESPONSE_TYPE = 'build.bazel.remote.execution.v2.ExecuteResponse';

/** Decodes the metadata, response and error of an Operation. */
export function decodeOperation(op: longrunning.IOperation): DecodedOperation {
  const metadata = unpackAny(METADATA_TYPE, reapi.ExecuteOperationMetadata, op.metadata);
  const response = unpackAny(RESPONSE_TYPE, reapi.ExecuteResponse, op.response);
  const stageValue = metadata?.stage ?? reapi.ExecutionStage.Value.UNKNOWN;
  const stage = (reapi.ExecutionStage.Value[stageValue] ?? 'UNKNOWN') as DecodedOperation['stage'];
  const decoded: DecodedOperation = { name: op.name ?? '', done: op.done ?? false, stage };
  if (metadata) decoded.metadata = metadata;
  if (response) decoded.response = response;
  if (op.error && op.error.code) decoded.error = StatusError.fromProto(op.error);
  return decoded;
}

const BARE_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * The full resource name of an operation: a bare UUID (as the seed prints and takes it) becomes
 * `operations/<uuid>`, or `<instance>/operations/<uuid>` under a non-empty instance name; any other
 * name is sent as given.
 */
export function normalizeOperationName(name: string, instanceName = ''): string {
  const text = name.trim();
  if (!BARE_UUID.test(text)) return text;
  return instanceName ? `${instanceName}/operations/${text.toLowerCase()}` : `operations/${text.toLowerCase()}`;
}

export class ExecutionClient extends ServiceClient {
  /**
   * Starts (or joins) the execution of `actionDigest` and yields each Operation update until done.
   * Not retried: a dropped stream should be resumed with `waitExecution(name)`.
   */
  async *execute(actionDigest: Digest, opts: ExecuteOptions = {}): AsyncGenerator<longrunning.IOperation> {
    const request: reapi.IExecuteRequest = {
      ...this.requestFields(),
      actionDigest: actionDigest.toProto(),
      skipCacheLookup: opts.skipCacheLookup ?? false,
    };
    if (opts.priority) request.executionPolicy = { priority: opts.priority };
    try {
      yield* this.connection.serverStream(executionService.execute, request, streamOptions(opts));
    } catch (err) {
      throw wrapStatus(err, `Failed to execute action ${actionDigest}`);
    }
  }

  /** Reattaches to a running operation and yields its updates until done. NOT_FOUND if unknown. */
  async *waitExecution(name: string, opts: RemoteCallOptions = {}): AsyncGenerator<longrunning.IOperation> {
    try {
      yield* this.connection.serverStream(executionService.waitExecution, { name: normalizeOperationName(name, this.instanceName) }, streamOptions(opts));
    } catch (err) {
      throw wrapStatus(err, `Failed to wait for operation ${JSON.stringify(name)}`);
    }
  }

  /** The latest state of an operation. NOT_FOUND if unknown. */
  getOperation(name: string, opts: RemoteCallOptions = {}): Promise<longrunning.IOperation> {
    return this.retried(`Failed to get operation ${JSON.stringify(name)}`, opts, () =>
      this.connection.unary(operationsService.getOperation, { name: normalizeOperationName(name, this.instanceName) }, opts),
    );
  }

  listOperations(request: longrunning.IListOperationsRequest = {}, opts: RemoteCallOptions = {}): Promise<longrunning.IListOperationsResponse> {
    return this.retried('Failed to list operations', opts, () => this.connection.unary(operationsService.listOperations, request, opts));
  }

  async cancelOperation(name: string, opts: RemoteCallOptions = {}): Promise<void> {
    await this.retried(`Failed to cancel operation ${JSON.stringify(name)}`, opts, () =>
      this.connection.unary(operationsService.cancelOperation, { name: normalizeOperationName(name, this.instanceName) }, opts),
    );
  }

  async deleteOperation(name: string, opts: RemoteCallOptions = {}): Promise<void> {
    await this.retried(`Failed to delete operation ${JSON.stringify(name)}`, opts, () =>
      this.connection.unary(operationsService.deleteOperation, { name: normalizeOperationName(name, this.instanceName) }, opts),
    );
  }

  /**
   * Reads a live log stream (ExecuteOperationMetadata.stdout_stream_name or stderr_stream_name)
   * with ByteStream Read on the scheduler: output as the action produces it, ending with the action.
   * A dropped stream resumes from the last byte received (UNAVAILABLE, a few times); NOT_FOUND for a
   * name the scheduler never had.
   */
  async *readLogStream(resourceName: string, opts: RemoteCallOptions = {}): AsyncGenerator<Uint8Array> {
    let position = 0;
    for (let attempt = 1; ; attempt++) {
      try {
        for await (const res of this.connection.serverStream(byteStreamService.read, { resourceName, readOffset: position, readLimit: 0 }, streamOptions(opts))) {
          if (!res.data?.length) continue;
          position += res.data.length;
          yield res.data;
        }
        return;
      } catch (err) {
        if (attempt < 4 && hasCode(err, Code.UNAVAILABLE) && !opts.signal?.aborted) continue;
        throw wrapStatus(err, `Failed to read log stream ${JSON.stringify(resourceName)}`);
      }
    }
  }

  private async retried<T>(step: string, opts: RemoteCallOptions, fn: () => Promise<T>): Promise<T> {
    try {
      return await withRetry(this.retry, fn, opts.signal);
    } catch (err) {
      throw wrapStatus(err, step);
    }
  }
}

/**
 * Execute and WaitExecution streams last as long as the action: the connection's per-call
 * deadline (`--rpc_timeout`) does not apply to them unless the caller gives one.
 */
function streamOptions(opts: RemoteCallOptions): RemoteCallOptions {
  return opts.deadlineMs === undefined ? { ...opts, deadlineMs: Infinity } : opts;
}
