/**
 * Uploads a local directory as a Merkle tree: hash it, ask which blobs the CAS lacks, send only
 * those (Directory messages from memory, files streamed from disk). What `upload_dir` does, and
 * what any tool staging an input root needs.
 */
import { type BuildDirectoryTreeOptions, type DirectoryTree, buildDirectoryTree } from '../cas/merkle.js';
import type { Digest } from '../digest/digest.js';
import type { CasClient, UploadItem, UploadOptions, UploadResult } from './cas-client.js';

export interface UploadDirectoryResult extends UploadResult {
  tree: DirectoryTree;
  rootDigest: Digest;
}

export async function uploadDirectory(
  cas: CasClient,
  rootDir: string,
  opts: Omit<BuildDirectoryTreeOptions, 'instanceName' | 'digestFunction'> & UploadOptions = {},
): Promise<UploadDirectoryResult> {
  const tree = await buildDirectoryTree(rootDir, { ...opts, instanceName: cas.instanceName, digestFunction: cas.digestFunction });
  const items: UploadItem[] = [
    ...[...tree.directories.values()].map((d) => ({ digest: d.digest, data: d.bytes })),
    ...tree.files.map((f) => ({ digest: f.digest, path: f.absolutePath })),
  ];
  const result = await cas.uploadBlobs(items, opts);
  return { ...result, tree, rootDigest: tree.rootDigest };
}
