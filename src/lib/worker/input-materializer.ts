/**
 * Builds an action's input root on local disk from its Merkle tree in the CAS. Directory messages
 * are fetched (each distinct one once) and validated before anything is written, missing blobs are
 * found with one FindMissing call so the client learns about all of them at once, and files come from
 * the worker's FileCache as hard links. When the scheduler already resolved and checked the tree
 * (Task.input_directories), its Directories are used as they are and FindMissing is not asked again.
 */
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { BlobStore, CallOptions } from '../blobstore/blob-store.js';
import { Digest } from '../digest/digest.js';
import { Code, StatusError, wrapStatus } from '../errors/status-error.js';
import { reapi, type workerapi } from '../proto/index.js';
import type { FileCache } from './file-cache.js';
import { mapConcurrent } from '../util/concurrency.js';
import { resolveRelativePath, toAbsolute, validateEntryName, validateSymlinkTarget } from './paths.js';
import { ensureDirectory } from './safe-walk.js';
import type { RunAs } from './sandbox-command.js';

/** Directory messages above this size are refused (a Directory is one message, not a stream). */
const MAX_DIRECTORY_BYTES = 64 * 1024 * 1024;

export interface InputMaterializerOptions {
  contentAddressableStorage: BlobStore;
  fileCache: FileCache;
  /** How many Directory fetches and file links run at once. */
  concurrency?: number;
  /**
   * The uid/gid actions run as: every directory of the input root is made theirs (so outputs can be
   * created) while input files stay the cache's, read-only, which that uid cannot change.
   */
  owner?: RunAs;
  /** Copy input files instead of hard-linking them (the action could modify a linked one). */
  copyInputs?: boolean;
}

export interface MaterializeOptions extends CallOptions {
  /**
   * The tree's Directories as the scheduler fetched them while checking that every input blob is in
   * the CAS. Used instead of fetching; a file gone since then is reported missing when fetched.
   */
  resolved?: readonly workerapi.IResolvedDirectory[] | null;
}

interface FileToLink {
  relativePath: string;
  digest: Digest;
  isExecutable: boolean;
}

export class InputMaterializer {
  private readonly contentAddressableStorage: BlobStore;
  private readonly fileCache: FileCache;
  private readonly concurrency: number;
  private readonly owner: RunAs | undefined;
  private readonly copyInputs: boolean;

  constructor(opts: InputMaterializerOptions) {
    this.contentAddressableStorage = opts.contentAddressableStorage;
    this.fileCache = opts.fileCache;
    this.concurrency = opts.concurrency ?? 16;
    this.owner = opts.owner;
    this.copyInputs = opts.copyInputs ?? false;
  }

  /**
   * Creates the tree rooted at `inputRootDigest` in `targetDirectory` (which must exist and be empty).
   * Errors: FAILED_PRECONDITION with MISSING violations for absent blobs, INVALID_ARGUMENT for bad
   * names, duplicates or escaping symlinks (nothing is written for those).
   */
  async materialize(inputRootDigest: Digest, targetDirectory: string, opts: MaterializeOptions = {}): Promise<void> {
    const resolved = resolvedByKey(inputRootDigest, opts.resolved);
    const directories = await this.fetchDirectories(inputRootDigest, opts, resolved);

    // Walk the tree (by path; a Directory reused under two names is instantiated twice).
    const dirsToCreate: string[] = [];
    const files: FileToLink[] = [];
    const symlinks: { relativePath: string; target: string }[] = [];
    const walk = (digest: Digest, relativeDir: string, depth: number) => {
      if (depth > 512) throw StatusError.invalidArgument(`Invalid input root: directories nest deeper than 512 levels at ${JSON.stringify(relativeDir)}`);
      const dir = directories.get(digest.key)!;
      const join = (name: string) => (relativeDir === '' ? name : `${relativeDir}/${name}`);
      for (const node of dir.directories ?? []) {
        const child = join(node.name ?? '');
        dirsToCreate.push(child);
        walk(childDigest(inputRootDigest, node.digest, child), child, depth + 1);
      }
      for (const node of dir.files ?? []) {
        files.push({ relativePath: join(node.name ?? ''), digest: childDigest(inputRootDigest, node.digest, join(node.name ?? '')), isExecutable: !!node.isExecutable });
      }
      for (const node of dir.symlinks ?? []) {
        // Checked per path, not per Directory: the same Directory may sit at different depths.
        validateSymlinkTarget(relativeDir, node.name ?? '', node.target ?? '', { anywhere: true });
        symlinks.push({ relativePath: join(node.name ?? ''), target: node.target ?? '' });
      }
    };
    walk(inputRootDigest, '', 0);

    // Ask the CAS once for every file the cache does not hold, so that all missing inputs are
    // reported together (Bazel re-uploads exactly those and retries).
    const wanted = new Map<string, Digest>();
    for (const f of files) {
      if (!f.digest.isEmpty && !this.fileCache.has(f.digest, f.isExecutable)) wanted.set(f.digest.key, f.digest);
    }
    if (wanted.size > 0 && !resolved) {
      let missing: Digest[];
      try {
        missing = await this.contentAddressableStorage.findMissing([...wanted.values()], opts);
      } catch (err) {
        throw wrapStatus(err, 'Failed to check input files in the CAS');
      }
      if (missing.length > 0) throw StatusError.missingBlobs(missing);
    }

    // Directories first, symlinks last: no path the worker writes through can be a symlink.
    const owner = this.owner;
    if (owner) await fsp.chown(targetDirectory, owner.uid, owner.gid);
    for (const d of dirsToCreate) {
      await fsp.mkdir(toAbsolute(targetDirectory, d));
      if (owner) await fsp.chown(toAbsolute(targetDirectory, d), owner.uid, owner.gid);
    }
    await mapConcurrent(files, this.concurrency, async (f) => {
      try {
        await this.fileCache.linkInto(f.digest, f.isExecutable, toAbsolute(targetDirectory, f.relativePath), opts, this.copyInputs);
      } catch (err) {
        // Checked by the scheduler, gone since: the same refusal as FindMissing would have given.
        if (resolved && err instanceof StatusError && err.code === Code.NOT_FOUND) throw StatusError.missingBlobs([f.digest]);
        throw wrapStatus(err, `Failed to create input file ${JSON.stringify(f.relativePath)}`);
      }
    });
    for (const s of symlinks) await fsp.symlink(s.target, toAbsolute(targetDirectory, s.relativePath));
  }

  /** Fetches and validates every distinct Directory in the tree, breadth first. */
  private async fetchDirectories(root: Digest, opts: CallOptions, resolved?: ReadonlyMap<string, reapi.Directory>): Promise<Map<string, reapi.IDirectory>> {
    const directories = new Map<string, reapi.IDirectory>();
    const missing: Digest[] = [];
    let frontier: { digest: Digest; where: string }[] = [{ digest: root, where: '' }];
    const seen = new Set<string>([root.key]);
    let next: { digest: Digest; where: string }[] = [];
    const visit = (digest: Digest, where: string, dir: reapi.Directory): void => {
      validateDirectory(dir, where);
      directories.set(digest.key, dir);
      for (const node of dir.directories) {
        const childWhere = where === '' ? (node.name ?? '') : `${where}/${node.name ?? ''}`;
        const d = childDigest(root, node.digest, childWhere);
        if (seen.has(d.key)) continue;
        seen.add(d.key);
        next.push({ digest: d, where: childWhere });
      }
    };
    while (frontier.length > 0) {
      next = [];
      await mapConcurrent(frontier, this.concurrency, async ({ digest, where }) => {
        const known = resolved?.get(digest.key);
        if (known) return void visit(digest, where, known);
        let bytes: Uint8Array;
        try {
          bytes = await this.contentAddressableStorage.get(digest, { ...opts, maxBytes: MAX_DIRECTORY_BYTES });
        } catch (err) {
          if (err instanceof StatusError && err.code === Code.NOT_FOUND) {
            missing.push(digest);
            return;
          }
          throw wrapStatus(err, `Failed to fetch input directory ${JSON.stringify(where || '.')} (${digest.toString()})`);
        }
        const actual = Digest.ofBytes(bytes, { instanceName: digest.instanceName, digestFunction: digest.digestFunction });
        if (!actual.equals(digest)) {
          throw new StatusError(Code.DATA_LOSS, `Failed to fetch input directory ${JSON.stringify(where || '.')}: the CAS returned ${actual.toString()} for ${digest.toString()}`);
        }
        let dir: reapi.Directory;
        try {
          dir = reapi.Directory.decode(bytes);
        } catch (err) {
          throw StatusError.invalidArgument(`Failed to decode input directory ${JSON.stringify(where || '.')} (${digest.toString()}): ${(err as Error).message}`);
        }
        visit(digest, where, dir);
      });
      frontier = next;
    }
    if (missing.length > 0) throw StatusError.missingBlobs(missing);
    return directories;
  }
}

/** The scheduler's resolved Directories by digest key; undefined unless they include the root. */
function resolvedByKey(root: Digest, list: readonly workerapi.IResolvedDirectory[] | null | undefined): Map<string, reapi.Directory> | undefined {
  if (!list?.length) return undefined;
  const byKey = new Map<string, reapi.Directory>();
  for (const r of list) byKey.set(childDigest(root, r.digest, 'task.input_directories').key, reapi.Directory.fromObject(r.directory ?? {}));
  return byKey.has(root.key) ? byKey : undefined;
}

/**
 * Creates the parent directories of every declared output (relative to the working directory), and
 * the working directory itself, before the command runs, as REAPI requires. Validates the paths
 * first: INVALID_ARGUMENT for absolute ones or ones that leave the input root.
 */
export async function createOutputParents(inputRoot: string, command: reapi.ICommand, owner?: RunAs, allowRootOutput = false): Promise<void> {
  const workingDirectory = resolveRelativePath('', command.workingDirectory ?? '', 'working_directory', { allowEmpty: true });
  // The input root itself exists already; only a working directory below it may need creating.
  // Both walks refuse symlinks: an input symlink must not make the worker create directories elsewhere.
  await ensureDirectory(inputRoot, workingDirectory, 'working_directory', owner);
  const declared: [string, readonly string[] | null | undefined][] = [
    ['output_files', command.outputFiles],
    ['output_directories', command.outputDirectories],
    ['output_paths', command.outputPaths],
  ];
  for (const [field, paths] of declared) {
    for (const p of paths ?? []) {
      const relative = resolveRelativePath(workingDirectory, p, field, { allowEmpty: allowRootOutput });
      const parent = path.posix.dirname(relative);
      if (parent !== '.') await ensureDirectory(inputRoot, parent, field, owner);
    }
  }
}

/** Checks names, duplicates and symlink targets of one Directory. `where` is its path in the tree. */
function validateDirectory(dir: reapi.Directory, where: string): void {
  const label = where === '' ? 'the input root' : `input directory ${JSON.stringify(where)}`;
  const names = new Set<string>();
  const check = (name: string) => {
    validateEntryName(name, label);
    if (names.has(name)) {
      throw StatusError.invalidArgument(`Invalid ${label}: entry ${JSON.stringify(name)} appears more than once`, [
        { field: 'directory', description: `Duplicate entry ${JSON.stringify(name)}` },
      ]);
    }
    names.add(name);
  };
  for (const f of dir.files) check(f.name ?? '');
  for (const d of dir.directories) check(d.name ?? '');
  for (const s of dir.symlinks) check(s.name ?? '');
}

/** A digest named inside the tree: same instance and digest function as the root. */
function childDigest(root: Digest, proto: reapi.IDigest | null | undefined, where: string): Digest {
  if (!proto) {
    throw StatusError.invalidArgument(`Invalid input entry ${JSON.stringify(where)}: its digest is missing`, [{ field: where, description: 'Digest is missing' }]);
  }
  return Digest.create(root.instanceName, root.digestFunction, proto.hash ?? '', Number(proto.sizeBytes ?? 0), where);
}
