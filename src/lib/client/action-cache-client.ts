/**
 * The remote ActionCache: look up and record ActionResults by action digest. A miss is NOT_FOUND
 * (normal, not an error worth logging); transient failures are retried like every idempotent call.
 */
import type { Digest } from '../digest/digest.js';
import type { DigestFunction } from '../digest/digest-function.js';
import { wrapStatus } from '../errors/status-error.js';
import type { reapi } from '../proto/index.js';
import { actionCacheService } from '../proto/services.js';
import { type RemoteCallOptions, type RemoteConnection, instanceRequestFields } from './connection.js';
import { type ResolvedRetryOptions, type RetryOptions, resolveRetryOptions, withRetry } from './retry.js';

export interface ActionCacheClientOptions {
  instanceName?: string;
  digestFunction?: DigestFunction;
  retry?: RetryOptions;
}

export interface GetActionResultOptions extends RemoteCallOptions {
  inlineStdout?: boolean;
  inlineStderr?: boolean;
  inlineOutputFiles?: string[];
}

export class ActionCacheClient {
  readonly instanceName: string;
  private readonly digestFunction: DigestFunction;
  private readonly retry: ResolvedRetryOptions;

  constructor(
    readonly connection: RemoteConnection,
    opts: ActionCacheClientOptions = {},
  ) {
    this.instanceName = opts.instanceName ?? '';
    this.digestFunction = opts.digestFunction ?? 'sha256';
    this.retry = resolveRetryOptions(opts.retry);
  }

  /** The cached result of `actionDigest`; NOT_FOUND on a miss (message prefixed, code kept). */
  async getActionResult(actionDigest: Digest, opts: GetActionResultOptions = {}): Promise<reapi.IActionResult> {
    const request: reapi.IGetActionResultRequest = {
      ...this.requestBase(),
      actionDigest: actionDigest.toProto(),
      inlineStdout: opts.inlineStdout ?? false,
      inlineStderr: opts.inlineStderr ?? false,
      inlineOutputFiles: opts.inlineOutputFiles ?? [],
    };
    try {
      return await withRetry(this.retry, () => this.connection.unary(actionCacheService.getActionResult, request, opts), opts.signal);
    } catch (err) {
      throw wrapStatus(err, `Failed to get the action result of ${actionDigest}`);
    }
  }

  /** Records `result` for `actionDigest` and returns what the server stored. */
  async updateActionResult(actionDigest: Digest, result: reapi.IActionResult, opts: RemoteCallOptions = {}): Promise<reapi.IActionResult> {
    const request: reapi.IUpdateActionResultRequest = { ...this.requestBase(), actionDigest: actionDigest.toProto(), actionResult: result };
    try {
      return await withRetry(this.retry, () => this.connection.unary(actionCacheService.updateActionResult, request, opts), opts.signal);
    } catch (err) {
      throw wrapStatus(err, `Failed to update the action result of ${actionDigest}`);
    }
  }

  private requestBase(): { instanceName: string; digestFunction?: number } {
    return instanceRequestFields(this.instanceName, this.digestFunction);
  }

}
