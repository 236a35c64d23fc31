/**
 * The `findMissing` answer of a store with a local index: each absent digest once, in argument
 * order, the empty blob never. Shared so that every indexed store answers alike.
 */
import type { Digest } from '../digest/digest.js';
import { isEmptyBlob } from './blob-store.js';

/** Returns the digests for which `isPresent(key)` is false, deduplicated, in argument order. */
export function absentDigests(digests: readonly Digest[], isPresent: (key: string) => boolean): Digest[] {
  const missing: Digest[] = [];
  const seen = new Set<string>();
  for (const digest of digests) {
    if (seen.has(digest.key)) continue;
    seen.add(digest.key);
    if (!isEmptyBlob(digest) && !isPresent(digest.key)) missing.push(digest);
  }
  return missing;
}
