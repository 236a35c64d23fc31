/**
 * Instance names, checked in one place. A request's instance name scopes its operations and action
 * cache (and, by config, its CAS), appears in resource names, and becomes a directory name in disk
 * stores (blob-directory-layout.ts), so it must not be able to climb out of a directory, carry bytes
 * a file system treats specially, or grow without bound. Every Digest validates its instance name
 * here; services that take an instance name without a digest call `validateInstanceName` directly.
 */
import { StatusError } from '../errors/status-error.js';

/** Longest instance name accepted, in UTF-8 bytes. */
export const MAX_INSTANCE_NAME_BYTES = 255;

/** Path segments that may not appear inside an instance name (they delimit resource names). */
export const RESERVED_SEGMENTS: ReadonlySet<string> = new Set(['blobs', 'uploads', 'actions', 'actionResults', 'operations', 'capabilities', 'compressed-blobs']);

/** Control characters (NUL included) and the backslash, a path separator on some file systems. */
const FORBIDDEN_CHARACTER = /[\u0000-\u001f\u007f\\]/;

/**
 * INVALID_ARGUMENT (BadRequest violation on `field`) unless `instanceName` is empty or a `/`-separated
 * list of non-empty segments, none `.`, `..` or reserved, of at most 255 bytes without control
 * characters or backslashes. The message quotes at most the name's first 64 characters.
 */
export function validateInstanceName(instanceName: string, field = 'instance_name'): void {
  if (instanceName === '') return;
  const bytes = instanceName.length > MAX_INSTANCE_NAME_BYTES / 3 ? Buffer.byteLength(instanceName) : instanceName.length;
  if (bytes > MAX_INSTANCE_NAME_BYTES) throw bad(field, instanceName, `is ${bytes} bytes long; the maximum is ${MAX_INSTANCE_NAME_BYTES}`);
  if (FORBIDDEN_CHARACTER.test(instanceName)) throw bad(field, instanceName, 'contains a control character or a backslash');
  for (const s of instanceName.split('/')) {
    if (s === '' || s === '.' || s === '..') throw bad(field, instanceName, 'has an empty, "." or ".." segment');
    if (RESERVED_SEGMENTS.has(s)) throw bad(field, instanceName, `contains reserved segment ${JSON.stringify(s)}`);
  }
}

/** The name for messages: quoted, and cut after 64 characters. */
export function quoteInstanceName(instanceName: string): string {
  return instanceName.length > 64 ? `${JSON.stringify(instanceName.slice(0, 64))}...` : JSON.stringify(instanceName);
}

function bad(field: string, instanceName: string, why: string): StatusError {
  const description = `Instance name ${quoteInstanceName(instanceName)} ${why}`;
  return StatusError.invalidArgument(description, [{ field, description }]);
}
