/**
 * Reports an action cache hit only if every blob the ActionResult references is still in the CAS.
 * The AC and the CAS are evicted independently, so a cached result can outlive its outputs; Bazel
 * given such a result fails to download them (and, with remote execution, may fail the build rather
 * than re-run the action). Turning that hit into a miss makes the action run again instead, after
 * Buildbarn's CompletenessCheckingBlobAccess.
 *
 * Checked: output files, stdout/stderr digests, each output directory's Tree blob and, inside each
 * Tree, every file and every directory the Tree does not itself contain. All existence checks go to
 * the CAS as one findMissing batch, after the Trees have been fetched.
 */
import { Digest } from '../digest/digest.js';
import { digestFunctionToProto, hashBytes } from '../digest/digest-function.js';
import { Code, hasCode, StatusError, wrapStatus } from '../errors/status-error.js';
import { encodeCanonical } from '../proto/canonical.js';
import { reapi } from '../proto/index.js';
import { type BlobStore, type CallOptions } from '../blobstore/blob-store.js';
import type { ActionCache } from './action-cache.js';

export interface CompletenessCheckingActionCacheOptions {
  /** Largest Tree blob fetched for checking; a larger one makes the result a miss. @default 64 MiB */
  maxTreeSizeBytes?: number;
}

export class CompletenessCheckingActionCache implements ActionCache {
  private readonly maxTreeSizeBytes: number;

  constructor(
    private readonly base: ActionCache,
    private readonly contentAddressableStorage: BlobStore,
    opts: CompletenessCheckingActionCacheOptions = {},
  ) {
    this.maxTreeSizeBytes = opts.maxTreeSizeBytes ?? 64 * 1024 * 1024;
  }

  async getActionResult(actionDigest: Digest, opts: CallOptions = {}): Promise<reapi.IActionResult> {
    const result = await this.base.getActionResult(actionDigest, opts);
    const referenced = new Referenced(actionDigest);
    try {
      for (const [i, f] of (result.outputFiles ?? []).entries()) referenced.add(f.digest, `output_files[${i}].digest`);
      referenced.add(result.stdoutDigest, 'stdout_digest', true);
      referenced.add(result.stderrDigest, 'stderr_digest', true);
      const trees = (result.outputDirectories ?? []).map((d, i) => referenced.add(d.treeDigest, `output_directories[${i}].tree_digest`)!);
      const treeMessages = await Promise.all(trees.map((t) => this.fetchTree(actionDigest, t, opts)));
      for (const [i, tree] of treeMessages.entries()) addTreeContents(referenced, tree, `output_directories[${i}]`);
    } catch (err) {
      if (hasCode(err, Code.NOT_FOUND) || hasCode(err, Code.INVALID_ARGUMENT) || hasCode(err, Code.RESOURCE_EXHAUSTED)) {
        throw StatusError.notFound(`Action result for action ${actionDigest.toString()} is incomplete: ${(err as Error).message}`);
      }
      throw wrapStatus(err, `Failed to check completeness of action result for action ${actionDigest.toString()}`);
    }
    let missing: Digest[];
    try {
      missing = await this.contentAddressableStorage.findMissing(referenced.digests(), opts);
    } catch (err) {
      throw wrapStatus(err, `Failed to check completeness of action result for action ${actionDigest.toString()}`);
    }
    if (missing.length > 0) {
      const examples = missing.slice(0, 3).map((d) => d.toString()).join(', ');
      throw StatusError.notFound(
        `Action result for action ${actionDigest.toString()} is incomplete: ${missing.length} referenced blob(s) missing from the CAS (${examples}${missing.length > 3 ? ', ...' : ''})`,
      );
    }
    return result;
  }

  updateActionResult(actionDigest: Digest, result: reapi.IActionResult, opts?: CallOptions): Promise<void> {
    return this.base.updateActionResult(actionDigest, result, opts);
  }

  private async fetchTree(actionDigest: Digest, treeDigest: Digest, opts: CallOptions): Promise<reapi.Tree> {
    const bytes = await this.contentAddressableStorage.get(treeDigest, { signal: opts.signal, maxBytes: this.maxTreeSizeBytes });
    try {
      return reapi.Tree.decode(bytes);
    } catch (err) {
      throw StatusError.invalidArgument(`Tree ${treeDigest.toString()} of action ${actionDigest.toString()} cannot be decoded: ${(err as Error).message}`);
    }
  }
}

/** The deduplicated set of digests a result references, in the action's instance and digest function. */
class Referenced {
  private readonly byKey = new Map<string, Digest>();
  private readonly digestFunction: number;

  constructor(readonly actionDigest: Digest) {
    this.digestFunction = digestFunctionToProto(actionDigest.digestFunction);
  }

  /** Adds a digest; absent ones are an error unless `optional`. Returns the parsed digest. */
  add(proto: reapi.IDigest | null | undefined, field: string, optional = false): Digest | undefined {
    if (!proto && optional) return undefined;
    const digest = Digest.fromProto(this.actionDigest.instanceName, this.digestFunction, proto, field);
    // The empty blob is always present; no need to ask.
    if (!digest.isEmpty) this.byKey.set(digest.key, digest);
    return digest;
  }

  digests(): Digest[] {
    return [...this.byKey.values()];
  }
}

/** Adds the files of every directory in `tree`, and the subdirectories not carried by the Tree itself. */
function addTreeContents(referenced: Referenced, tree: reapi.ITree, field: string): void {
  const directories = [tree.root ?? {}, ...(tree.children ?? [])];
  const fn = referenced.actionDigest.digestFunction;
  const contained = new Set(directories.map((d) => hashBytes(fn, encodeCanonical(reapi.Directory, d))));
  for (const [i, directory] of directories.entries()) {
    const at = i === 0 ? `${field}.tree.root` : `${field}.tree.children[${i - 1}]`;
    for (const [j, file] of (directory.files ?? []).entries()) referenced.add(file.digest, `${at}.files[${j}].digest`);
    for (const [j, sub] of (directory.directories ?? []).entries()) {
      if (!contained.has(sub.digest?.hash ?? '')) referenced.add(sub.digest, `${at}.directories[${j}].digest`);
    }
  }
}
