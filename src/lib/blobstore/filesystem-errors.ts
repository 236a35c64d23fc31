/** The errors FilesystemBlobStore answers with: what a failed file operation becomes as a gRPC status. */
import type { Digest } from '../digest/digest.js';
import { StatusError, isAbortError } from '../errors/status-error.js';

export function notFound(digest: Digest): StatusError {
  return StatusError.notFound(`Blob ${digest.toString()} not found`);
}

/** Keeps StatusErrors and AbortErrors; maps a full disk to RESOURCE_EXHAUSTED and anything else to INTERNAL. */
export function fsError(err: unknown, step: string): unknown {
  if (err instanceof StatusError || isAbortError(err)) return err;
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') return StatusError.resourceExhausted(`${step}: no space left on device (${code})`);
  const message = err instanceof Error ? err.message : String(err);
  return StatusError.internal(`${step}: ${message}`, err);
}
