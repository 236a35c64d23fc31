/**
 * Path rules shared by input materialisation and output collection. Everything an action names (an
 * entry of a Directory, a symlink target, a working directory, an output path) comes from a client
 * and is checked here before it touches the disk, so that no action can read or write outside the
 * directory it was given.
 */
import * as path from 'node:path';
import { StatusError } from '../errors/status-error.js';

/**
 * Rejects names that are not a single path component: empty, ".", "..", containing "/" or NUL.
 * REAPI requires Directory entry names to be plain components; anything else could address files
 * outside the directory being built.
 */
export function validateEntryName(name: string, where: string): void {
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
    throw StatusError.invalidArgument(`Invalid entry name ${JSON.stringify(name)} in ${where}: names must be single, non-empty path components`, [
      { field: where, description: `Invalid entry name ${JSON.stringify(name)}` },
    ]);
  }
}

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

/**
 * Checks a symlink target from an input tree. Targets are created as given, absolute or climbing out
 * of the input root (REAPI's `ALLOWED` strategy, which Capabilities advertise): the worker never
 * follows them (directories are created before symlinks, output parents are walked without
 * following, outputs are read with O_NOFOLLOW) and the action sees them inside its sandbox.
 */
export function validateSymlinkTarget(linkDir: string, name: string, target: string): void {
  const where = linkDir === '' ? name : `${linkDir}/${name}`;
  const bad = (why: string) =>
    StatusError.invalidArgument(`Invalid symlink ${JSON.stringify(where)} -> ${JSON.stringify(target)}: ${why}`, [
      { field: 'symlinks.target', description: why },
    ]);
  if (target === '') throw bad('the target is empty');
  if (target.includes('\0')) throw bad('the target contains a NUL character');
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
