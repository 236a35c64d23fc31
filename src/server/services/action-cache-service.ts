/**
 * REAPI ActionCache as a thin adapter over an ActionCache: validates the action digest, asks the
 * cache, and on reads inlines the small blobs the client asked for (stdout, stderr, chosen output
 * files) as long as the response stays comfortably under Bazel's 4 MiB message limit, which saves
 * Bazel one round trip per blob on a cache hit. A miss is NOT_FOUND, as the REAPI specifies.
 */
import type * as grpc from '@grpc/grpc-js';
import type { ActionCache } from '../../lib/actioncache/action-cache.js';
import type { BlobStore } from '../../lib/blobstore/blob-store.js';
import { Digest } from '../../lib/digest/digest.js';
import { digestFunctionToProto } from '../../lib/digest/digest-function.js';
import { Code, StatusError } from '../../lib/errors/status-error.js';
import { reapi } from '../../lib/proto/index.js';
import type { Logger } from '../../lib/util/logger.js';
import type { CallContext, HandlerFactory } from '../grpc/handlers.js';
import type { ResolvedCapabilitiesConfig } from './capabilities-config.js';
import { digestFromRequest } from './request-fields.js';

/** GetActionResult responses grow by inlining only up to this size (leaving headroom under 4 MiB). */
export const MAX_INLINED_ACTION_RESULT_BYTES = 3.5 * 1024 * 1024;
/** Bytes a bytes field costs besides its content: tag and length varint, generously. */
const FIELD_OVERHEAD_BYTES = 16;

export interface ActionCacheServiceDeps {
  actionCache: ActionCache;
  /** Where inlined stdout, stderr and output files are read from. */
  contentAddressableStorage: BlobStore;
  capabilities: ResolvedCapabilitiesConfig;
  logger: Logger;
}

/** The ActionCache service implementation for grpc-js. */
export function createActionCacheService(handlers: HandlerFactory, deps: ActionCacheServiceDeps): grpc.UntypedServiceImplementation {
  const served = deps.capabilities.digestFunctions;
  const ac = deps.actionCache;
  const cas = deps.contentAddressableStorage;

  return {
    getActionResult: handlers.unary<reapi.GetActionResultRequest, reapi.IActionResult>('ActionCache.GetActionResult', async (request, ctx) => {
      const actionDigest = digestFromRequest(served, request.instanceName, request.digestFunction, request.actionDigest, 'action_digest');
      // NOT_FOUND (a miss, or a hit whose outputs are gone) goes to the client unchanged.
      const result = await ac.getActionResult(actionDigest, { signal: ctx.signal });
      if (!request.inlineStdout && !request.inlineStderr && request.inlineOutputFiles.length === 0) return result;
      return inline(result, actionDigest, request, ctx);
    }),

    updateActionResult: handlers.unary<reapi.UpdateActionResultRequest, reapi.IActionResult>('ActionCache.UpdateActionResult', async (request, ctx) => {
      if (!deps.capabilities.actionCacheUpdateEnabled) {
        throw new StatusError(
          Code.PERMISSION_DENIED,
          'Failed to update action result: this server does not accept action cache updates from clients (update_enabled is false)',
        );
      }
      const actionDigest = digestFromRequest(served, request.instanceName, request.digestFunction, request.actionDigest, 'action_digest');
      const result = request.actionResult;
      if (!result) {
        throw StatusError.invalidArgument('Failed to update action result: action_result is missing', [
          { field: 'action_result', description: 'Action result is missing' },
        ]);
      }
      validateActionResultDigests(result, actionDigest);
      await ac.updateActionResult(actionDigest, result, { signal: ctx.signal });
      return result;
    }),
  };

  /** Copies `result` with the requested blobs inlined, in request order, as long as they fit. */
  async function inline(
    result: reapi.IActionResult,
    actionDigest: Digest,
    request: reapi.GetActionResultRequest,
    ctx: CallContext,
  ): Promise<reapi.IActionResult> {
    const fnValue = digestFunctionToProto(actionDigest.digestFunction);
    let budgetBytes = MAX_INLINED_ACTION_RESULT_BYTES - reapi.ActionResult.encode(result).finish().length;
    const fetch = async (proto: reapi.IDigest | null | undefined, field: string): Promise<Uint8Array | undefined> => {
      if (!proto) return undefined;
      let digest: Digest;
      try {
        digest = Digest.fromProto(actionDigest.instanceName, fnValue, proto, field);
      } catch {
        return undefined;
      }
      if (digest.sizeBytes === 0 || digest.sizeBytes + FIELD_OVERHEAD_BYTES > budgetBytes) return undefined;
      try {
        const bytes = await cas.get(digest, { signal: ctx.signal, maxBytes: digest.sizeBytes });
        budgetBytes -= bytes.length + FIELD_OVERHEAD_BYTES;
        return bytes;
      } catch (err) {
        if (ctx.signal.aborted) throw err;
        // Inlining is a hint: the client still has the digest and fetches the blob itself.
        deps.logger.debug('Not inlining a blob of an action result', { field, digest: digest.toString(), error: (err as Error).message });
        return undefined;
      }
    };

    const out: reapi.IActionResult = { ...result };
    if (request.inlineStdout && !result.stdoutRaw?.length) {
      const bytes = await fetch(result.stdoutDigest, 'stdout_digest');
      if (bytes) out.stdoutRaw = bytes;
    }
    if (request.inlineStderr && !result.stderrRaw?.length) {
      const bytes = await fetch(result.stderrDigest, 'stderr_digest');
      if (bytes) out.stderrRaw = bytes;
    }
    if (request.inlineOutputFiles.length > 0 && result.outputFiles?.length) {
      const wanted = new Set(request.inlineOutputFiles);
      const files: reapi.IOutputFile[] = [];
      for (const [i, file] of result.outputFiles.entries()) {
        if (wanted.has(file.path ?? '') && !file.contents?.length) {
          const bytes = await fetch(file.digest, `output_files[${i}].digest`);
          files.push(bytes ? { ...file, contents: bytes } : file);
        } else {
          files.push(file);
        }
      }
      out.outputFiles = files;
    }
    return out;
  }
}

/** INVALID_ARGUMENT (naming the field) if any digest in an ActionResult is malformed. */
function validateActionResultDigests(result: reapi.IActionResult, actionDigest: Digest): void {
  const fnValue = digestFunctionToProto(actionDigest.digestFunction);
  const check = (d: reapi.IDigest | null | undefined, field: string, optional: boolean) => {
    if (!d && optional) return;
    Digest.fromProto(actionDigest.instanceName, fnValue, d, `action_result.${field}`);
  };
  (result.outputFiles ?? []).forEach((f, i) => check(f.digest, `output_files[${i}].digest`, false));
  (result.outputDirectories ?? []).forEach((d, i) => check(d.treeDigest, `output_directories[${i}].tree_digest`, false));
  check(result.stdoutDigest, 'stdout_digest', true);
  check(result.stderrDigest, 'stderr_digest', true);
}
