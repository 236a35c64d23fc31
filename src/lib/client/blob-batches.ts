/**
 * The batcher: how the CAS client packs many blobs into few requests. Small blobs travel together
 * in BatchUpdateBlobs/BatchReadBlobs requests under the server's batch limit, digest lists in
 * FindMissingBlobs requests of bounded length, and requests never mix instance names or digest
 * functions. Large blobs go through ByteStream instead (see byte-stream-client.ts).
 */
import { Digest } from '../digest/digest.js';
import { digestFunctionToProto } from '../digest/digest-function.js';
import type { reapi } from '../proto/index.js';
import { instanceRequestFields } from './connection.js';

export { FIND_MISSING_BATCH_DIGESTS } from '../proto/message-limits.js';

/** Conservative encoded size of one batch entry without its data (digest, tags, lengths). */
export const BATCH_ENTRY_OVERHEAD_BYTES = 200;

/** True when a blob of this size goes in a batch request rather than through ByteStream. */
export function fitsInBatch(digest: Digest, byteStreamThresholdBytes: number, limitBytes: number): boolean {
  return digest.sizeBytes <= byteStreamThresholdBytes && digest.sizeBytes + BATCH_ENTRY_OVERHEAD_BYTES <= limitBytes;
}

/** Batches of small items, each within `limitBytes` and of one instance and digest function. */
export function planBatches<T>(items: readonly T[], digestOf: (item: T) => Digest, limitBytes: number): T[][] {
  return groupByInstance(items, digestOf).flatMap((group) => packBatches(group, (i) => digestOf(i).sizeBytes, limitBytes));
}

/** Greedy packing in argument order: each batch's sizes plus per-entry overhead stay within `limitBytes`. */
export function packBatches<T>(items: readonly T[], sizeOf: (item: T) => number, limitBytes: number): T[][] {
  const batches: T[][] = [];
  let current: T[] = [];
  let total = 0;
  for (const item of items) {
    const cost = sizeOf(item) + BATCH_ENTRY_OVERHEAD_BYTES;
    if (current.length > 0 && total + cost > limitBytes) {
      batches.push(current);
      current = [];
      total = 0;
    }
    current.push(item);
    total += cost;
  }
  if (current.length) batches.push(current);
  return batches;
}

/**
 * The digests of `batch` that a FindMissingBlobs answer names, without re-parsing the answer: servers
 * (ours included) answer in request order, so a forward scan matches each entry in passing; entries
 * out of order fall back to a lookup table, and entries that were never asked about are ignored.
 */
export function matchAnswered(batch: readonly Digest[], answered: readonly reapi.IDigest[]): Digest[] {
  const out: Digest[] = [];
  let next = 0;
  let byName: Map<string, Digest> | undefined;
  for (const a of answered) {
    const hash = a.hash ?? '';
    const sizeBytes = Number(a.sizeBytes ?? 0);
    let found: Digest | undefined;
    for (let i = next; i < batch.length; i++) {
      const d = batch[i]!;
      if (d.hash === hash && d.sizeBytes === sizeBytes) {
        found = d;
        next = i + 1;
        break;
      }
    }
    if (!found) {
      byName ??= new Map(batch.map((d) => [`${d.hash}/${d.sizeBytes}`, d]));
      found = byName.get(`${hash}/${sizeBytes}`);
    }
    if (found) out.push(found);
  }
  return out;
}

/** Splits items by the instance name and digest function of their digests, keeping order. */
export function groupByInstance<T>(items: readonly T[], digestOf: (item: T) => Digest): T[][] {
  if (items.length === 0) return [];
  // The common case: one instance and one function, with no key to build per item.
  const first = digestOf(items[0]!);
  const sameAsFirst = (item: T): boolean => {
    const d = digestOf(item);
    return d.instanceName === first.instanceName && d.digestFunction === first.digestFunction;
  };
  if (items.every(sameAsFirst)) return [[...items]];
  const groups = new Map<string, T[]>();
  for (const item of items) {
    const d = digestOf(item);
    const key = `${d.instanceName}\u0000${d.digestFunction}`;
    const group = groups.get(key);
    if (group) group.push(item);
    else groups.set(key, [item]);
  }
  return [...groups.values()];
}

/** The distinct digests, first occurrence kept. */
export function dedupe(digests: readonly Digest[]): Digest[] {
  const seen = new Set<string>();
  return digests.filter((d) => (seen.has(d.key) ? false : (seen.add(d.key), true)));
}

/** `items` in slices of at most `size`. */
export function chunk<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** Request fields naming the instance and digest function of `d` (requests never mix them). */
export function requestFields(d: Digest): { instanceName: string; digestFunction?: number } {
  return instanceRequestFields(d.instanceName, d.digestFunction);
}

/** A digest from a response, under the instance and function of the request it answers. */
export function digestLike(like: Digest, proto: reapi.IDigest | null | undefined, field: string): Digest {
  return Digest.fromProto(like.instanceName, digestFunctionToProto(like.digestFunction), proto, field);
}

