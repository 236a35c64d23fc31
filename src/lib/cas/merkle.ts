/**
 * Directory trees as REAPI Merkle trees, in both directions.
 *
 * `buildDirectoryTree` turns a local directory into canonical `Directory` messages, the form input
 * roots take in the CAS: entries sorted by the UTF-8 bytes of their names (not JS string order),
 * executables from the owner-execute bit, symlinks kept as SymlinkNodes with their literal target,
 * empty directories kept, and every message encoded canonically so that the same tree hashes to the
 * same root digest on any machine and in any filesystem order. Files are hashed as streams with
 * bounded concurrency, so memory does not grow with file size or count of open files.
 *
 * `materializeTree` is the reverse (input roots on a worker, `download --tree`): it refuses entry
 * names and symlink targets that would write outside the destination.
 */
import { createReadStream } from 'node:fs';
import { lstat, mkdir, readdir, readlink, realpath, stat, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import fg from 'fast-glob';
import { Digest } from '../digest/digest.js';
import { type DigestFunction, digestFunctionToProto, hashStream } from '../digest/digest-function.js';
import { StatusError, wrapStatus } from '../errors/status-error.js';
import { fsStatusError } from '../errors/fs-status.js';
import { encodeWithDigest } from '../digest/encode-with-digest.js';
import { reapi } from '../proto/index.js';
import { createLimiter, mapConcurrent } from '../util/concurrency.js';
import { compareUtf8, validateEntryName, validateSymlinkTarget } from './tree-paths.js';

export interface BuildDirectoryTreeOptions {
  /** fast-glob patterns relative to the root; when given, only matching files (and their parents) are included. */
  globs?: readonly string[];
  /** @default 'sha256' */
  digestFunction?: DigestFunction;
  /** @default '' */
  instanceName?: string;
  /** Store what symlinks point to instead of the links themselves. @default false */
  followSymlinks?: boolean;
  /** Files hashed at once. @default 8 */
  concurrency?: number;
  /** Called after each file is hashed, for progress reporting. */
  onFileHashed?: (file: MerkleFile) => void;
}

/** One Directory message of a tree, with its canonical encoding. */
export interface MerkleDirectory {
  digest: Digest;
  bytes: Uint8Array;
  message: reapi.IDirectory;
}

/** One regular file of a tree. */
export interface MerkleFile {
  /** Path relative to the root, with `/` separators. */
  path: string;
  absolutePath: string;
  digest: Digest;
  isExecutable: boolean;
}

export interface DirectoryTree {
  rootDigest: Digest;
  root: MerkleDirectory;
  /** Every distinct Directory of the tree (the root included), by `Digest.key`. */
  directories: Map<string, MerkleDirectory>;
  /** Every regular file, in walk order; the same content may appear under several paths. */
  files: MerkleFile[];
  symlinkCount: number;
}

/** Builds the Merkle tree of `rootDir`. NOT_FOUND if it does not exist, INVALID_ARGUMENT for unstorable entries. */
export async function buildDirectoryTree(rootDir: string, opts: BuildDirectoryTreeOptions = {}): Promise<DirectoryTree> {
  const digestOpts = { instanceName: opts.instanceName ?? '', digestFunction: opts.digestFunction ?? 'sha256' };
  const followSymlinks = opts.followSymlinks ?? false;
  const hashLimit = createLimiter(opts.concurrency ?? 8);
  const directories = new Map<string, MerkleDirectory>();
  const files: MerkleFile[] = [];
  let symlinkCount = 0;

  const rootStat = await stat(rootDir).catch((err) => {
    throw wrapStatus(fsStatusError(err), `Failed to read directory ${JSON.stringify(rootDir)}`);
  });
  if (!rootStat.isDirectory()) throw StatusError.invalidArgument(`Failed to build a tree: ${JSON.stringify(rootDir)} is not a directory`);

  const matched = opts.globs && opts.globs.length > 0
    ? new Set(await fg([...opts.globs], { cwd: rootDir, dot: true, onlyFiles: false, followSymbolicLinks: followSymlinks }))
    : undefined;

  const hashFile = (absolutePath: string, path: string, mode: number): Promise<MerkleFile> =>
    hashLimit(async () => {
      const { hash, sizeBytes } = await hashStream(digestOpts.digestFunction, createReadStream(absolutePath)).catch((err) => {
        throw wrapStatus(fsStatusError(err), `Failed to hash file ${JSON.stringify(absolutePath)}`);
      });
      const file: MerkleFile = {
        path,
        absolutePath,
        digest: Digest.create(digestOpts.instanceName, digestOpts.digestFunction, hash, sizeBytes),
        isExecutable: (mode & 0o100) !== 0,
      };
      opts.onFileHashed?.(file);
      return file;
    });

  /**
   * Returns the directory's node, or undefined when globs leave nothing in it. `includeAll` is set
   * below a directory that a glob matched as a whole. `ancestors` holds real paths, to stop cycles
   * when following symlinks.
   */
  const walk = async (absDir: string, relDir: string, includeAll: boolean, ancestors: ReadonlySet<string>): Promise<MerkleDirectory | undefined> => {
    const entries = await readdir(absDir, { withFileTypes: true }).catch((err) => {
      throw wrapStatus(fsStatusError(err), `Failed to read directory ${JSON.stringify(absDir)}`);
    });
    const fileNodes: reapi.IFileNode[] = [];
    const dirNodes: reapi.IDirectoryNode[] = [];
    const linkNodes: reapi.ISymlinkNode[] = [];
    await Promise.all(
      entries.map(async (entry) => {
        const name = entry.name;
        const abs = join(absDir, name);
        const rel = relDir ? `${relDir}/${name}` : name;
        const included = includeAll || !matched || matched.has(rel);
        let info = await lstat(abs).catch((err) => {
          throw wrapStatus(fsStatusError(err), `Failed to stat ${JSON.stringify(abs)}`);
        });
        if (info.isSymbolicLink()) {
          if (!followSymlinks) {
            if (!included) return;
            const target = await readlink(abs).catch((err) => {
              throw wrapStatus(fsStatusError(err), `Failed to read symlink ${JSON.stringify(abs)}`);
            });
            linkNodes.push({ name, target });
            symlinkCount++;
            return;
          }
          info = await stat(abs).catch((err) => {
            throw wrapStatus(fsStatusError(err), `Failed to follow symlink ${JSON.stringify(abs)}`);
          });
        }
        if (info.isFile()) {
          if (!included) return;
          const file = await hashFile(abs, rel, info.mode);
          files.push(file);
          fileNodes.push({ name, digest: file.digest.toProto(), isExecutable: file.isExecutable });
        } else if (info.isDirectory()) {
          const real = await realpath(abs);
          if (ancestors.has(real)) {
            throw StatusError.invalidArgument(`Failed to build a tree: symlink ${JSON.stringify(abs)} leads into a cycle`);
          }
          const child = await walk(abs, rel, included && (includeAll || !!matched), new Set([...ancestors, real]));
          if (child) dirNodes.push({ name, digest: child.digest.toProto() });
        } else {
          throw StatusError.invalidArgument(`Failed to build a tree: ${JSON.stringify(abs)} is not a regular file, directory or symlink`);
        }
      }),
    );
    // Under globs, directories without a match are left out; without globs, empty ones are kept.
    if (matched && !includeAll && relDir !== '' && fileNodes.length + dirNodes.length + linkNodes.length === 0) return undefined;
    const byName = (a: { name?: string | null }, b: { name?: string | null }) => compareUtf8(a.name ?? '', b.name ?? '');
    const message: reapi.IDirectory = {
      files: fileNodes.sort(byName),
      directories: dirNodes.sort(byName),
      symlinks: linkNodes.sort(byName),
    };
    const { bytes, digest } = encodeWithDigest(reapi.Directory, message, digestOpts);
    const node = { digest, bytes, message };
    directories.set(digest.key, node);
    return node;
  };

  const root = (await walk(rootDir, '', false, new Set([await realpath(rootDir)])))!;
  files.sort((a, b) => compareUtf8(a.path, b.path));
  return { rootDigest: root.digest, root, directories, files, symlinkCount };
}

export interface BuiltTree {
  /** The Tree message: the root Directory and every distinct descendant, each once. */
  tree: reapi.ITree;
  /** Canonical encoding of `tree` and its digest (what OutputDirectory.tree_digest names). */
  bytes: Uint8Array;
  digest: Digest;
  /** Digest of the root Directory (OutputDirectory.root_directory_digest). */
  rootDigest: Digest;
  directoryTree: DirectoryTree;
}

/**
 * Builds the `Tree` message of a directory, as an action's output directory is reported: the root
 * plus every distinct child Directory, in a deterministic depth-first order.
 */
export async function buildTree(rootDir: string, opts: BuildDirectoryTreeOptions = {}): Promise<BuiltTree> {
  const directoryTree = await buildDirectoryTree(rootDir, opts);
  const tree = treeFromDirectories(directoryTree.root, directoryTree.directories);
  const { bytes, digest } = encodeWithDigest(reapi.Tree, tree, {
    instanceName: opts.instanceName ?? '',
    digestFunction: opts.digestFunction ?? 'sha256',
  });
  return { tree, bytes, digest, rootDigest: directoryTree.rootDigest, directoryTree };
}

/** Assembles a Tree from a root and a map of its directories (pre-order, each digest once). */
export function treeFromDirectories(root: MerkleDirectory, directories: ReadonlyMap<string, MerkleDirectory>): reapi.ITree {
  const children: reapi.IDirectory[] = [];
  const seen = new Set<string>([root.digest.key]);
  const visit = (dir: reapi.IDirectory) => {
    for (const node of dir.directories ?? []) {
      const d = Digest.fromProto(root.digest.instanceName, digestFunctionToProto(root.digest.digestFunction), node.digest, 'directories.digest');
      if (seen.has(d.key)) continue;
      seen.add(d.key);
      const child = directories.get(d.key);
      if (!child) throw StatusError.internal(`Failed to build a tree: directory ${d} is not in the map`);
      children.push(child.message);
      visit(child.message);
    }
  };
  visit(root.message);
  return { root: root.message, children };
}

/** Where `materializeTree` gets directories and file contents from. */
export interface TreeFetcher {
  /** The Directory with this digest; NOT_FOUND if absent. */
  getDirectory(digest: Digest): Promise<reapi.IDirectory>;
  /** Writes the blob to `path` with the given executable bit. */
  downloadFile(digest: Digest, path: string, isExecutable: boolean): Promise<void>;
  /** Optional bulk form, preferred when present (lets a CAS client batch small files). */
  downloadFiles?(items: { digest: Digest; path: string; isExecutable: boolean }[]): Promise<void>;
}

export interface MaterializeResult {
  files: number;
  directories: number;
  symlinks: number;
}

/** Deepest tree materialised; deeper means a malicious or broken server. */
const MAX_TREE_DEPTH = 512;

/**
 * Recreates the tree `rootDigest` under `destDir`. Entry names must be single path components and
 * symlink targets must stay inside `destDir`; anything else fails with INVALID_ARGUMENT before a
 * single file is written.
 */
export async function materializeTree(
  fetch: TreeFetcher,
  rootDigest: Digest,
  destDir: string,
  opts: { concurrency?: number } = {},
): Promise<MaterializeResult> {
  const files: { digest: Digest; path: string; isExecutable: boolean }[] = [];
  const dirs: string[] = [destDir];
  const links: { path: string; target: string }[] = [];
  const fn = digestFunctionToProto(rootDigest.digestFunction);
  const toDigest = (d: reapi.IDigest | null | undefined, field: string) => Digest.fromProto(rootDigest.instanceName, fn, d, field);

  // First pass: fetch and validate every Directory, writing nothing.
  const visit = async (digest: Digest, absDir: string, relDir: string, depth: number): Promise<void> => {
    if (depth > MAX_TREE_DEPTH) throw StatusError.invalidArgument(`Failed to materialise tree ${rootDigest}: deeper than ${MAX_TREE_DEPTH} levels`);
    const dir = await fetch.getDirectory(digest).catch((err) => {
      throw wrapStatus(err, `Failed to fetch directory ${digest} (${JSON.stringify(relDir || '.')})`);
    });
    const names = new Set<string>();
    const checkName = (name: string | null | undefined, kind: string) => {
      const where = relDir ? `in ${JSON.stringify(relDir)}` : 'at the root';
      validateEntryName(name ?? '', `${kind} ${where}`);
      if (names.has(name!)) throw StatusError.invalidArgument(`Failed to materialise tree ${rootDigest}: name ${JSON.stringify(name)} appears twice ${where}`);
      names.add(name!);
    };
    for (const f of dir.files ?? []) {
      checkName(f.name, 'file');
      files.push({ digest: toDigest(f.digest, 'files.digest'), path: join(absDir, f.name!), isExecutable: f.isExecutable ?? false });
    }
    for (const s of dir.symlinks ?? []) {
      checkName(s.name, 'symlink');
      validateSymlinkTarget(relDir, s.name!, s.target ?? '');
      links.push({ path: join(absDir, s.name!), target: s.target! });
    }
    const children: Promise<void>[] = [];
    for (const d of dir.directories ?? []) {
      checkName(d.name, 'directory');
      const childAbs = join(absDir, d.name!);
      dirs.push(childAbs);
      children.push(visit(toDigest(d.digest, 'directories.digest'), childAbs, relDir ? `${relDir}/${d.name}` : d.name!, depth + 1));
    }
    await Promise.all(children);
  };
  await visit(rootDigest, destDir, '', 0);

  // Second pass: create directories, then files, then symlinks (which may point at files).
  for (const d of dirs) {
    await mkdir(d, { recursive: true }).catch((err) => {
      throw wrapStatus(fsStatusError(err), `Failed to create directory ${JSON.stringify(d)}`);
    });
  }
  if (fetch.downloadFiles) await fetch.downloadFiles(files);
  else await mapConcurrent(files, opts.concurrency ?? 16, (f) => fetch.downloadFile(f.digest, f.path, f.isExecutable));
  for (const l of links) {
    await symlink(l.target, l.path).catch((err) => {
      throw wrapStatus(fsStatusError(err), `Failed to create symlink ${JSON.stringify(l.path)}`);
    });
  }
  return { files: files.length, directories: dirs.length, symlinks: links.length };
}
