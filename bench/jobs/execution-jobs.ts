/**
 * Driver job for E1: the round trip of a no-op action through `serve all`. Distinct `true` actions
 * (one Command, Actions differing by salt, the empty input root) are uploaded first; then each
 * Execute (skip_cache_lookup) is timed from the call until its Operation is done, and every result
 * must be a successful execution with exit code 0.
 */
import { CasClient } from '../../src/lib/client/cas-client.js';
import { RemoteConnection, type ClientTlsFiles } from '../../src/lib/client/connection.js';
import { ExecutionClient, decodeOperation } from '../../src/lib/client/execution-client.js';
import { buildAction, buildCommand } from '../../src/lib/cas/action-builder.js';
import type { Digest } from '../../src/lib/digest/digest.js';
import { encodeWithDigest } from '../../src/lib/digest/encode-with-digest.js';
import { reapi } from '../../src/lib/proto/index.js';
import { mapConcurrent } from '../../src/lib/util/concurrency.js';
import type { LatencyResult, TimedResult } from './raw-jobs.js';

const WARMUP_ACTIONS = 5;

export interface NoopActionsResult extends LatencyResult, TimedResult {
  /** Actions run concurrently for the throughput figure. */
  throughputActions: number;
}

export async function noopActionsJob(p: {
  casAddress: string;
  schedulerAddress: string;
  runId: string;
  sequential: number;
  throughput: number;
  concurrency: number;
  /** TLS of both connections (E1-tls-*). */
  tls?: ClientTlsFiles;
}): Promise<NoopActionsResult> {
  const casConnection = new RemoteConnection(p.casAddress, { tls: p.tls });
  const execConnection = new RemoteConnection(p.schedulerAddress, { tls: p.tls });
  try {
    const cas = new CasClient(casConnection);
    const exec = new ExecutionClient(execConnection);
    const command = buildCommand({ arguments: ['true'], environmentVariables: { PATH: '/usr/bin:/bin' } });
    const inputRoot = encodeWithDigest(reapi.Directory, {});
    const total = WARMUP_ACTIONS + p.sequential + p.throughput;
    const actions = Array.from({ length: total }, (_, i) =>
      buildAction({ commandDigest: command.digest, inputRootDigest: inputRoot.digest, salt: Buffer.from(`${p.runId}-${i}`) }),
    );
    await cas.uploadBlobs([
      { digest: command.digest, data: command.bytes },
      { digest: inputRoot.digest, data: inputRoot.bytes },
      ...actions.map((a) => ({ digest: a.digest, data: a.bytes })),
    ]);
    const digests = actions.map((a) => a.digest);

    const runOne = async (digest: Digest): Promise<number> => {
      const t = performance.now();
      let last;
      for await (const op of exec.execute(digest, { skipCacheLookup: true, deadlineMs: 60_000 })) last = op;
      const ms = performance.now() - t;
      const decoded = last && decodeOperation(last);
      if (!decoded?.done) throw new Error(`Execute of ${digest} ended without a done Operation`);
      if (decoded.error) throw new Error(`Execute of ${digest} failed: ${decoded.error.message}`);
      const status = decoded.response?.status;
      if (status?.code) throw new Error(`Execute of ${digest} answered status ${status.code}: ${status.message}`);
      const exitCode = decoded.response?.result?.exitCode ?? 0;
      if (exitCode !== 0) throw new Error(`Action ${digest} (true) exited with ${exitCode}`);
      return ms;
    };

    for (const d of digests.slice(0, WARMUP_ACTIONS)) await runOne(d);
    const latenciesMs: number[] = [];
    for (const d of digests.slice(WARMUP_ACTIONS, WARMUP_ACTIONS + p.sequential)) latenciesMs.push(await runOne(d));
    const concurrent = digests.slice(WARMUP_ACTIONS + p.sequential);
    const start = performance.now();
    await mapConcurrent(concurrent, p.concurrency, runOne);
    return { latenciesMs, seconds: (performance.now() - start) / 1000, throughputActions: concurrent.length };
  } finally {
    casConnection.close();
    execConnection.close();
  }
}
