/**
 * The base of the execution-side commands (`execute`, `get_operation`, `wait_execution`,
 * `cancel_operation`, `list_operations`, `get_outputs`): the scheduler flags, a checked connection to
 * the scheduler, and following an Operation stream until it is done with a spinner on stderr.
 *
 * Connecting makes a first GetCapabilities call under a deadline, like `connectCas`, so that a
 * scheduler that cannot be reached fails fast with exit code 5 ("Failed to reach the scheduler at
 * ...") rather than hanging; and a server that answers but does not execute (the apiserver given by
 * mistake) is refused with a message that says which address to use.
 */
import { Flags } from '@oclif/core';
import { type DecodedOperation, ExecutionClient, decodeOperation } from '../client/execution-client.js';
import type { DigestFunction } from '../digest/digest-function.js';
import { Code, StatusError, hasCode, toStatusError } from '../errors/status-error.js';
import type { longrunning } from '../proto/index.js';
import { BzutilCommand } from './base-command.js';
import { authMetadataFrom, clientCredentialFlags, clientTlsFrom, digestFunctionFlag, instanceNameFlag, rpcTimeoutFlag, schedulerFlag } from './flags.js';
import { type OperationView, formatStage, toOperationView } from './operation-format.js';
import { type Progress, createProgress } from './progress.js';

export { DEFAULT_SCHEDULER_ADDRESS } from './flags.js';

/** The flags every command talking to the scheduler takes. */
export const schedulerFlags = {
  ...clientCredentialFlags,
  scheduler: schedulerFlag,
  instance_name: instanceNameFlag,
  digest_function: digestFunctionFlag,
  rpc_timeout: rpcTimeoutFlag,
};

/** `--name`: the operation to act on. */
export const operationNameFlag = Flags.string({
  summary: 'Name of the operation, as printed by execute: operations/<uuid>, or the bare <uuid> as the seed prints it.',
  required: true,
});

/** `--fail_on_nonzero`: turn a failing action into a failing command. */
export const failOnNonzeroFlag = Flags.boolean({
  summary: 'Exit 1 when the action exits non-zero or could not run (the default reports it and exits 0).',
  aliases: ['fail-on-nonzero'],
  default: false,
});

export interface SchedulerFlagValues {
  scheduler: string;
  instance_name: string;
  digest_function: DigestFunction;
  rpc_timeout: number;
  tls_ca?: string;
  tls_cert?: string;
  tls_key?: string;
  token?: string;
}

/** Times a dropped stream is re-attached with WaitExecution before giving up. */
const MAX_REATTACH_ATTEMPTS = 3;

export abstract class ExecutionCommand<T> extends BzutilCommand<T> {
  private progress?: Progress;

  /** Opens the scheduler at `--scheduler` and checks that it answers and executes. */
  protected async connectScheduler(flags: SchedulerFlagValues): Promise<ExecutionClient> {
    const { connection, capabilities } = await this.connect(flags.scheduler, {
      what: 'the scheduler',
      flag: '--scheduler',
      instanceName: flags.instance_name,
      digestFunction: flags.digest_function,
      rpcTimeoutMs: flags.rpc_timeout,
      tls: clientTlsFrom(flags),
      metadata: authMetadataFrom(flags),
    });
    // A server without Capabilities may still execute; one that says it does not is refused.
    if (capabilities && !(capabilities.executionCapabilities?.execEnabled ?? false)) {
      throw StatusError.failedPrecondition(
        `Failed to use ${flags.scheduler} as the scheduler: it does not offer remote execution (is it the apiserver?); give the scheduler's address with --scheduler`,
      );
    }
    return new ExecutionClient(connection, { instanceName: flags.instance_name, digestFunction: flags.digest_function });
  }

  /**
   * Consumes an Operation stream until the operation is done, showing its stage on a spinner (on a
   * terminal). A stream that breaks with UNAVAILABLE after the operation is known is re-attached with
   * WaitExecution a few times; a stream that ends before `done` is an UNAVAILABLE error telling the
   * user how to resume.
   */
  protected async followUntilDone(
    client: ExecutionClient,
    stream: AsyncIterable<longrunning.IOperation>,
    what: string,
    /** `onOperation` sees every update; `progress: false` keeps the spinner off (live logs on stderr). */
    opts: { onOperation?: (op: DecodedOperation) => void; progress?: boolean } = {},
  ): Promise<OperationView> {
    const progress = this.startProgress(what, opts.progress ?? true);
    let last: DecodedOperation | undefined;
    let reattachments = 0;
    let current = stream;
    for (;;) {
      try {
        for await (const op of current) {
          last = decodeOperation(op);
          opts.onOperation?.(last);
          progress.update(formatStage(toOperationView(last)));
          if (last.done) {
            progress.stop();
            return toOperationView(last);
          }
        }
        if (!last) throw StatusError.unavailable(`Failed to ${what}: the scheduler closed the stream without sending the operation`);
        throw StatusError.unavailable(
          `Failed to ${what}: the scheduler closed the stream before operation ${JSON.stringify(last.name)} was done; resume with: bzutil wait_execution --name=${last.name}`,
        );
      } catch (err) {
        const canReattach = last !== undefined && hasCode(err, Code.UNAVAILABLE) && reattachments < MAX_REATTACH_ATTEMPTS;
        if (!canReattach) {
          progress.stop();
          throw err;
        }
        reattachments++;
        current = client.waitExecution(last!.name);
      }
    }
  }

  /** Takes the first Operation of a stream (then cancels the stream; the operation keeps running). */
  protected async firstOperation(stream: AsyncIterable<longrunning.IOperation>, what: string): Promise<OperationView> {
    for await (const op of stream) return toOperationView(decodeOperation(op));
    throw StatusError.unavailable(`Failed to ${what}: the scheduler closed the stream without sending the operation`);
  }

  /** A spinner on stderr unless --json is on or stderr is not a terminal. */
  protected startProgress(text: string, enabled = true): Progress {
    this.progress?.stop();
    this.progress = createProgress(text, enabled && !this.jsonEnabled());
    return this.progress;
  }

  /**
   * Under --fail_on_nonzero: a done operation whose action exited non-zero, or whose execution
   * failed (timeout, cancellation...), becomes a CLI error after it has been printed.
   */
  protected failOnNonzero(view: OperationView): void {
    // Always exit code 1: a timed-out action is not an unreachable server (DEADLINE_EXCEEDED's 5).
    if (view.error) throw new ActionFailedError(`Operation ${view.name} failed: ${view.error.codeName}: ${view.error.message}`);
    const response = view.response;
    if (!response) return;
    if (response.status.code !== Code.OK) {
      throw new ActionFailedError(`Operation ${view.name} failed: ${response.status.codeName}: ${response.status.message}`);
    }
    const exitCode = response.result?.exitCode ?? 0;
    if (exitCode !== 0) throw new ActionFailedError(`Operation ${view.name}: the action exited with code ${exitCode}`, exitCode);
  }

  protected override async finally(err: Error | undefined): Promise<void> {
    this.progress?.stop();
    await super.finally(err);
  }
}

/**
 * `--fail_on_nonzero` and the action exited non-zero or could not run: exit code 1 (a CLI failure
 * that is neither a usage error nor a refusal nor an unreachable server), with the action's own exit
 * code attached when it ran.
 */
export class ActionFailedError extends StatusError {
  override readonly name = 'ActionFailedError';
  /** Exit code 1 (see exit-codes.ts). */
  readonly actionFailed = true;
  constructor(
    message: string,
    readonly actionExitCode?: number,
  ) {
    super(Code.UNKNOWN, message);
  }
}

/**
 * Missing inputs reported in a done operation (the worker found a blob gone after the scheduler's
 * check): the same refusal, with the same exit code 4 (not found), as when Execute itself reports them.
 */
export function missingInputsError(view: OperationView): StatusError {
  const status = view.response!.status;
  const blobs = (status.missingBlobs ?? []).map((s) => {
    const [, hash, size] = s.split('/');
    return { hash: hash ?? '', sizeBytes: Number(size ?? 0) };
  });
  return describeMissingInputs(StatusError.missingBlobs(blobs, status.message), `Failed to execute operation ${view.name}`);
}

/**
 * Describes a FAILED_PRECONDITION from Execute in one message listing the missing blobs, so the user
 * sees what to upload without decoding details. `step` starts the message ("Failed to execute
 * action ..."). Any other error is returned as it is.
 */
export function describeMissingInputs(err: unknown, step: string): StatusError {
  const s = toStatusError(err);
  // Other errors already name their step (the clients prefix them).
  if (s.code !== Code.FAILED_PRECONDITION) return s;
  const missing = s
    .preconditionViolations()
    .filter((v) => v.type === 'MISSING')
    .map((v) => (v.subject ?? '').replace(/^blobs\//, ''));
  if (missing.length === 0) return s;
  const shown = missing.slice(0, 20).map((m) => `\n  ${m}`).join('');
  const more = missing.length > 20 ? `\n  ... and ${missing.length - 20} more` : '';
  return new StatusError(s.code, `${step}: the CAS lacks ${missing.length} blob(s); upload them first:${shown}${more}`, s.details, { cause: s });
}
