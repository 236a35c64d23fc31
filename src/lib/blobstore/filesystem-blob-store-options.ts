/** How FilesystemBlobStore.open is configured (filesystem-blob-store.ts). */
import type { Logger } from '../util/logger.js';
import type { SharedDirectory } from './shared-blob-directory.js';

export interface FilesystemBlobStoreOptions {
  /** Directory holding the blobs; created if absent. */
  path: string;
  /** Total bytes kept on disk; least-recently used blobs are deleted beyond it. */
  maxSizeBytes: number;
  logger?: Logger;
  /**
   * fsync each blob before it becomes visible. Off by default: a cache may lose its newest blobs on
   * power loss, and losing them only costs a re-upload.
   * @default false
   */
  fsync?: boolean;
  /**
   * Open without a stat per file: each blob's size is read from its file name, and recency after a
   * restart is the order the directories list files in rather than modification time. Stat was
   * 70% of opening a 1M-blob store (14 s -> 4 s without). Only for a content-addressed store whose
   * blobs are verified before they are stored (the CAS behind a VerifyingBlobStore): the action
   * cache keeps results under action digests, whose sizes are not the files' sizes.
   * @default false
   */
  sizesFromFileNames?: boolean;
  /**
   * A content-addressed store (the CAS, not the action cache): a blob file that may have been
   * changed since it was stored is hashed before it is served (blob-file-trust.ts). @default false
   */
  verifyOnDoubt?: boolean;
  /**
   * Other processes use the same directory at the same time (shared-blob-directory.ts): this one
   * keeps to its share of the capacity, finds their blobs on disk and never deletes them.
   * @default the directory is this store's alone
   */
  shared?: SharedDirectory;
}
