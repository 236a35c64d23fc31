import { promises as fsp } from 'node:fs';
import * as path from 'node:path';

/**
 * Removes a directory tree an action has been let loose in: it may have made directories read-only,
 * which rm refuses to empty, so permissions are restored and the removal retried.
 */
export async function removeTree(directory: string): Promise<void> {
  try {
    await fsp.rm(directory, { recursive: true, force: true });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EACCES' && code !== 'EPERM' && code !== 'ENOTEMPTY') throw err;
    await makeDirectoriesWritable(directory);
    await fsp.rm(directory, { recursive: true, force: true });
  }
}

async function makeDirectoriesWritable(directory: string): Promise<void> {
  // Iterative, so that deep trees cannot exhaust the stack.
  const stack = [directory];
  while (stack.length > 0) {
    const dir = stack.pop()!;
    await fsp.chmod(dir, 0o700).catch(() => {});
    const entries = await fsp.readdir(dir, { withFileTypes: true }).catch(() => []);
    for (const e of entries) if (e.isDirectory()) stack.push(path.join(dir, e.name));
  }
}
