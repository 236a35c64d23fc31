/**
 * Path rules shared by input materialisation and output collection. Everything an action names (an
 * entry of a Directory, a symlink target, a working directory, an output path) comes from a client
 * and is checked here before it touches the disk, so that no action can read or write outside the
 * directory it was given.
 */
import * as path from 'node:path';
import { StatusError } from '../errors/status-error.js';

// Entry names and symlink targets follow the tree-wide rules of lib/cas (the worker's input trees
// with `anywhere` targets, REAPI's ALLOWED strategy).
export { validateEntryName, validateSymlinkTarget } from '../cas/tree-paths.js';

/**
 * Normalises a client-given relative path (e.g. an output path relative to the working directory,
 * itself relative to the input root) to a path relative to the input root, with "/" separators and
 * no ".", ".." or empty segments. INVALID_ARGUMENT if it is absolute, has a trailing slash, or leaves
 * the input root; `field` names the offending Command field.
 */
export function resolveRelativePath(base: string, relative: string, field: string, opts: { allowEmpty?: boolean } = {}): string {
  const bad = (why: string) =>
    StatusError.invalidArgument(`Invalid ${field} ${JSON.stringify(relative)}: ${why}`, [{ field, description: why }]);
  if (relative.includes('\0')) throw bad('it contains a NUL character');
  if (relative.startsWith('/')) throw bad('it must be relative');
  if (relative === '' && !opts.allowEmpty) throw bad('it is empty');
  if (relative.endsWith('/')) throw bad('it must not end with "/"');
  const segments: string[] = [];
  for (const seg of [...splitPath(base), ...splitPath(relative)]) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (segments.length === 0) throw bad('it escapes the input root');
      segments.pop();
    } else {
      segments.push(seg);
    }
  }
  if (segments.length === 0 && !opts.allowEmpty) throw bad('it names the input root itself');
  return segments.join('/');
}

/** Joins a root-relative "/"-separated path onto an absolute directory. */
export function toAbsolute(root: string, relative: string): string {
  return relative === '' ? root : path.join(root, ...relative.split('/'));
}

/** True when `candidate` (absolute, normalised) is `root` or lies below it. */
export function isInside(root: string, candidate: string): boolean {
  const rel = path.relative(root, candidate);
  return rel === '' || (!rel.startsWith('..' + path.sep) && rel !== '..' && !path.isAbsolute(rel));
}

function splitPath(p: string): string[] {
  return p === '' ? [] : p.split('/');
}
