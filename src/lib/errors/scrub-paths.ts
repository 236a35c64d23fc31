/**
 * Keeps server filesystem paths out of what a server sends. A Node.js filesystem error's message
 * names the path it failed on ("ENAMETOOLONG: name too long, mkdir '/var/cache/bzutil/cas/…'"), and
 * such messages travel up through wrapStatus prefixes. At the gRPC boundary the paths are replaced
 * by `<path>`: the paths the error chain carries (`path`, `dest`), and any quoted absolute path in
 * Node's errno message format.
 */

const PLACEHOLDER = '<path>';
/** Node's errno messages: `CODE: description, syscall 'path'` (optionally ` -> 'dest'`). */
const ERRNO_QUOTED_PATH = /(\b[A-Z][A-Z0-9_]+: [^,\n]*, [a-z_]+ )'[^']*'(?: -> '[^']*')?/g;

/** `message` with the paths of `err`'s cause chain and of errno-style text replaced by `<path>`. */
export function scrubPaths(message: string, err?: unknown): string {
  let out = message.replace(ERRNO_QUOTED_PATH, `$1'${PLACEHOLDER}'`);
  for (const path of chainPaths(err)) {
    if (path.length > 1) out = out.split(path).join(PLACEHOLDER);
  }
  return out;
}

/** The `path` and `dest` fields of errno errors along the cause chain (longest first). */
function chainPaths(err: unknown): string[] {
  const paths = new Set<string>();
  let cur: unknown = err;
  for (let depth = 0; depth < 8 && typeof cur === 'object' && cur !== null; depth++) {
    const e = cur as { path?: unknown; dest?: unknown; cause?: unknown };
    if (typeof e.path === 'string') paths.add(e.path);
    if (typeof e.dest === 'string') paths.add(e.dest);
    cur = e.cause;
  }
  return [...paths].sort((a, b) => b.length - a.length);
}
