/**
 * Node.js filesystem errors as StatusErrors, with the code that says what the user must fix: a
 * missing path is NOT_FOUND, a full disk RESOURCE_EXHAUSTED, a file where a directory was expected
 * FAILED_PRECONDITION. Used where local files are read or written (Merkle trees, downloads), so the
 * CLI maps them to the right exit code.
 */
import { Code, StatusError, toStatusError } from './status-error.js';

export function fsStatusError(err: unknown): StatusError {
  if (err instanceof StatusError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const message = err instanceof Error ? err.message : String(err);
  const as = (c: Code) => new StatusError(c, message, [], { cause: err });
  switch (code) {
    case 'ENOENT':
      return as(Code.NOT_FOUND);
    case 'EACCES':
    case 'EPERM':
      return as(Code.PERMISSION_DENIED);
    case 'ENOSPC':
    case 'EDQUOT':
      return as(Code.RESOURCE_EXHAUSTED);
    case 'ENOTDIR':
    case 'EISDIR':
    case 'EEXIST':
    case 'ELOOP':
      return as(Code.FAILED_PRECONDITION);
    default:
      return toStatusError(err);
  }
}
