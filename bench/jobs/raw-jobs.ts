/**
 * Driver jobs measuring the physical limits of this machine: SHA-256 of node:crypto, the raw
 * grpc-js byte streams and unary calls against `bench/baseline/raw-server`, a sequential disk
 * write, and spawning `true`. Each job runs in a fresh driver process and returns plain numbers.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { RAW_CHANNEL_OPTIONS, encodeDownloadRequest, rawService } from '../baseline/raw-service.js';
import { blobChunks, makePool } from '../lib/data.js';
import { MiB } from '../lib/stats.js';

export interface TimedResult {
  seconds: number;
}

export interface LatencyResult {
  latenciesMs: number[];
}

/** SHA-256 over `totalBytes` of in-memory data, fed in 1 MiB updates. */
export async function sha256Job(p: { totalBytes: number; seed: string }): Promise<TimedResult> {
  const pool = makePool(p.seed);
  const start = performance.now();
  const hash = createHash('sha256');
  for (const chunk of blobChunks(pool, p.totalBytes, MiB)) hash.update(chunk);
  hash.digest();
  return { seconds: (performance.now() - start) / 1000 };
}

function rawClient(address: string): grpc.Client {
  return new grpc.Client(address, grpc.credentials.createInsecure(), RAW_CHANNEL_OPTIONS);
}

/** Waits until the channel is connected, so that connection setup is not timed. */
function waitReady(client: grpc.Client): Promise<void> {
  return new Promise((resolve, reject) => client.waitForReady(Date.now() + 10_000, (err) => (err ? reject(err) : resolve())));
}

/** Client-streams `totalBytes` in `chunkBytes` messages (one buffer sent repeatedly) with backpressure. */
export async function rawUploadJob(p: { address: string; totalBytes: number; chunkBytes: number }): Promise<TimedResult> {
  const client = rawClient(p.address);
  try {
    await waitReady(client);
    const chunk = Buffer.alloc(p.chunkBytes, 0xa5);
    const start = performance.now();
    const received = await new Promise<number>((resolve, reject) => {
      const call = client.makeClientStreamRequest<Buffer, Buffer>(rawService.upload.path, (b) => b, (b) => b, (err, res) =>
        err ? reject(err) : resolve(Number(res!.readBigUInt64BE(0))),
      );
      void (async () => {
        for (let sent = 0; sent < p.totalBytes; ) {
          const n = Math.min(p.chunkBytes, p.totalBytes - sent);
          sent += n;
          if (!call.write(n === p.chunkBytes ? chunk : chunk.subarray(0, n))) await waitEvent(call, 'drain');
        }
        call.end();
      })().catch(reject);
    });
    const seconds = (performance.now() - start) / 1000;
    if (received !== p.totalBytes) throw new Error(`Raw upload: the server counted ${received} of ${p.totalBytes} bytes`);
    return { seconds };
  } finally {
    client.close();
  }
}

/** Server-streams `totalBytes` in `chunkBytes` messages and counts them. */
export async function rawDownloadJob(p: { address: string; totalBytes: number; chunkBytes: number }): Promise<TimedResult> {
  const client = rawClient(p.address);
  try {
    await waitReady(client);
    const start = performance.now();
    const call = client.makeServerStreamRequest<Buffer, Buffer>(rawService.download.path, (b) => b, (b) => b, encodeDownloadRequest(p.totalBytes, p.chunkBytes));
    let received = 0;
    for await (const chunk of call as AsyncIterable<Buffer>) received += chunk.length;
    const seconds = (performance.now() - start) / 1000;
    if (received !== p.totalBytes) throw new Error(`Raw download: received ${received} of ${p.totalBytes} bytes`);
    return { seconds };
  } finally {
    client.close();
  }
}

function noop(client: grpc.Client): Promise<void> {
  return new Promise((resolve, reject) =>
    client.makeUnaryRequest<Buffer, Buffer>(rawService.noop.path, (b) => b, (b) => b, Buffer.alloc(0), (err) => (err ? reject(err) : resolve())),
  );
}

/** `calls` no-op unary calls with `inFlight` outstanding at any time. */
export async function rawUnaryRateJob(p: { address: string; calls: number; inFlight: number }): Promise<TimedResult> {
  const client = rawClient(p.address);
  try {
    await waitReady(client);
    for (let i = 0; i < 100; i++) await noop(client);
    let started = 0;
    const start = performance.now();
    const lane = async () => {
      while (started < p.calls) {
        started++;
        await noop(client);
      }
    };
    await Promise.all(Array.from({ length: p.inFlight }, lane));
    return { seconds: (performance.now() - start) / 1000 };
  } finally {
    client.close();
  }
}

/** Latency of `calls` sequential no-op unary calls. */
export async function rawUnaryLatencyJob(p: { address: string; calls: number }): Promise<LatencyResult> {
  const client = rawClient(p.address);
  try {
    await waitReady(client);
    for (let i = 0; i < 100; i++) await noop(client);
    const latenciesMs: number[] = [];
    for (let i = 0; i < p.calls; i++) {
      const t = performance.now();
      await noop(client);
      latenciesMs.push(performance.now() - t);
    }
    return { latenciesMs };
  } finally {
    client.close();
  }
}

/** Writes `totalBytes` to a new file in `dir` in 1 MiB writes, as the filesystem store does, then deletes it. */
export async function diskWriteJob(p: { dir: string; totalBytes: number; seed: string }): Promise<TimedResult> {
  const pool = makePool(p.seed);
  const path = join(p.dir, `disk-write-${process.pid}.bin`);
  const start = performance.now();
  const file = await open(path, 'wx');
  try {
    for (const chunk of blobChunks(pool, p.totalBytes, MiB)) {
      for (let offset = 0; offset < chunk.length; ) offset += (await file.write(chunk, offset)).bytesWritten;
    }
  } finally {
    await file.close();
  }
  const seconds = (performance.now() - start) / 1000;
  await rm(path, { force: true });
  return { seconds };
}

/** Spawns `true` `count` times with `concurrency` at once: per-process latency and the whole duration. */
export async function spawnTrueJob(p: { count: number; concurrency: number }): Promise<LatencyResult & TimedResult> {
  const runOne = () =>
    new Promise<number>((resolve, reject) => {
      const t = performance.now();
      const child = spawn('true', [], { stdio: 'ignore' });
      child.once('error', reject);
      child.once('exit', (code) => (code === 0 ? resolve(performance.now() - t) : reject(new Error(`true exited with ${code}`))));
    });
  for (let i = 0; i < 5; i++) await runOne();
  const latenciesMs: number[] = [];
  let started = 0;
  const start = performance.now();
  const lane = async () => {
    while (started < p.count) {
      started++;
      latenciesMs.push(await runOne());
    }
  };
  await Promise.all(Array.from({ length: p.concurrency }, lane));
  return { latenciesMs, seconds: (performance.now() - start) / 1000 };
}

/** Resolves on `event`, or rejects if the emitter reports an error first. */
export function waitEvent(emitter: NodeJS.EventEmitter, event: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onEvent = () => {
      emitter.off('error', onError);
      resolve();
    };
    const onError = (err: unknown) => {
      emitter.off(event, onEvent);
      reject(err);
    };
    emitter.once(event, onEvent);
    emitter.once('error', onError);
  });
}
