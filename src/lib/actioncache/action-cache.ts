/**
 * The action cache maps an action digest to the ActionResult of running it. It is its own interface
 * (rather than raw blob access) so that decorators such as CompletenessCheckingActionCache can reason
 * about results, and so that the AC service, the scheduler and the worker share one vocabulary.
 */
import type { Digest } from '../digest/digest.js';
import { StatusError, wrapStatus } from '../errors/status-error.js';
import { reapi } from '../proto/index.js';
import type { BlobStore, CallOptions } from '../blobstore/blob-store.js';

export interface ActionCache {
  /** The cached result of the action. NOT_FOUND on a miss (a normal outcome, not a failure). */
  getActionResult(actionDigest: Digest, opts?: CallOptions): Promise<reapi.IActionResult>;
  /** Records the result of the action, replacing any earlier one. */
  updateActionResult(actionDigest: Digest, result: reapi.IActionResult, opts?: CallOptions): Promise<void>;
}

/**
 * Stores ActionResults, encoded, in a blob store under the action digest, the way Buildbarn stores
 * its AC in the same BlobAccess kinds as its CAS. The store must not verify content against keys
 * (no VerifyingBlobStore here): the key describes the Action, not the stored result.
 */
export class BlobStoreActionCache implements ActionCache {
  /** ActionResults larger than this are refused on read, so a corrupt entry cannot exhaust memory. */
  static readonly MAX_ACTION_RESULT_BYTES = 16 * 1024 * 1024;

  constructor(private readonly store: BlobStore) {}

  async getActionResult(actionDigest: Digest, opts: CallOptions = {}): Promise<reapi.IActionResult> {
    let bytes: Uint8Array;
    try {
      bytes = await this.store.get(actionDigest, { signal: opts.signal, maxBytes: BlobStoreActionCache.MAX_ACTION_RESULT_BYTES });
    } catch (err) {
      throw wrapStatus(err, `Failed to get action result for action ${actionDigest.toString()}`);
    }
    try {
      return reapi.ActionResult.decode(bytes);
    } catch (err) {
      throw StatusError.internal(
        `Failed to decode action result stored for action ${actionDigest.toString()}: ${err instanceof Error ? err.message : String(err)}`,
        err,
      );
    }
  }

  async updateActionResult(actionDigest: Digest, result: reapi.IActionResult, opts: CallOptions = {}): Promise<void> {
    const bytes = reapi.ActionResult.encode(result).finish();
    try {
      await this.store.put(actionDigest, bytes, opts);
    } catch (err) {
      throw wrapStatus(err, `Failed to store action result for action ${actionDigest.toString()}`);
    }
  }
}
