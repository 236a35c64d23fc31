/**
 * Checks of local inputs named on the command line, so that a missing file or directory is a usage
 * error (exit 2) with a plain message, not a server-side-looking failure halfway through.
 */
import { stat } from 'node:fs/promises';
import { usageError } from './exit-codes.js';

/** Throws a usage error unless `path` is an existing directory. `what` names it: "the directory to upload". */
export async function requireLocalDirectory(path: string, what: string): Promise<void> {
  let isDirectory: boolean;
  try {
    isDirectory = (await stat(path)).isDirectory();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw usageError(`Failed to read ${what} ${JSON.stringify(path)}: ${code === 'ENOENT' ? 'it does not exist' : (err as Error).message}`, err);
  }
  if (!isDirectory) throw usageError(`Failed to read ${what} ${JSON.stringify(path)}: it is not a directory`);
}
