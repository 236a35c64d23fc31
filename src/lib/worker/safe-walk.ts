/**
 * Walking an action's input root the way `openat(..., O_NOFOLLOW)` would: one component at a time,
 * relative to the root, never through a symlink. The worker runs as root and the tree may have been
 * shaped by a hostile client (input symlinks with any target) or a hostile action (a directory
 * swapped for a symlink to /etc): a lexical check of the path is not enough, the disk must be asked
 * about each component without following it.
 */
import { promises as fsp, type Stats } from 'node:fs';
import * as path from 'node:path';
import { StatusError } from '../errors/status-error.js';
import type { RunAs } from './sandbox-command.js';

function escapes(field: string, relative: string, where: string): StatusError {
  return StatusError.invalidArgument(`Invalid ${field} ${JSON.stringify(relative)}: ${JSON.stringify(where)} is a symlink, which the worker does not follow`, [
    { field, description: 'Path passes through a symlink' },
  ]);
}

/** lstat, with undefined for a path that does not exist (or whose parent is not a directory). */
async function lstatOrAbsent(p: string): Promise<Stats | undefined> {
  try {
    return await fsp.lstat(p);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}

/**
 * Makes `relative` (normalised, relative to `root`) a directory, creating missing components (owned
 * by `owner` when given, so that the action can write there) and refusing a component that is a
 * symlink or not a directory. INVALID_ARGUMENT names `field`.
 */
export async function ensureDirectory(root: string, relative: string, field: string, owner?: RunAs): Promise<void> {
  if (relative === '') return;
  let current = root;
  const done: string[] = [];
  for (const component of relative.split('/')) {
    current = path.join(current, component);
    done.push(component);
    const st = await lstatOrAbsent(current);
    if (!st) {
      await fsp.mkdir(current);
      if (owner) await fsp.chown(current, owner.uid, owner.gid);
      continue;
    }
    if (st.isSymbolicLink()) throw escapes(field, relative, done.join('/'));
    if (!st.isDirectory()) {
      throw StatusError.invalidArgument(`Invalid ${field} ${JSON.stringify(relative)}: ${JSON.stringify(done.join('/'))} is not a directory`, [
        { field, description: 'A path component is not a directory' },
      ]);
    }
  }
}

/**
 * Checks the parents of `relative` (the output itself may be anything) without following symlinks:
 * false when one is missing or not a directory (the output is then absent), INVALID_ARGUMENT when one
 * is a symlink (the action replaced a directory, or an input symlink sits on the path).
 */
export async function parentsAreDirectories(root: string, relative: string, field: string): Promise<boolean> {
  const components = relative.split('/');
  components.pop();
  let current = root;
  const done: string[] = [];
  for (const component of components) {
    current = path.join(current, component);
    done.push(component);
    const st = await lstatOrAbsent(current);
    if (!st || !st.isDirectory()) {
      if (st?.isSymbolicLink()) throw escapes(field, relative, done.join('/'));
      return false;
    }
  }
  return true;
}
