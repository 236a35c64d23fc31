/**
 * What TLS costs on the client ports (issue 11: at most 25% of C1): C1 (ByteStream upload, both
 * message sizes) and E1 (no-op action round trip) against two `serve all` processes started alike,
 * one plaintext and one with `--tls_cert/--tls_key` (a throwaway CA made with openssl at run time,
 * as the tests make theirs). Each repetition measures plaintext and then TLS, so both see the same
 * machine load; every `-tls` row's baseline is its plaintext twin from this suite. Run alone with
 * `--only=TLS`.
 */
import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createThrowawayPki } from '../../test/helpers/throwaway-ca.js';
import type { ClientTlsFiles } from '../../src/lib/client/connection.js';
import type { NoopActionsResult } from '../jobs/execution-jobs.js';
import type { TimedResult } from '../jobs/raw-jobs.js';
import { runDriver, serveAllArgs, transferTimeoutMs, type ServeProcess } from '../lib/processes.js';
import { row, rowsOrFailure } from '../lib/rows.js';
import { MiB, formatBytes, median, percentile } from '../lib/stats.js';
import type { BenchContext, BenchmarkRow } from '../lib/types.js';
import { STREAM_CHUNK_SIZES, chunkLabel } from './baselines.js';

/** TLS may cost at most this share of the plaintext figure. */
const TLS_COST_LIMIT = 0.25;
const SLOTS = 2;
const IN_FLIGHT = 16;

interface Endpoint {
  kind: 'plain' | 'tls';
  server: ServeProcess;
  casDir: string;
  tls?: ClientTlsFiles;
}

type Samples = Map<string, number[]>;

function push(samples: Samples, id: string, value: number): void {
  samples.set(id, [...(samples.get(id) ?? []), value]);
}

export async function runTlsBenchmarks(ctx: BenchContext): Promise<BenchmarkRow[]> {
  const { settings } = ctx;
  const size = settings.streamBytes;
  const c1Ids = STREAM_CHUNK_SIZES.map((c) => `C1-${chunkLabel(c)}`);
  const target = `TLS costs <= ${TLS_COST_LIMIT * 100}% of plaintext`;
  const specs = [
    ...c1Ids.flatMap((id) => [
      { id: `${id}-plain`, what: `ByteStream upload of ${formatBytes(size)}, plaintext`, unit: 'MiB/s', target: 'reported' },
      { id: `${id}-tls`, what: `ByteStream upload of ${formatBytes(size)}, TLS`, unit: 'MiB/s', target },
    ]),
    { id: 'E1-plain-p50', what: 'no-op action round trip, plaintext', unit: 'ms', target: 'reported' },
    { id: 'E1-tls-p50', what: 'no-op action round trip, TLS', unit: 'ms', target },
    { id: 'E1-plain-rate', what: 'no-op actions, plaintext', unit: 'actions/s', target: 'reported' },
    { id: 'E1-tls-rate', what: 'no-op actions, TLS', unit: 'actions/s', target },
  ];
  return rowsOrFailure(specs, ctx.log, async () => {
    const pki = createThrowawayPki();
    const endpoints: Endpoint[] = [];
    try {
      for (const kind of ['plain', 'tls'] as const) {
        const storageDir = join(ctx.tmpDir, `tls-bench-${kind}-storage`);
        const tlsArgs = kind === 'tls' ? [`--tls_cert=${pki.serverCert}`, `--tls_key=${pki.serverKey}`] : [];
        const server = await ctx.startServe([...serveAllArgs(storageDir, join(ctx.tmpDir, `tls-bench-${kind}-work`), SLOTS), ...tlsArgs], ['apiserver', 'scheduler']);
        endpoints.push({ kind, server, casDir: join(storageDir, 'cas'), tls: kind === 'tls' ? { caFile: pki.caCert } : undefined });
      }
      const samples: Samples = new Map();
      const runId = randomUUID().slice(0, 8);
      for (let rep = 0; rep < settings.repetitions; rep++) {
        for (const chunkBytes of STREAM_CHUNK_SIZES) {
          for (const e of endpoints) {
            ctx.log(`C1-${chunkLabel(chunkBytes)}-${e.kind}: upload ${formatBytes(size)}, repetition ${rep + 1}/${settings.repetitions}`);
            const seed = `${runId}-tls-${e.kind}-${chunkBytes}-${rep}`;
            const r = await runDriver<TimedResult>('bytestream-upload', { address: e.server.addresses.apiserver, seed, sizeBytes: size, chunkBytes, casDir: e.casDir, tls: e.tls }, transferTimeoutMs(size));
            push(samples, `C1-${chunkLabel(chunkBytes)}-${e.kind}`, size / MiB / r.seconds);
          }
        }
        for (const e of endpoints) {
          ctx.log(`E1-${e.kind}: ${settings.executeSequential} sequential + ${settings.executeThroughput} concurrent no-op actions, repetition ${rep + 1}/${settings.repetitions}`);
          const address = e.server.addresses.scheduler;
          const r = await runDriver<NoopActionsResult>(
            'noop-actions',
            { casAddress: address, schedulerAddress: address, runId: randomUUID(), sequential: settings.executeSequential, throughput: settings.executeThroughput, concurrency: IN_FLIGHT, tls: e.tls },
            10 * 60_000,
          );
          push(samples, `E1-${e.kind}-p50`, percentile(r.latenciesMs, 50));
          push(samples, `E1-${e.kind}-rate`, r.throughputActions / r.seconds);
        }
      }
      return specs.map((spec) => {
        const isTls = spec.id.includes('-tls');
        const plain = isTls ? samples.get(spec.id.replace('-tls', '-plain'))! : undefined;
        const higherIsBetter = spec.unit !== 'ms';
        return row({
          id: spec.id,
          what: `${spec.what}${spec.id.startsWith('E1') ? `, ${SLOTS} slots (p50 of ${settings.executeSequential} sequential; rate: ${settings.executeThroughput} actions, ${IN_FLIGHT} in flight)` : ', hash verified, blob on disk'}${isTls ? ' (baseline: plaintext twin)' : ''}`,
          unit: spec.unit,
          samples: samples.get(spec.id)!,
          baseline: plain && median(plain),
          target: spec.target,
          meets: isTls ? (_v, ratio) => ratio !== null && (higherIsBetter ? ratio >= 1 - TLS_COST_LIMIT : ratio <= 1 + TLS_COST_LIMIT) : undefined,
          details: spec.id.startsWith('C1') ? { sizeBytes: size } : undefined,
        });
      });
    } finally {
      for (const e of endpoints) await e.server.stop();
      await rm(pki.dir, { recursive: true, force: true });
    }
  });
}
