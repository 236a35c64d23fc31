/**
 * The `findMissing` answer of a store with a local index: each absent digest once, in argument
 * order, the empty blob never. Shared so that every indexed store answers alike.
 */
import type { Digest } from '../digest/digest.js';
import { isEmptyBlob } from './blob-store.js';

/** Returns the digests for which `isPresent(key)` is false, deduplicated, in argument order. */
export function absentDigests(digests: readonly Digest[], isPresent: (key: string) => boolean): Digest[] {
  const missing: Digest[] = [];
  // Only absent keys need deduplicating, and they are usually few: no set over every argument.
  const missingKeys = new Set<string>();
  for (const digest of digests) {
    if (isEmptyBlob(digest) || isPresent(digest.key) || missingKeys.has(digest.key)) continue;
    missingKeys.add(digest.key);
    missing.push(digest);
  }
  return missing;
}
