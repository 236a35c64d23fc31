/**
 * Collects what an action produced and stores it in the CAS: declared output files, output
 * directories (as REAPI Trees), output symlinks, stdout and stderr. Speaks both Command styles:
 * `output_files`/`output_directories` (REAPI v2.0, what Bazel 4.2.3 sends) and `output_paths`
 * (v2.1+, where the kind found on disk decides how the output is reported).
 *
 * Files are hashed and uploaded as streams, so memory does not grow with output size; blobs go
 * through one FindMissing round first so that outputs the CAS already holds are not sent again.
 */
import { constants as fsConstants, createReadStream, promises as fsp, type ReadStream, type Stats } from 'node:fs';
import * as path from 'node:path';
import type { BlobStore, CallOptions } from '../blobstore/blob-store.js';
import { Digest } from '../digest/digest.js';
import { type DigestFunction, hashStream } from '../digest/digest-function.js';
import { StatusError, wrapStatus } from '../errors/status-error.js';
import { encodeWithDigest } from '../digest/encode-with-digest.js';
import { reapi } from '../proto/index.js';
import { mapConcurrent } from '../util/concurrency.js';
import { resolveRelativePath, toAbsolute } from './paths.js';
import { parentsAreDirectories } from './safe-walk.js';
import { compareUtf8 } from '../cas/tree-paths.js';
import { FIND_MISSING_BATCH_DIGESTS } from '../proto/message-limits.js';

export interface OutputUploaderOptions {
  contentAddressableStorage: BlobStore;
  /** How many uploads run at once. */
  concurrency?: number;
}

export interface UploadOutputsRequest {
  /** Absolute path of the action's input root. */
  inputRoot: string;
  command: reapi.ICommand;
  instanceName: string;
  digestFunction: DigestFunction;
  /** Files holding the command's stdout/stderr; omitted when the command never ran. */
  stdoutPath?: string;
  stderrPath?: string;
  /** Chroot mode: an output path may name the input root itself. */
  allowRootOutput?: boolean;
  /** Total bytes of output files (stdout and stderr included) beyond which collection fails. */
  maxOutputBytes?: number;
}

/** The part of an ActionResult the uploader fills: outputs and stdout/stderr digests. */
export type CollectedOutputs = Pick<
  reapi.IActionResult,
  'outputFiles' | 'outputFileSymlinks' | 'outputSymlinks' | 'outputDirectories' | 'outputDirectorySymlinks' | 'stdoutDigest' | 'stderrDigest'
>;

type Expected = 'file' | 'directory' | 'any';

/** A blob to upload: a file streamed from disk, or bytes built in memory (Trees). */
type BlobSource = { digest: Digest; filePath: string } | { digest: Digest; bytes: Uint8Array };

export class OutputUploader {
  private readonly contentAddressableStorage: BlobStore;
  private readonly concurrency: number;

  constructor(opts: OutputUploaderOptions) {
    this.contentAddressableStorage = opts.contentAddressableStorage;
    this.concurrency = opts.concurrency ?? 8;
  }

  /**
   * Collects and uploads the outputs. Declared outputs that do not exist are left out of the result;
   * an output of the wrong kind is FAILED_PRECONDITION; a path leaving the input root (lexically or
   * through a symlinked parent) is INVALID_ARGUMENT.
   */
  async uploadOutputs(request: UploadOutputsRequest, opts: CallOptions = {}): Promise<CollectedOutputs> {
    const collector = new Collector(request);
    const result: CollectedOutputs = {};
    const { command } = request;
    const workingDirectory = resolveRelativePath('', command.workingDirectory ?? '', 'working_directory', { allowEmpty: true });
    const outputPaths = command.outputPaths ?? [];
    const allowEmpty = request.allowRootOutput ?? false;
    if (outputPaths.length > 0) {
      for (const p of outputPaths) await collector.collect(p, resolveRelativePath(workingDirectory, p, 'output_paths', { allowEmpty }), 'any', result);
    } else {
      for (const p of command.outputFiles ?? []) await collector.collect(p, resolveRelativePath(workingDirectory, p, 'output_files'), 'file', result);
      for (const p of command.outputDirectories ?? []) {
        await collector.collect(p, resolveRelativePath(workingDirectory, p, 'output_directories', { allowEmpty }), 'directory', result);
      }
    }
    [result.stdoutDigest, result.stderrDigest] = await Promise.all([
      request.stdoutPath ? collector.collectLog(request.stdoutPath, 'stdout') : undefined,
      request.stderrPath ? collector.collectLog(request.stderrPath, 'stderr') : undefined,
    ]);
    await this.upload([...collector.blobs.values()], opts);
    for (const key of Object.keys(result) as (keyof CollectedOutputs)[]) if (result[key] === undefined) delete result[key];
    return result;
  }

  private async upload(blobs: readonly BlobSource[], opts: CallOptions): Promise<void> {
    const nonEmpty = blobs.filter((b) => !b.digest.isEmpty);
    const missing = new Set<string>();
    for (let i = 0; i < nonEmpty.length; i += FIND_MISSING_BATCH_DIGESTS) {
      const batch = nonEmpty.slice(i, i + FIND_MISSING_BATCH_DIGESTS).map((b) => b.digest);
      try {
        for (const d of await this.contentAddressableStorage.findMissing(batch, opts)) missing.add(d.key);
      } catch (err) {
        throw wrapStatus(err, 'Failed to check which outputs the CAS holds');
      }
    }
    await mapConcurrent(
      nonEmpty.filter((b) => missing.has(b.digest.key)),
      this.concurrency,
      async (blob) => {
        try {
          const data = 'bytes' in blob ? blob.bytes : readNoFollow(blob.filePath);
          await this.contentAddressableStorage.put(blob.digest, data, opts);
        } catch (err) {
          throw wrapStatus(err, `Failed to upload ${'filePath' in blob ? `output file ${JSON.stringify(blob.filePath)}` : 'output tree'} (${blob.digest.toString()})`);
        }
      },
    );
  }
}

/** Walks outputs on disk, builds their proto descriptions and remembers the blobs to upload. */
class Collector {
  readonly blobs = new Map<string, BlobSource>();
  private totalBytes = 0;

  constructor(private readonly request: UploadOutputsRequest) {}

  /** Adds the output at `relative` (normalised, relative to the input root) to `result`. */
  async collect(declared: string, relative: string, expected: Expected, result: CollectedOutputs): Promise<void> {
    const absolute = toAbsolute(this.request.inputRoot, relative);
    if (relative !== '' && !(await parentsAreDirectories(this.request.inputRoot, relative, 'output_paths'))) return;
    let st: Stats;
    try {
      st = await fsp.lstat(absolute);
    } catch (err) {
      if (isAbsent(err)) return;
      throw wrapStatus(err, `Failed to inspect output ${JSON.stringify(declared)}`);
    }
    if (st.isSymbolicLink()) {
      const target = await fsp.readlink(absolute);
      const symlink = { path: declared, target };
      if (expected === 'any') (result.outputSymlinks ??= []).push(symlink);
      else if (expected === 'file') (result.outputFileSymlinks ??= []).push(symlink);
      else (result.outputDirectorySymlinks ??= []).push(symlink);
    } else if (st.isFile()) {
      if (expected === 'directory') throw wrongKind(declared, 'a directory', 'a regular file');
      const digest = await this.hashFile(absolute, declared);
      (result.outputFiles ??= []).push({ path: declared, digest: digest.toProto(), isExecutable: isExecutable(st) });
    } else if (st.isDirectory()) {
      if (expected === 'file') throw wrongKind(declared, 'a regular file', 'a directory');
      const { rootDigest, children } = await this.buildTree(absolute, declared);
      const tree = encodeWithDigest(
        reapi.Tree,
        {
          root: children.get(rootDigest.key)!.directory,
          children: [...children.entries()]
            .reverse()
            .filter(([key]) => key !== rootDigest.key)
            .map(([, c]) => c.directory),
        },
        this.digestOptions(),
      );
      this.blobs.set(tree.digest.key, { digest: tree.digest, bytes: tree.bytes });
      (result.outputDirectories ??= []).push({
        path: declared,
        treeDigest: tree.digest.toProto(),
        rootDirectoryDigest: rootDigest.toProto(),
        isTopologicallySorted: true,
      });
    } else {
      throw wrongKind(declared, expected === 'any' ? 'a file, directory or symlink' : `a ${expected === 'file' ? 'regular file' : 'directory'}`, 'a special file');
    }
  }

  /**
   * Digest of a stdout/stderr file. An empty stream gets the empty blob's digest, as Scoot and
   * Buildbarn set it (every CAS holds the empty blob implicitly, so nothing is uploaded for it).
   */
  async collectLog(filePath: string, name: string): Promise<reapi.IDigest | undefined> {
    const empty = () => Digest.empty({ instanceName: this.request.instanceName, digestFunction: this.request.digestFunction }).toProto();
    try {
      // Most commands print nothing: one stat answers that without opening and reading the file.
      if ((await fsp.stat(filePath)).size === 0) return empty();
      return (await this.hashFile(filePath, name)).toProto();
    } catch (err) {
      throw wrapStatus(err, `Failed to store ${name}`);
    }
  }

  /**
   * Builds the Directory messages of the tree at `absolute`. Returns the root's digest and every
   * distinct Directory in post-order (each one after all directories it references), keyed by digest;
   * reversed, that is the topological order REAPI's `is_topologically_sorted` promises.
   */
  private async buildTree(absolute: string, declared: string): Promise<{ rootDigest: Digest; children: Map<string, { directory: reapi.IDirectory }> }> {
    const postOrder = new Map<string, { directory: reapi.IDirectory }>();
    const visit = async (dirPath: string, depth: number): Promise<Digest> => {
      if (depth > 512) throw StatusError.failedPrecondition(`Failed to collect output directory ${JSON.stringify(declared)}: it nests deeper than 512 levels`);
      const files: reapi.IFileNode[] = [];
      const directories: reapi.IDirectoryNode[] = [];
      const symlinks: reapi.ISymlinkNode[] = [];
      const names = (await fsp.readdir(dirPath)).sort(compareUtf8);
      for (const name of names) {
        const child = path.join(dirPath, name);
        const st = await fsp.lstat(child);
        if (st.isSymbolicLink()) {
          symlinks.push({ name, target: await fsp.readlink(child) });
        } else if (st.isFile()) {
          const digest = await this.hashFile(child, `${declared}/${path.relative(absolute, child)}`);
          files.push({ name, digest: digest.toProto(), isExecutable: isExecutable(st) });
        } else if (st.isDirectory()) {
          const digest = await visit(child, depth + 1);
          directories.push({ name, digest: digest.toProto() });
        } else {
          throw wrongKind(`${declared}/${path.relative(absolute, child)}`, 'a file, directory or symlink', 'a special file');
        }
      }
      const directory: reapi.IDirectory = { files, directories, symlinks };
      const { digest } = encodeWithDigest(reapi.Directory, directory, this.digestOptions());
      if (!postOrder.has(digest.key)) postOrder.set(digest.key, { directory });
      return digest;
    };
    let rootDigest: Digest;
    try {
      rootDigest = await visit(absolute, 0);
    } catch (err) {
      throw wrapStatus(err, `Failed to collect output directory ${JSON.stringify(declared)}`);
    }
    return { rootDigest, children: postOrder };
  }

  private async hashFile(filePath: string, label: string): Promise<Digest> {
    let hashed: { hash: string; sizeBytes: number };
    try {
      hashed = await hashStream(this.request.digestFunction, readNoFollow(filePath));
    } catch (err) {
      throw wrapStatus(err, `Failed to hash output ${JSON.stringify(label)}`);
    }
    this.totalBytes += hashed.sizeBytes;
    const max = this.request.maxOutputBytes;
    if (max !== undefined && this.totalBytes > max) {
      throw StatusError.resourceExhausted(`Failed to collect outputs: they exceed the total output limit of ${max} bytes`);
    }
    const digest = Digest.create(this.request.instanceName, this.request.digestFunction, hashed.hash, hashed.sizeBytes);
    if (!this.blobs.has(digest.key)) this.blobs.set(digest.key, { digest, filePath });
    return digest;
  }

  private digestOptions(): { instanceName: string; digestFunction: DigestFunction } {
    return { instanceName: this.request.instanceName, digestFunction: this.request.digestFunction };
  }
}

/**
 * Reads a file the worker collects, refusing to follow a symlink in its place: the action may have
 * swapped the file between the walk and the read.
 */
function readNoFollow(filePath: string): ReadStream {
  // fs.open takes numeric flags; the option's type only lists the string forms.
  const flags = (fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW) as unknown as string;
  return createReadStream(filePath, { highWaterMark: 1024 * 1024, flags });
}

function isExecutable(st: Stats): boolean {
  return (st.mode & 0o100) !== 0;
}

function isAbsent(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

function wrongKind(declared: string, wanted: string, found: string): StatusError {
  return StatusError.failedPrecondition(`Failed to collect output ${JSON.stringify(declared)}: expected ${wanted}, found ${found}`);
}
