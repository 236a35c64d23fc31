/**
 * Builders shared by the scheduler tests: actions with real Command and input-tree blobs in a
 * MemoryBlobStore-backed CAS, and a build queue on a FakeClock.
 */
import { BlobStoreActionCache } from '../../../src/lib/actioncache/action-cache.js';
import { MemoryBlobStore } from '../../../src/lib/blobstore/memory-blob-store.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { encodeWithDigest } from '../../../src/lib/digest/encode-with-digest.js';
import { reapi } from '../../../src/lib/proto/index.js';
import { InMemoryBuildQueue, type InMemoryBuildQueueOptions } from '../../../src/lib/scheduler/in-memory-build-queue.js';
import type { OperationSnapshot } from '../../../src/lib/scheduler/operation-snapshot.js';
import type { SchedulerStateStore } from '../../../src/lib/scheduler/state-store.js';
import { FakeClock } from '../../../src/lib/util/clock.js';

export interface TestStores {
  cas: MemoryBlobStore;
  acStore: MemoryBlobStore;
  actionCache: BlobStoreActionCache;
}

export function createStores(): TestStores {
  const cas = new MemoryBlobStore({ maxSizeBytes: 64 * 1024 * 1024 });
  const acStore = new MemoryBlobStore({ maxSizeBytes: 16 * 1024 * 1024 });
  return { cas, acStore, actionCache: new BlobStoreActionCache(acStore) };
}

/**
 * Where the queues of createQueue keep their state: in memory (no store) unless a test file chose a
 * store factory, as in-memory-build-queue.sqlite.test.ts does to run the queue's tests over SQLite.
 */
let stateFactory: (() => SchedulerStateStore) | undefined;
const openStores: SchedulerStateStore[] = [];

export function useStateStore(factory: () => SchedulerStateStore): void {
  stateFactory = factory;
}

/** Closes the stores opened for the queues created so far. */
export function closeStateStores(): void {
  for (const store of openStores.splice(0)) store.close();
}

export function createQueue(
  stores: TestStores,
  opts: Partial<InMemoryBuildQueueOptions> = {},
): { queue: InMemoryBuildQueue; clock: FakeClock } {
  const clock = (opts.clock as FakeClock | undefined) ?? new FakeClock(1_700_000_000_000);
  let next = 0;
  const state = opts.state ?? stateFactory?.();
  if (state && !opts.state) openStores.push(state);
  const queue = new InMemoryBuildQueue({
    ...(state ? { state } : {}),
    contentAddressableStorage: stores.cas,
    actionCache: stores.actionCache,
    clock,
    newId: () => `id-${++next}`,
    ...opts,
  });
  return { queue, clock };
}

export async function putMessage<T>(cas: MemoryBlobStore, cls: { encode(m: T): { finish(): Uint8Array } }, message: T, instanceName = ''): Promise<Digest> {
  const { bytes, digest } = encodeWithDigest(cls, message, { instanceName });
  await cas.put(digest, bytes);
  return digest;
}

export function blob(text: string): { bytes: Uint8Array } {
  return { bytes: new TextEncoder().encode(text) };
}

export interface TestAction {
  actionDigest: Digest;
  commandDigest: Digest;
  inputRootDigest: Digest;
  /** Digest of `sub/deep/b.txt`, the file deepest in the input tree. */
  deepFileDigest: Digest;
}

export interface ActionSpec {
  args?: string[];
  platform?: [string, string][];
  /** Deprecated Command.platform, used when the Action has none. */
  commandPlatform?: [string, string][];
  timeoutMs?: number;
  doNotCache?: boolean;
  instanceName?: string;
  /** Blobs to leave out of the CAS. */
  omit?: ('command' | 'deepFile' | 'subDirectory' | 'action')[];
}

/**
 * Uploads an Action whose input root is `a.txt` and `sub/deep/b.txt` (three Directory blobs, two
 * files), leaving out what `spec.omit` names.
 */
export async function uploadAction(cas: MemoryBlobStore, spec: ActionSpec = {}): Promise<TestAction> {
  const instanceName = spec.instanceName ?? '';
  const omit = new Set(spec.omit ?? []);
  const put = async <T>(cls: { encode(m: T): { finish(): Uint8Array } }, message: T, skip: boolean) => {
    const { bytes, digest } = encodeWithDigest(cls, message, { instanceName });
    if (!skip) await cas.put(digest, bytes);
    return digest;
  };
  const args = spec.args ?? ['/bin/echo', 'hello'];
  const fileA = await putRaw(cas, `contents of a for ${args.join(' ')}`, instanceName, false);
  const fileB = await putRaw(cas, `deep contents of b for ${args.join(' ')}`, instanceName, omit.has('deepFile'));
  const deep = await put(reapi.Directory, { files: [{ name: 'b.txt', digest: fileB.toProto() }] }, false);
  const sub = await put(reapi.Directory, { directories: [{ name: 'deep', digest: deep.toProto() }] }, omit.has('subDirectory'));
  const root = await put(
    reapi.Directory,
    { files: [{ name: 'a.txt', digest: fileA.toProto() }], directories: [{ name: 'sub', digest: sub.toProto() }] },
    false,
  );
  const toPlatform = (p?: [string, string][]) => (p ? { properties: p.map(([name, value]) => ({ name, value })) } : undefined);
  const commandDigest = await put(
    reapi.Command,
    { arguments: args, outputFiles: ['out.txt'], platform: toPlatform(spec.commandPlatform) },
    omit.has('command'),
  );
  const action: reapi.IAction = {
    commandDigest: commandDigest.toProto(),
    inputRootDigest: root.toProto(),
    doNotCache: spec.doNotCache ?? false,
    platform: toPlatform(spec.platform),
  };
  if (spec.timeoutMs !== undefined) action.timeout = { seconds: Math.floor(spec.timeoutMs / 1000), nanos: (spec.timeoutMs % 1000) * 1e6 };
  const actionDigest = await put(reapi.Action, action, omit.has('action'));
  return { actionDigest, commandDigest, inputRootDigest: root, deepFileDigest: fileB };
}

async function putRaw(cas: MemoryBlobStore, text: string, instanceName: string, skip: boolean): Promise<Digest> {
  const { bytes } = blob(text);
  const digest = Digest.ofBytes(bytes, { instanceName });
  if (!skip) await cas.put(digest, bytes);
  return digest;
}

/** A successful ExecuteResponse as a worker would report it. */
export function okResponse(exitCode = 0, stdout = 'done'): reapi.IExecuteResponse {
  return { status: { code: 0 }, result: { exitCode, stdoutRaw: new TextEncoder().encode(stdout) } };
}

/** Pulls the next snapshot from a follower, failing loudly if it ended. */
export async function nextSnapshot(it: AsyncIterator<OperationSnapshot>): Promise<OperationSnapshot> {
  const r = await it.next();
  if (r.done) throw new Error('The operation stream ended unexpectedly');
  return r.value;
}

/** Pulls snapshots until COMPLETED (at most `limit`), returning the last. */
export async function untilCompleted(it: AsyncIterator<OperationSnapshot>, limit = 10): Promise<OperationSnapshot> {
  for (let i = 0; i < limit; i++) {
    const s = await nextSnapshot(it);
    if (s.stage === 'COMPLETED') return s;
  }
  throw new Error(`No COMPLETED snapshot within ${limit} updates`);
}

/** Lets pending promise continuations (and one macrotask turn) run. */
export function flush(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
