/**
 * Materialises an ActionResult locally for `bzutil get_outputs`: stdout and stderr as files, every
 * output file with its executable bit, every output directory from its Tree, every output symlink.
 *
 * Everything the result names comes from a server and is checked before anything is written: output
 * paths must be relative, normalised and inside the destination, must not overlap each other or the
 * `stdout`/`stderr` files. Files stream through the CAS client (hash-verified, constant memory,
 * small ones batched). Symlinks are created last and verbatim (an action may legitimately produce a
 * link to an absolute path); since nothing is written after them, nothing is written through them.
 */
import { chmod, lstat, mkdir, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { type MaterializeResult, materializeTree } from '../cas/merkle.js';
import type { CasClient, DownloadFileItem } from '../client/cas-client.js';
import { Digest } from '../digest/digest.js';
import { digestFunctionToProto } from '../digest/digest-function.js';
import { fsStatusError } from '../errors/fs-status.js';
import { StatusError, wrapStatus } from '../errors/status-error.js';
import { encodeCanonical } from '../proto/canonical.js';
import { reapi } from '../proto/index.js';

/** Names of the stream files inside the destination. */
export const STDOUT_FILE = 'stdout';
export const STDERR_FILE = 'stderr';

export interface DownloadedOutputs {
  /** Absolute or as-given paths of what was written. */
  stdout?: string;
  stderr?: string;
  files: { path: string; digest: string; isExecutable: boolean }[];
  directories: ({ path: string; treeDigest: string } & MaterializeResult)[];
  symlinks: { path: string; target: string }[];
}

/**
 * Checks an output path from an ActionResult: relative, "/"-separated, no empty, "." or ".."
 * segments. INVALID_ARGUMENT naming the field otherwise: a server sent something no action can
 * produce.
 */
export function validateOutputPath(path: string, field: string): void {
  const bad = (why: string) => StatusError.invalidArgument(`Invalid ${field} ${JSON.stringify(path)} in the action result: ${why}`, [{ field, description: why }]);
  if (path === '') throw bad('it is empty');
  if (path.includes('\0')) throw bad('it contains a NUL character');
  if (path.startsWith('/')) throw bad('it must be relative');
  for (const segment of path.split('/')) {
    if (segment === '' || segment === '.' || segment === '..') throw bad('it must be a normalised path inside the output directory');
  }
}

/**
 * INVALID_ARGUMENT when two entries would be written at the same path or one inside the other
 * (a file `a` and a file `a/b`), including the stream files `stdout` and `stderr`.
 */
export function checkNoOverlaps(entries: readonly { path: string; what: string }[]): void {
  const byPath = new Map<string, { path: string; what: string }>();
  const fail = (a: { path: string; what: string }, b: { path: string; what: string }) =>
    StatusError.invalidArgument(`Failed to download the outputs: ${a.what} ${JSON.stringify(a.path)} and ${b.what} ${JSON.stringify(b.path)} would overlap`);
  for (const entry of entries) {
    const same = byPath.get(entry.path);
    if (same) throw fail(same, entry);
    byPath.set(entry.path, entry);
  }
  // Every ancestor of every path: an entry there would contain another one.
  for (const entry of entries) {
    for (let i = entry.path.indexOf('/'); i > 0; i = entry.path.indexOf('/', i + 1)) {
      const ancestor = byPath.get(entry.path.slice(0, i));
      if (ancestor) throw fail(ancestor, entry);
    }
  }
}

/** True when `dir` does not exist or is an empty directory. */
export async function isEmptyOrAbsent(dir: string): Promise<boolean> {
  try {
    return (await readdir(dir)).length === 0;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
    throw wrapStatus(fsStatusError(err), `Failed to read ${JSON.stringify(dir)}`);
  }
}

export interface DownloadOutputsOptions {
  /** Remove whatever already exists at an output path (file, directory or link) before writing it. @default false */
  replace?: boolean;
}

/** Downloads every output of `result` into `destDir` (created if needed). */
export async function downloadActionOutputs(cas: CasClient, result: reapi.IActionResult, destDir: string, opts: DownloadOutputsOptions = {}): Promise<DownloadedOutputs> {
  const fn = digestFunctionToProto(cas.digestFunction);
  const toDigest = (d: reapi.IDigest | null | undefined, field: string) => Digest.fromProto(cas.instanceName, fn, d, field);

  // Validate everything first: a bad entry must not leave half the outputs written.
  const files = (result.outputFiles ?? []).map((f) => {
    validateOutputPath(f.path ?? '', 'output_files.path');
    return { path: f.path!, digest: toDigest(f.digest, 'output_files.digest'), isExecutable: f.isExecutable ?? false, contents: f.contents };
  });
  const directories = (result.outputDirectories ?? []).map((d) => {
    validateOutputPath(d.path ?? '', 'output_directories.path');
    return { path: d.path!, treeDigest: toDigest(d.treeDigest, 'output_directories.tree_digest') };
  });
  const symlinkByPath = new Map<string, string>();
  for (const s of [...(result.outputSymlinks ?? []), ...(result.outputFileSymlinks ?? []), ...(result.outputDirectorySymlinks ?? [])]) {
    validateOutputPath(s.path ?? '', 'output_symlinks.path');
    if (!s.target || s.target.includes('\0')) throw StatusError.invalidArgument(`Invalid target ${JSON.stringify(s.target ?? '')} of output symlink ${JSON.stringify(s.path)}`);
    if (!symlinkByPath.has(s.path!)) symlinkByPath.set(s.path!, s.target);
  }
  const symlinks = [...symlinkByPath].map(([path, target]) => ({ path, target }));
  const stdoutDigest = result.stdoutDigest?.hash ? toDigest(result.stdoutDigest, 'stdout_digest') : undefined;
  const stderrDigest = result.stderrDigest?.hash ? toDigest(result.stderrDigest, 'stderr_digest') : undefined;
  const hasStdout = stdoutDigest !== undefined || (result.stdoutRaw?.length ?? 0) > 0;
  const hasStderr = stderrDigest !== undefined || (result.stderrRaw?.length ?? 0) > 0;
  checkNoOverlaps([
    ...(hasStdout ? [{ path: STDOUT_FILE, what: 'the stdout file' }] : []),
    ...(hasStderr ? [{ path: STDERR_FILE, what: 'the stderr file' }] : []),
    ...files.map((f) => ({ path: f.path, what: 'output file' })),
    ...directories.map((d) => ({ path: d.path, what: 'output directory' })),
    ...symlinks.map((s) => ({ path: s.path, what: 'output symlink' })),
  ]);

  await mkdir(destDir, { recursive: true }).catch((err) => {
    throw wrapStatus(fsStatusError(err), `Failed to create ${JSON.stringify(destDir)}`);
  });
  const out: DownloadedOutputs = { files: [], directories: [], symlinks: [] };
  const local = (p: string) => join(destDir, ...p.split('/'));
  if (opts.replace) {
    const targets = [...(hasStdout ? [STDOUT_FILE] : []), ...(hasStderr ? [STDERR_FILE] : []), ...files.map((f) => f.path), ...directories.map((d) => d.path), ...symlinks.map((s) => s.path)];
    for (const t of targets) {
      await rm(local(t), { recursive: true, force: true }).catch((err) => {
        throw wrapStatus(fsStatusError(err), `Failed to replace ${JSON.stringify(local(t))}`);
      });
    }
  }

  // Streams and files: inline bytes are written as they are, the rest in one batched download.
  const fetches: DownloadFileItem[] = [];
  const writeInline = async (path: string, data: Uint8Array, isExecutable: boolean) => {
    try {
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, data, { mode: isExecutable ? 0o755 : 0o644 });
      await chmod(path, isExecutable ? 0o755 : 0o644);
    } catch (err) {
      throw wrapStatus(fsStatusError(err), `Failed to write ${JSON.stringify(path)}`);
    }
  };
  const stream = async (digest: Digest | undefined, raw: Uint8Array | null | undefined, name: string): Promise<string | undefined> => {
    const path = join(destDir, name);
    if (raw && raw.length > 0) await writeInline(path, raw, false);
    else if (digest) fetches.push({ digest, path, isExecutable: false });
    else return undefined;
    return path;
  };
  const stdoutPath = await stream(stdoutDigest, result.stdoutRaw, STDOUT_FILE);
  const stderrPath = await stream(stderrDigest, result.stderrRaw, STDERR_FILE);
  if (stdoutPath) out.stdout = stdoutPath;
  if (stderrPath) out.stderr = stderrPath;
  for (const f of files) {
    const path = local(f.path);
    if (f.contents && f.contents.length > 0) await writeInline(path, f.contents, f.isExecutable);
    else fetches.push({ digest: f.digest, path, isExecutable: f.isExecutable });
    out.files.push({ path, digest: f.digest.toString(), isExecutable: f.isExecutable });
  }
  if (fetches.length > 0) {
    for (const dir of new Set(fetches.map((f) => dirname(f.path)))) await mkdir(dir, { recursive: true });
    await cas.downloadToFiles(fetches).catch((err) => {
      throw wrapStatus(err, 'Failed to download the output files');
    });
  }

  for (const d of directories) {
    const path = local(d.path);
    const counts = await downloadOutputDirectory(cas, d.treeDigest, path).catch((err) => {
      throw wrapStatus(err, `Failed to download output directory ${JSON.stringify(d.path)}`);
    });
    out.directories.push({ path, treeDigest: d.treeDigest.toString(), ...counts });
  }

  for (const s of symlinks) {
    const path = local(s.path);
    try {
      await mkdir(dirname(path), { recursive: true });
      await symlink(s.target, path);
    } catch (err) {
      throw wrapStatus(fsStatusError(err), `Failed to create output symlink ${JSON.stringify(path)}`);
    }
    out.symlinks.push({ path, target: s.target });
  }
  return out;
}

/**
 * Materialises an output directory from its Tree message. The Tree lists Directories without their
 * digests, so each is re-encoded canonically to find it again; one stored non-canonically is fetched
 * by digest from the CAS instead.
 */
export async function downloadOutputDirectory(cas: CasClient, treeDigest: Digest, destDir: string): Promise<MaterializeResult> {
  let tree: reapi.Tree;
  try {
    tree = reapi.Tree.decode(await cas.readBlob(treeDigest));
  } catch (err) {
    if (err instanceof StatusError) throw err;
    throw StatusError.invalidArgument(`Blob ${treeDigest} is not a Tree: ${(err as Error).message}`);
  }
  const digestOf = (dir: reapi.IDirectory) =>
    Digest.ofBytes(encodeCanonical(reapi.Directory, dir), { instanceName: treeDigest.instanceName, digestFunction: treeDigest.digestFunction });
  const root = tree.root ?? {};
  const rootDigest = digestOf(root);
  const byKey = new Map<string, reapi.IDirectory>([[rootDigest.key, root]]);
  for (const child of tree.children ?? []) byKey.set(digestOf(child).key, child);
  // Refuse to merge into something already there (materializeTree would write beside it).
  const existing = await lstat(destDir).catch(() => undefined);
  if (existing) throw StatusError.alreadyExists(`Failed to create ${JSON.stringify(destDir)}: it already exists`);
  return materializeTree(
    {
      getDirectory: async (digest) => {
        const known = byKey.get(digest.key);
        if (known) return known;
        return reapi.Directory.decode(await cas.readBlob(digest));
      },
      downloadFile: (digest, path, isExecutable) => cas.downloadToFile(digest, path, { isExecutable }),
      downloadFiles: (items) => cas.downloadToFiles(items),
    },
    rootDigest,
    destDir,
  );
}
