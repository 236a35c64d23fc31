/**
 * Memory of a server process as Linux reports it in `/proc/<pid>/status`: VmRSS (resident now) and
 * VmHWM (the peak since the last reset). The peak is reset by writing `5` to `/proc/<pid>/clear_refs`
 * (allowed for our own children), so each phase gets its own peak without missing short spikes
 * between samples; a 50 ms sampler backs it up where the reset is not permitted.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { MiB } from './stats.js';

export interface RssReading {
  rssBytes: number;
  hwmBytes: number;
}

export function readRss(pid: number): RssReading {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string) => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB$`, 'm').exec(status);
    if (!m) throw new Error(`Failed to read ${name} of process ${pid}: not in /proc/${pid}/status`);
    return Number(m[1]) * 1024;
  };
  return { rssBytes: field('VmRSS'), hwmBytes: field('VmHWM') };
}

/** The memory of one process over one phase. */
export interface RssPhase {
  /** Resident bytes when the phase started. */
  startBytes: number;
  /** Highest resident bytes during the phase. */
  peakBytes: number;
  /** peak - start. */
  growthBytes: number;
}

/**
 * Measures `pid`'s resident memory while `fn` runs: the start value, and the peak from VmHWM (reset
 * at the start) or from 50 ms samples when the reset is refused.
 */
export async function measureRss<T>(pid: number, fn: () => Promise<T>): Promise<{ result: T; rss: RssPhase }> {
  const start = readRss(pid).rssBytes;
  let hwmReset = true;
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
  } catch {
    hwmReset = false;
  }
  let sampledPeak = start;
  const sample = () => {
    try {
      sampledPeak = Math.max(sampledPeak, readRss(pid).rssBytes);
    } catch {
      // The process may have exited; the phase will fail on its own.
    }
  };
  const timer = setInterval(sample, 50);
  try {
    const result = await fn();
    sample();
    const peak = hwmReset ? Math.max(sampledPeak, readRss(pid).hwmBytes) : sampledPeak;
    return { result, rss: { startBytes: start, peakBytes: peak, growthBytes: Math.max(0, peak - start) } };
  } finally {
    clearInterval(timer);
  }
}

export function toMiB(bytes: number): number {
  return bytes / MiB;
}
