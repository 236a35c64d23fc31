/**
 * Driver job for Q1: the scheduler's queue module at scale, in its own process so that its RSS is
 * the queue's: `queued` executions are queued as the coordinator queues them (the in-memory queue
 * room, and for `sqlite` one write-through transaction each, the Action and Command kept in the file
 * instead of in memory), then `claims` times the claim of the next matching execution by a worker
 * that satisfies one of 8 platforms (claim from the room, Action read back, the lease written).
 */
import { Digest } from '../../src/lib/digest/digest.js';
import { reapi } from '../../src/lib/proto/index.js';
import { createStateStore } from '../../src/lib/scheduler/create-state-store.js';
import { InMemoryExecutionQueue } from '../../src/lib/scheduler/execution-queue.js';
import type { LoadedAction } from '../../src/lib/scheduler/load-action.js';
import { PlatformProperties } from '../../src/lib/scheduler/platform-properties.js';
import type { Execution } from '../../src/lib/scheduler/scheduler-state.js';
import { storedExecution } from '../../src/lib/scheduler/state-journal.js';

export interface QueueScaleParams {
  /** `memory` or `sqlite:PATH`. */
  state: string;
  queued: number;
  claims: number;
}

export interface QueueScaleResult {
  fillSeconds: number;
  claimLatenciesMs: number[];
  rssBytes: number;
  heapUsedBytes: number;
}

const PLATFORMS = 8;

export async function queueScaleJob(params: QueueScaleParams): Promise<QueueScaleResult> {
  const store = createStateStore(params.state);
  const queue = new InMemoryExecutionQueue<Execution>();
  const platforms = Array.from({ length: PLATFORMS }, (_, i) => PlatformProperties.fromProto({ properties: [{ name: 'pool', value: `p${i}` }] }));
  const started = performance.now();
  for (let seq = 0; seq < params.queued; seq++) {
    const platform = platforms[seq % PLATFORMS]!;
    const hash = seq.toString(16).padStart(64, '0');
    // A realistic small compile action: a few dozen arguments and environment variables.
    const loaded: LoadedAction = {
      action: reapi.Action.create({ commandDigest: { hash, sizeBytes: 900 }, inputRootDigest: { hash, sizeBytes: 300 } }),
      command: reapi.Command.create({
        arguments: ['/usr/bin/gcc', '-c', `src/file${seq}.c`, '-o', `out/file${seq}.o`, ...Array.from({ length: 30 }, (_, i) => `-Iinclude/dir${i}`)],
        environmentVariables: [{ name: 'PATH', value: '/usr/bin:/bin' }],
        outputFiles: [`out/file${seq}.o`],
      }),
      timeoutMs: 60_000,
      platform,
      sizeBytes: 1200,
    };
    const execution: Execution = {
      actionDigest: Digest.create('', 'sha256', hash, 200),
      loaded,
      platform,
      doNotCache: false,
      priority: 0,
      seq,
      timeoutMs: loaded.timeoutMs,
      queuedAtMs: Date.now(),
      queuedBytes: loaded.sizeBytes,
      stage: 'QUEUED',
      attempts: 0,
      cancelRequested: false,
      finishing: false,
      entries: new Set(),
    };
    store.putExecution(storedExecution(execution), loaded);
    if (store.holdsActions) execution.loaded = undefined;
    queue.push(execution);
  }
  const fillSeconds = (performance.now() - started) / 1000;
  globalThis.gc?.();
  const { rss, heapUsed } = process.memoryUsage();
  const claimLatenciesMs: number[] = [];
  for (let i = 0; i < params.claims; i++) {
    const t0 = performance.now();
    const [execution] = queue.claim(platforms[i % PLATFORMS]!, 1);
    if (!execution) throw new Error('The queue ran dry');
    const loaded = execution.loaded ?? store.loadAction(execution.seq);
    if (!loaded) throw new Error(`Execution ${execution.seq} lost its Action`);
    execution.stage = 'EXECUTING';
    execution.attempts++;
    store.putExecution(storedExecution(execution));
    claimLatenciesMs.push(performance.now() - t0);
  }
  store.close();
  return { fillSeconds, claimLatenciesMs, rssBytes: rss, heapUsedBytes: heapUsed };
}
