/**
 * The build queue's action cache check before it executes an action. The cache is an optimisation:
 * a miss (NOT_FOUND) or an unreachable cache means "execute", never a failed Execute.
 */
import type { ActionCache } from '../actioncache/action-cache.js';
import type { Digest } from '../digest/digest.js';
import { Code, hasCode, isAbortError } from '../errors/status-error.js';
import type { reapi } from '../proto/index.js';
import type { Logger } from '../util/logger.js';

/** The cached result of `actionDigest`, or undefined to execute it; rethrows only aborts. */
export async function lookupActionCache(actionCache: ActionCache, actionDigest: Digest, logger: Logger, signal?: AbortSignal): Promise<reapi.IActionResult | undefined> {
  try {
    return await actionCache.getActionResult(actionDigest, { signal });
  } catch (err) {
    if (hasCode(err, Code.NOT_FOUND)) return undefined;
    if (signal?.aborted || isAbortError(err)) throw err;
    logger.warn('Failed to look up the action cache; executing the action', { actionDigest: actionDigest.toString(), error: err });
    return undefined;
  }
}
