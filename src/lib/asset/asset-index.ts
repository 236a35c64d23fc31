/**
 * The asset index maps an asset key (see asset-key.ts) to what a Push recorded or a Fetch
 * downloaded: the CAS digest, when it was recorded (for `oldest_content_accepted`), when it expires
 * (`expire_at`) and the blobs and directories the asset said it references. Records are small JSON
 * documents stored in a blob store built from `storage.asset`, like ActionResults in the action
 * cache: any store kind the AC accepts can hold them, and eviction of the index is the store's.
 */
import type { BlobStore, CallOptions } from '../blobstore/blob-store.js';
import type { Digest } from '../digest/digest.js';
import { type DigestFunction, isDigestFunctionName } from '../digest/digest-function.js';
import { Code, hasCode, StatusError, wrapStatus } from '../errors/status-error.js';

/** A digest as the index keeps it (without instance name: the key already holds that). */
export interface IndexedDigest {
  hash: string;
  sizeBytes: number;
}

export interface AssetRecord {
  kind: 'blob' | 'directory';
  /** The blob, or the root Directory. */
  digest: IndexedDigest;
  digestFunction: DigestFunction;
  /** Milliseconds since the epoch at which the content was recorded. */
  insertedAtMs: number;
  /** Milliseconds since the epoch after which the record is no longer answered; absent: never. */
  expireAtMs?: number;
  referencesBlobs: IndexedDigest[];
  referencesDirectories: IndexedDigest[];
}

export interface AssetIndex {
  /** The record under `key`, or undefined when there is none. */
  get(key: Digest, opts?: CallOptions): Promise<AssetRecord | undefined>;
  /** Records `record` under `key`, replacing any earlier one. */
  put(key: Digest, record: AssetRecord, opts?: CallOptions): Promise<void>;
}

/** Records larger than this are treated as corrupt (a record holds a few digests). */
const MAX_RECORD_BYTES = 4 * 1024 * 1024;

/** An AssetIndex over a blob store that does not verify content against keys. */
export class BlobStoreAssetIndex implements AssetIndex {
  constructor(private readonly store: BlobStore) {}

  async get(key: Digest, opts: CallOptions = {}): Promise<AssetRecord | undefined> {
    let bytes: Uint8Array;
    try {
      bytes = await this.store.get(key, { signal: opts.signal, maxBytes: MAX_RECORD_BYTES });
    } catch (err) {
      if (hasCode(err, Code.NOT_FOUND)) return undefined;
      throw wrapStatus(err, 'Failed to read the asset index');
    }
    const record = parseRecord(bytes);
    if (!record) throw StatusError.internal(`Failed to read the asset index: the record under ${key.toString()} is malformed`);
    return record;
  }

  async put(key: Digest, record: AssetRecord, opts: CallOptions = {}): Promise<void> {
    try {
      await this.store.put(key, Buffer.from(JSON.stringify(record), 'utf8'), opts);
    } catch (err) {
      throw wrapStatus(err, 'Failed to write the asset index');
    }
  }
}

function parseRecord(bytes: Uint8Array): AssetRecord | undefined {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch {
    return undefined;
  }
  const r = value as Partial<AssetRecord> | null;
  if (!r || (r.kind !== 'blob' && r.kind !== 'directory')) return undefined;
  if (!isIndexedDigest(r.digest) || typeof r.digestFunction !== 'string' || !isDigestFunctionName(r.digestFunction)) return undefined;
  if (typeof r.insertedAtMs !== 'number' || (r.expireAtMs !== undefined && typeof r.expireAtMs !== 'number')) return undefined;
  if (!Array.isArray(r.referencesBlobs) || !r.referencesBlobs.every(isIndexedDigest)) return undefined;
  if (!Array.isArray(r.referencesDirectories) || !r.referencesDirectories.every(isIndexedDigest)) return undefined;
  return r as AssetRecord;
}

function isIndexedDigest(d: unknown): d is IndexedDigest {
  const v = d as IndexedDigest | null;
  return !!v && typeof v.hash === 'string' && Number.isSafeInteger(v.sizeBytes) && v.sizeBytes >= 0;
}
