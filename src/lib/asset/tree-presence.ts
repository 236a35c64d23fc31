/**
 * Whether a Directory tree is still whole in the CAS. The asset index and the CAS are evicted
 * independently (like the action cache and the CAS), so a recorded directory may have lost some of
 * its files; answering it would hand the client a tree it cannot download. The walk fetches each
 * distinct Directory once, then asks the CAS about every file in findMissing batches.
 */
import type { BlobStore, CallOptions } from '../blobstore/blob-store.js';
import { Digest } from '../digest/digest.js';
import { digestFunctionToProto } from '../digest/digest-function.js';
import { Code, hasCode, StatusError } from '../errors/status-error.js';
import { reapi } from '../proto/index.js';
import { mapConcurrent } from '../util/concurrency.js';

export interface TreePresenceLimits {
  /** Distinct directories walked before giving up (the tree then counts as absent). @default 100 000 */
  maxDirectories?: number;
  /** Largest Directory message read. @default 4 MiB */
  maxDirectoryBytes?: number;
}

const FIND_MISSING_BATCH = 10_000;

/**
 * The digests of `root`'s tree (directories and files) and of `extra` that are absent from the CAS;
 * empty when all are there. A Directory that cannot be decoded, or a tree past the limits, counts
 * its root as absent.
 */
export async function missingFromTree(
  contentAddressableStorage: BlobStore,
  root: Digest,
  extra: readonly Digest[],
  opts: CallOptions & TreePresenceLimits = {},
): Promise<Digest[]> {
  const maxDirectories = opts.maxDirectories ?? 100_000;
  const maxDirectoryBytes = opts.maxDirectoryBytes ?? 4 * 1024 * 1024;
  const fnValue = digestFunctionToProto(root.digestFunction);
  const seen = new Set<string>([root.key]);
  const files = new Map<string, Digest>();
  let level = [root];
  let walked = 0;
  while (level.length > 0) {
    walked += level.length;
    if (walked > maxDirectories) return [root];
    const messages = await mapConcurrent(level, 16, async (d) => {
      try {
        return reapi.Directory.decode(await contentAddressableStorage.get(d, { signal: opts.signal, maxBytes: maxDirectoryBytes }));
      } catch (err) {
        if (hasCode(err, Code.NOT_FOUND) || hasCode(err, Code.RESOURCE_EXHAUSTED) || !(err instanceof StatusError)) return d;
        throw err;
      }
    });
    const next: Digest[] = [];
    for (const m of messages) {
      if (m instanceof Digest) return [m];
      try {
        for (const f of m.files) {
          const d = Digest.fromProto(root.instanceName, fnValue, f.digest, 'files.digest');
          files.set(d.key, d);
        }
        for (const sub of m.directories) {
          const d = Digest.fromProto(root.instanceName, fnValue, sub.digest, 'directories.digest');
          if (!seen.has(d.key)) {
            seen.add(d.key);
            next.push(d);
          }
        }
      } catch {
        return [root];
      }
    }
    level = next;
  }
  const all = [...files.values(), ...extra];
  const missing: Digest[] = [];
  for (let i = 0; i < all.length; i += FIND_MISSING_BATCH) {
    missing.push(...(await contentAddressableStorage.findMissing(all.slice(i, i + FIND_MISSING_BATCH), opts)));
  }
  return missing;
}
