/**
 * The remote ActionCache: look up and record ActionResults by action digest. A miss is NOT_FOUND
 * (normal, not an error worth logging); transient failures are retried like every idempotent call.
 */
import type { Digest } from '../digest/digest.js';
import { wrapStatus } from '../errors/status-error.js';
import type { reapi } from '../proto/index.js';
import { actionCacheService } from '../proto/services.js';
import type { RemoteCallOptions } from './connection.js';
import { withRetry } from './retry.js';
import { ServiceClient, type ServiceClientOptions } from './service-client.js';

export type ActionCacheClientOptions = ServiceClientOptions;

export interface GetActionResultOptions extends RemoteCallOptions {
  inlineStdout?: boolean;
  inlineStderr?: boolean;
  inlineOutputFiles?: string[];
}

export class ActionCacheClient extends ServiceClient {
  /** The cached result of `actionDigest`; NOT_FOUND on a miss (message prefixed, code kept). */
  async getActionResult(actionDigest: Digest, opts: GetActionResultOptions = {}): Promise<reapi.IActionResult> {
    const request: reapi.IGetActionResultRequest = {
      ...this.requestFields(),
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
    const request: reapi.IUpdateActionResultRequest = { ...this.requestFields(), actionDigest: actionDigest.toProto(), actionResult: result };
    try {
      return await withRetry(this.retry, () => this.connection.unary(actionCacheService.updateActionResult, request, opts), opts.signal);
    } catch (err) {
      throw wrapStatus(err, `Failed to update the action result of ${actionDigest}`);
    }
  }

}
