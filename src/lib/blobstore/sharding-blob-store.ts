/**
 * Spreads blobs over several backends by digest, so that several apiservers hold one CAS between
 * them and every scheduler and worker finds a blob on the same one, after Buildbarn's
 * ShardingBlobAccess. Each blob lives on exactly one shard: no replication (put a `mirrored`-style
 * store under a shard for that).
 *
 * Placement is weighted rendezvous hashing (highest random weight): every shard scores every digest
 * with a hash of (shard key, digest hash) scaled by the shard's weight, and the best score wins. So a
 * shard of weight 2 gets about twice the blobs of a shard of weight 1, and adding a shard moves only
 * the blobs the new shard now wins (about weight_new / total of them), leaving every other placement
 * as it was; removing one moves only its own blobs. Placement depends on the shard keys and weights,
 * not on their order: every process of a fleet must be given the same keys and weights (the
 * `--cas a,b` shorthand keys shards by address, so the order of the list does not matter).
 *
 * The hash reads the digest's hash only (not its instance name or size): a content hash is already
 * uniform, and the same content under two instance names lands on the same shard.
 */
import type { Digest } from '../digest/digest.js';
import { isAbortError, wrapStatus } from '../errors/status-error.js';
import type { BlobStore, CallOptions, GetOptions, ReadOptions } from './blob-store.js';

export interface Shard {
  /** Identity of the shard for placement: keep it when the list changes, or its blobs move. */
  key: string;
  /** Relative share of the blobs; positive. */
  weight: number;
  backend: BlobStore;
}

export class ShardingBlobStore implements BlobStore {
  private readonly shards: readonly Shard[];
  /** Two 32-bit seeds per shard, from its key. */
  private readonly seeds: readonly (readonly [number, number])[];

  constructor(shards: readonly Shard[]) {
    if (shards.length === 0) throw new TypeError('ShardingBlobStore needs at least one shard');
    const keys = new Set<string>();
    for (const [i, s] of shards.entries()) {
      if (!(Number.isFinite(s.weight) && s.weight > 0)) throw new TypeError(`Shard ${i} has weight ${s.weight}; weights must be positive`);
      if (keys.has(s.key)) throw new TypeError(`Shard key ${JSON.stringify(s.key)} is used twice; every shard needs its own key`);
      keys.add(s.key);
    }
    this.shards = [...shards];
    this.seeds = shards.map((s) => [fnv1a(s.key, 0x811c9dc5), fnv1a(s.key, 0x9747b28c)] as const);
  }

  /** The index of the shard holding `digest`. */
  shardIndexOf(digest: Digest): number {
    const shards = this.shards;
    if (shards.length === 1) return 0;
    const hash = digest.hash;
    const a = parseInt(hash.slice(0, 8), 16) | 0;
    const b = parseInt(hash.slice(8, 16), 16) | 0;
    let best = 0;
    let bestScore = -Infinity;
    for (let i = 0; i < shards.length; i++) {
      const [s1, s2] = this.seeds[i]!;
      const x = fmix32(a ^ s1);
      const y = fmix32(b ^ s2 ^ Math.imul(x, 0x9e3779b1));
      // A uniform number in (0, 1) with 53 bits, never 0 or 1.
      const u = ((x >>> 0) * 2 ** 21 + ((y >>> 0) >>> 11) + 0.5) / 2 ** 53;
      // Weighted rendezvous: -w / ln(u) is the rate-w exponential race; the highest score wins.
      const score = -shards[i]!.weight / Math.log(u);
      if (score > bestScore) {
        bestScore = score;
        best = i;
      }
    }
    return best;
  }

  async get(digest: Digest, opts?: GetOptions): Promise<Uint8Array> {
    const i = this.shardIndexOf(digest);
    try {
      return await this.shards[i]!.backend.get(digest, opts);
    } catch (err) {
      throw this.wrap(err, i);
    }
  }

  read(digest: Digest, opts?: ReadOptions): AsyncIterable<Uint8Array> {
    const i = this.shardIndexOf(digest);
    const source = this.shards[i]!.backend.read(digest, opts);
    const wrap = (err: unknown) => this.wrap(err, i);
    return (async function* routed() {
      try {
        yield* source;
      } catch (err) {
        throw wrap(err);
      }
    })();
  }

  async put(digest: Digest, data: Uint8Array | AsyncIterable<Uint8Array>, opts?: CallOptions): Promise<void> {
    const i = this.shardIndexOf(digest);
    try {
      await this.shards[i]!.backend.put(digest, data, opts);
    } catch (err) {
      throw this.wrap(err, i);
    }
  }

  /** One findMissing per shard holding some of `digests`, in parallel; merged in argument order, each once. */
  async findMissing(digests: readonly Digest[], opts?: CallOptions): Promise<Digest[]> {
    if (digests.length === 0) return [];
    const groups = new Map<number, Digest[]>();
    for (const d of digests) {
      const i = this.shardIndexOf(d);
      let group = groups.get(i);
      if (!group) groups.set(i, (group = []));
      group.push(d);
    }
    const answers = await Promise.all(
      [...groups].map(async ([i, group]) => {
        try {
          return await this.shards[i]!.backend.findMissing(group, opts);
        } catch (err) {
          throw this.wrap(err, i);
        }
      }),
    );
    if (answers.length === 1) return dedupe(answers[0]!);
    const missing = new Set<string>();
    for (const answer of answers) for (const d of answer) missing.add(d.key);
    const out: Digest[] = [];
    for (const d of digests) {
      if (missing.delete(d.key)) out.push(d);
    }
    return out;
  }

  /** The shard's position prefixes the message; the code is kept. Aborts stay aborts. */
  private wrap(err: unknown, i: number): unknown {
    if (isAbortError(err)) return err;
    return wrapStatus(err, `Shard ${i}`);
  }
}

function dedupe(digests: Digest[]): Digest[] {
  const seen = new Set<string>();
  const out: Digest[] = [];
  for (const d of digests) {
    if (seen.has(d.key)) continue;
    seen.add(d.key);
    out.push(d);
  }
  return out.length === digests.length ? digests : out;
}

function fnv1a(text: string, seed: number): number {
  let h = seed;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return fmix32(h);
}

/** MurmurHash3's 32-bit finalizer: every input bit affects every output bit. */
function fmix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return h ^ (h >>> 16);
}
