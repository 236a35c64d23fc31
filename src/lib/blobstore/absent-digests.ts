/**
 * The `findMissing` answer of a store with a local index: each absent digest once, in argument
 * order, the empty blob never. Shared so that every indexed store answers alike.
 */
import type { Digest } from '../digest/digest.js';
import { DigestSet } from '../digest/digest.js';

/** Returns the digests for which `isPresent(digest)` is false, deduplicated, in argument order. */
export function absentDigests(digests: readonly Digest[], isPresent: (digest: Digest) => boolean): Digest[] {
  const missing: Digest[] = [];
  // Only absent digests need deduplicating, and they are usually few: no set over every argument.
  const seen = new DigestSet();
  for (const digest of digests) {
    if (digest.isEmpty || isPresent(digest) || !seen.add(digest)) continue;
    missing.push(digest);
  }
  return missing;
}
