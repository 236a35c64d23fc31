/**
 * Turns the entries of an unpacked archive into a REAPI Directory tree, refusing what would let an
 * archive write outside its tree once materialised: absolute names, `..` components, a name that
 * is a symlink in one entry and a directory in another (writing through a link), and symlinks whose
 * target leaves the tree, checked after the whole archive is read by resolving every link through
 * the links it passes (so `s -> .` followed by `t -> s/..` is refused although each is lexically inside).
 * Archives come from the network: every refusal is INVALID_ARGUMENT naming the entry.
 *
 * Only the shape of the tree is held in memory (names, digests, targets); file contents are in the
 * CAS before they are added here.
 */
import type { BlobStore, CallOptions } from '../blobstore/blob-store.js';
import { compareUtf8, validateEntryName } from '../cas/tree-paths.js';
import type { Digest } from '../digest/digest.js';
import type { DigestFunction } from '../digest/digest-function.js';
import { StatusError } from '../errors/status-error.js';
import { encodeWithDigest } from '../digest/encode-with-digest.js';
import { reapi } from '../proto/index.js';

interface DirNode {
  kind: 'directory';
  children: Map<string, TreeNode>;
}
interface FileNode {
  kind: 'file';
  digest: Digest;
  isExecutable: boolean;
}
interface LinkNode {
  kind: 'symlink';
  target: string;
}
type TreeNode = DirNode | FileNode | LinkNode;

/** Symlinks followed while resolving one path before the path counts as a loop. */
const MAX_SYMLINK_HOPS = 40;

function unsafe(path: string, why: string): StatusError {
  const shown = JSON.stringify(path.length > 200 ? `${path.slice(0, 200)}...` : path);
  return StatusError.invalidArgument(`Archive entry ${shown} is refused: ${why}`, [{ field: 'uris', description: `Unsafe archive entry: ${why}` }]);
}

/**
 * The components of an entry's path ("./a/b/" -> ["a", "b"]); absolute paths, drive letters and `..`
 * components are refused. An empty list is the root itself.
 */
export function entryPathComponents(path: string): string[] {
  if (path.startsWith('/') || /^[A-Za-z]:[\\/]/.test(path)) throw unsafe(path, 'absolute names are not allowed');
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw unsafe(path, 'a ".." component would leave the tree');
  for (const p of parts) validateEntryName(p, 'archive entry');
  return parts;
}

export class ArchiveTreeBuilder {
  private readonly root: DirNode = { kind: 'directory', children: new Map() };
  private entries = 0;

  constructor(private readonly limits: { maxEntries: number }) {}

  addDirectory(path: string): void {
    this.directoryAt(path, entryPathComponents(path));
  }

  addFile(path: string, digest: Digest, isExecutable: boolean): void {
    this.place(path, { kind: 'file', digest, isExecutable });
  }

  addSymlink(path: string, target: string): void {
    if (target === '' || target.includes('\0')) throw unsafe(path, 'the symlink target is empty or contains NUL');
    if (target.startsWith('/')) throw unsafe(path, `the symlink target ${JSON.stringify(target)} is absolute`);
    this.place(path, { kind: 'symlink', target });
  }

  /** A tar hard link: a copy of a file added earlier. */
  addHardLink(path: string, linkTarget: string): void {
    const node = this.lookup(entryPathComponents(linkTarget));
    if (node?.kind !== 'file') throw unsafe(path, `the hard link target ${JSON.stringify(linkTarget)} is not a file earlier in the archive`);
    this.place(path, { ...node });
  }

  /**
   * Checks every symlink, encodes the Directory messages, stores those the CAS lacks and returns
   * the root Directory's digest.
   */
  async store(cas: BlobStore, options: { instanceName: string; digestFunction: DigestFunction }, opts: CallOptions): Promise<Digest> {
    this.checkSymlinks(this.root, []);
    const messages = new Map<string, { digest: Digest; bytes: Uint8Array }>();
    const encode = (dir: DirNode): Digest => {
      const files: reapi.IFileNode[] = [];
      const directories: reapi.IDirectoryNode[] = [];
      const symlinks: reapi.ISymlinkNode[] = [];
      for (const name of [...dir.children.keys()].sort(compareUtf8)) {
        const node = dir.children.get(name)!;
        if (node.kind === 'file') files.push({ name, digest: node.digest.toProto(), isExecutable: node.isExecutable });
        else if (node.kind === 'symlink') symlinks.push({ name, target: node.target });
        else directories.push({ name, digest: encode(node).toProto() });
      }
      const encoded = encodeWithDigest(reapi.Directory, { files, directories, symlinks }, options);
      messages.set(encoded.digest.key, encoded);
      return encoded.digest;
    };
    const rootDigest = encode(this.root);
    const all = [...messages.values()];
    const missing = new Set((await cas.findMissing(all.map((m) => m.digest), opts)).map((d) => d.key));
    for (const m of all) if (missing.has(m.digest.key)) await cas.put(m.digest, m.bytes, opts);
    return rootDigest;
  }

  private place(path: string, node: FileNode | LinkNode): void {
    const parts = entryPathComponents(path);
    if (parts.length === 0) throw unsafe(path, 'a file or symlink cannot replace the root');
    const parent = this.directoryAt(path, parts.slice(0, -1));
    const name = parts[parts.length - 1]!;
    const existing = parent.children.get(name);
    if (existing?.kind === 'directory') throw unsafe(path, 'it names a directory made by an earlier entry');
    if (existing?.kind === 'symlink' && node.kind !== 'symlink') throw unsafe(path, 'it would write through a symlink made by an earlier entry');
    if (!existing) this.count(path);
    // A later entry of the same kind replaces an earlier one, as tar does when extracting.
    parent.children.set(name, node);
  }

  private directoryAt(path: string, parts: readonly string[]): DirNode {
    let dir = this.root;
    for (const part of parts) {
      const child = dir.children.get(part);
      if (child === undefined) {
        this.count(path);
        const made: DirNode = { kind: 'directory', children: new Map() };
        dir.children.set(part, made);
        dir = made;
      } else if (child.kind === 'directory') {
        dir = child;
      } else {
        throw unsafe(path, `${JSON.stringify(part)} is a ${child.kind === 'symlink' ? 'symlink' : 'file'} made by an earlier entry, not a directory`);
      }
    }
    return dir;
  }

  private lookup(parts: readonly string[]): TreeNode | undefined {
    let node: TreeNode | undefined = this.root;
    for (const part of parts) {
      if (node?.kind !== 'directory') return undefined;
      node = node.children.get(part);
    }
    return node;
  }

  private count(path: string): void {
    this.entries += 1;
    if (this.entries > this.limits.maxEntries) {
      throw StatusError.resourceExhausted(`The archive has more than ${this.limits.maxEntries} entries (at ${JSON.stringify(path.slice(0, 200))})`);
    }
  }

  private checkSymlinks(dir: DirNode, at: readonly string[]): void {
    for (const [name, node] of dir.children) {
      if (node.kind === 'directory') this.checkSymlinks(node, [...at, name]);
      else if (node.kind === 'symlink') this.resolveInside([...at, name].join('/'), at, node.target);
    }
  }

  /**
   * Resolves `target` (relative to the directory `from`) through the tree's own symlinks; throws
   * when any step climbs above the root. Components that do not exist (a dangling link) are walked
   * lexically, so their `..` steps are counted as well.
   */
  private resolveInside(linkPath: string, from: readonly string[], target: string): void {
    const stack = [...from];
    const pending = target.split('/').reverse();
    let hops = 0;
    while (pending.length > 0) {
      const part = pending.pop()!;
      if (part === '' || part === '.') continue;
      if (part === '..') {
        if (stack.length === 0) throw unsafe(linkPath, `the symlink target ${JSON.stringify(target)} leaves the tree`);
        stack.pop();
        continue;
      }
      const node = this.lookup([...stack, part]);
      if (node?.kind === 'symlink') {
        if (++hops > MAX_SYMLINK_HOPS) throw unsafe(linkPath, 'its symlinks form a loop');
        if (node.target.startsWith('/')) throw unsafe(linkPath, 'it resolves through an absolute symlink');
        pending.push(...node.target.split('/').reverse());
        continue;
      }
      // Absent names and files are walked lexically: what follows them must stay inside too.
      stack.push(part);
    }
  }
}
