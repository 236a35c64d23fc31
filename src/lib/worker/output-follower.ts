/**
 * Live output of a running action: follows the stdout and stderr files the runner writes (the disk
 * is the buffer) and hands what is new to `send` in chunks, one send at a time. Memory does not grow
 * with the output: at most one batch (two chunks of `maxChunkBytes`) is held, and when the reader
 * falls more than `maxBehindBytes` behind a stream it skips ahead to the last `maxBehindBytes`
 * (the chunk's offset then shows the gap). A failed send is dropped, not retried: live logs are a
 * convenience, the ActionResult's stdout/stderr remain the record.
 */
import { promises as fsp } from 'node:fs';
import { type Clock, systemClock } from '../util/clock.js';
import type { Logger } from '../util/logger.js';

export type OutputStreamName = 'stdout' | 'stderr';

export interface OutputChunk {
  stream: OutputStreamName;
  /** Position of `data[0]` in the stream. */
  offset: number;
  data: Uint8Array;
}

export interface OutputFiles {
  stdoutPath: string;
  stderrPath: string;
}

export interface OutputFollowerOptions {
  /** Delivers one batch; the follower waits for it before reading more. */
  send: (chunks: OutputChunk[]) => Promise<void>;
  /** How often the files are checked for new output. @default 200 ms */
  intervalMs?: number;
  /** Most bytes read from one stream per batch. @default 64 KiB */
  maxChunkBytes?: number;
  /** Farthest the reader may lag behind a stream before it skips ahead. @default 1 MiB */
  maxBehindBytes?: number;
  /** Longest `stop` spends sending what is left. @default 2 s */
  finalFlushMs?: number;
  clock?: Clock;
  logger?: Logger;
}

export interface OutputFollower {
  /** Sends what the files hold now (within `finalFlushMs`) and stops following. */
  stop(): Promise<void>;
}

/** Starts following `files`; call `stop` once the command has exited. */
export function followOutput(files: OutputFiles, opts: OutputFollowerOptions): OutputFollower {
  const clock = opts.clock ?? systemClock;
  const intervalMs = opts.intervalMs ?? 200;
  const maxChunk = opts.maxChunkBytes ?? 64 * 1024;
  const maxBehind = Math.max(maxChunk, opts.maxBehindBytes ?? 1024 * 1024);
  const streams = [
    { stream: 'stdout' as const, path: files.stdoutPath, offset: 0 },
    { stream: 'stderr' as const, path: files.stderrPath, offset: 0 },
  ];
  const stopping = new AbortController();
  let sendFailures = 0;

  /**
   * What is new in one stream, or undefined. A stat first (one thread-pool round trip): most checks
   * find nothing new (every check of a quiet action, and the last one of every action), and only a
   * stream that grew is opened and read.
   */
  const readStream = async (s: (typeof streams)[number]): Promise<OutputChunk | undefined> => {
    let handle: fsp.FileHandle | undefined;
    try {
      const { size } = await fsp.stat(s.path);
      if (size < s.offset) s.offset = 0; // truncated: a new command started writing
      if (size - s.offset > maxBehind) s.offset = size - maxBehind;
      const length = Math.min(maxChunk, size - s.offset);
      if (length <= 0) return undefined;
      handle = await fsp.open(s.path, 'r');
      const buffer = Buffer.allocUnsafe(length);
      const { bytesRead } = await handle.read(buffer, 0, length, s.offset);
      if (bytesRead <= 0) return undefined;
      const chunk = { stream: s.stream, offset: s.offset, data: buffer.subarray(0, bytesRead) };
      s.offset += bytesRead;
      return chunk;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') opts.logger?.debug('Failed to read live output', { path: s.path, error: err });
      return undefined;
    } finally {
      await handle?.close();
    }
  };

  /** One batch of what is new (empty when nothing is); both streams are checked at once. */
  const readBatch = async (): Promise<OutputChunk[]> => (await Promise.all(streams.map(readStream))).filter((c): c is OutputChunk => c !== undefined);

  const send = async (chunks: OutputChunk[]) => {
    try {
      await opts.send(chunks);
    } catch (err) {
      // Logged once per action: a scheduler without live logs must not flood the worker's log.
      if (sendFailures++ === 0) opts.logger?.debug('Failed to send live output; dropping it', { error: err });
    }
  };

  const loop = (async () => {
    // Following starts as the command is being started: there is nothing to read yet, so the first
    // check waits one interval (a no-op action is then never checked before `stop`).
    let idle = true;
    while (!stopping.signal.aborted) {
      if (idle) await clock.sleep(intervalMs, stopping.signal).catch(() => {});
      if (stopping.signal.aborted) break;
      const chunks = await readBatch();
      idle = chunks.length === 0;
      if (!idle) await send(chunks);
    }
  })();

  return {
    async stop() {
      stopping.abort();
      await loop;
      const deadline = clock.now() + (opts.finalFlushMs ?? 2000);
      while (clock.now() < deadline) {
        const chunks = await readBatch();
        if (chunks.length === 0) return;
        await send(chunks);
      }
    },
  };
}
