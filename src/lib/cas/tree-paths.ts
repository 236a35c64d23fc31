/**
 * The rules for names inside a REAPI tree, in one place for every side that builds or reads one
 * (the CLI's Merkle builder and materializer, the worker's input and output handling): entry names
 * are single path components, symlinks stay inside the tree, and entries sort by UTF-8 bytes.
 */
import { StatusError } from '../errors/status-error.js';

/** Compares strings by their UTF-8 bytes: the order REAPI requires for Directory entries (not UTF-16 code units). */
export function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

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
 * Checks that a symlink placed at `linkDir/<name>` (both relative to the tree, "" for the root)
 * pointing at `target` stays inside the tree when resolved lexically. Absolute targets are
 * refused: the worker's file system is not the client's.
 *
 * With `anywhere` only a non-empty, NUL-free target is required: the worker's input trees use
 * REAPI's `ALLOWED` strategy (which Capabilities advertise), creating targets as given, absolute or
 * climbing out of the input root. It never follows them (directories are created before symlinks,
 * output parents are walked without following, outputs are read with O_NOFOLLOW) and the action sees
 * them inside its sandbox.
 */
export function validateSymlinkTarget(linkDir: string, name: string, target: string, opts: { anywhere?: boolean } = {}): void {
  const where = linkDir === '' ? name : `${linkDir}/${name}`;
  const bad = (why: string) =>
    StatusError.invalidArgument(`Invalid symlink ${JSON.stringify(where)} -> ${JSON.stringify(target)}: ${why}`, [
      { field: 'symlinks.target', description: why },
    ]);
  if (target === '') throw bad('the target is empty');
  if (target.includes('\0')) throw bad('the target contains a NUL character');
  if (opts.anywhere) return;
  if (target.startsWith('/')) throw bad('absolute targets are not allowed');
  let depth = splitPath(linkDir).filter((s) => s !== '' && s !== '.').length;
  for (const seg of splitPath(target)) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (depth === 0) throw bad('the target escapes the tree');
      depth -= 1;
    } else {
      depth += 1;
    }
  }
}

function splitPath(p: string): string[] {
  return p === '' ? [] : p.split('/');
}
