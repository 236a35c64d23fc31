/**
 * The exit codes of every bzutil client command, so that scripts and CI can branch on them:
 *
 * | exit | meaning |
 * | --- | --- |
 * | 0 | success |
 * | 1 | the action failed: it exited non-zero or ended with an error status (with `--fail_on_nonzero`) |
 * | 2 | usage or bad local input: unknown or malformed flags, a malformed digest or address, a missing local file |
 * | 3 | the server refused or failed the request (INVALID_ARGUMENT, FAILED_PRECONDITION, INTERNAL, ...) |
 * | 4 | not found: an unknown operation, a blob or action result the server lacks, inputs missing from the CAS |
 * | 5 | the server could not be reached or did not answer in time (UNAVAILABLE, DEADLINE_EXCEEDED) |
 *
 * Before 0.2.0, 3 covered NOT_FOUND and 4 meant unreachable (see CHANGELOG.md).
 */
import { Code, StatusError, toStatusError } from '../errors/status-error.js';

export const EXIT_ACTION_FAILED = 1;
export const EXIT_USAGE = 2;
export const EXIT_SERVER_ERROR = 3;
export const EXIT_NOT_FOUND = 4;
export const EXIT_UNREACHABLE = 5;

/** Marks an error as a usage error (exit code 2): bad input detected before any remote call. */
export function usageError(message: string, cause?: unknown): StatusError {
  const err = new StatusError(Code.INVALID_ARGUMENT, message, [], { cause });
  Object.defineProperty(err, 'usage', { value: true });
  return err;
}

const PRECONDITION_FAILURE_TYPE = 'type.googleapis.com/google.rpc.PreconditionFailure';

/** True for errors marked as usage errors, and for oclif's parse errors (which exit 2). */
export function isUsage(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  if ((err as { usage?: unknown }).usage === true) return true;
  const oclif = (err as { oclif?: { exit?: unknown } }).oclif;
  return oclif !== undefined && oclif.exit === 2;
}

/** True when `err` or one of its causes is a Node system error (ENOENT, EACCES, ...): a local problem. */
export function isLocalSystemError(err: unknown): boolean {
  let e: unknown = err;
  for (let depth = 0; depth < 10 && typeof e === 'object' && e !== null; depth++) {
    const { syscall, code } = e as { syscall?: unknown; code?: unknown };
    if (typeof syscall === 'string' && typeof code === 'string') return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

/** The exit code for an error, following the table above. */
export function exitCodeFor(err: unknown): number {
  if (isUsage(err)) return EXIT_USAGE;
  if ((err as { actionFailed?: unknown } | undefined)?.actionFailed === true) return EXIT_ACTION_FAILED;
  const oclif = (err as { oclif?: { exit?: unknown } } | undefined)?.oclif;
  if (!(err instanceof StatusError) && typeof oclif?.exit === 'number') return oclif.exit;
  if (isLocalSystemError(err)) return EXIT_USAGE;
  const s = toStatusError(err);
  switch (s.code) {
    case Code.NOT_FOUND:
      return EXIT_NOT_FOUND;
    case Code.FAILED_PRECONDITION:
      // Missing inputs: the CAS lacks blobs the request needs.
      return s.details.some((d) => d.typeUrl === PRECONDITION_FAILURE_TYPE) && s.preconditionViolations().some((v) => v.type === 'MISSING')
        ? EXIT_NOT_FOUND
        : EXIT_SERVER_ERROR;
    case Code.UNAVAILABLE:
    case Code.DEADLINE_EXCEEDED:
      return EXIT_UNREACHABLE;
    default:
      return EXIT_SERVER_ERROR;
  }
}
