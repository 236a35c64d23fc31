/**
 * Progress on stderr for long operations (hashing, uploading and downloading trees, following an
 * operation). Only when stderr is a terminal of sane width (see `canShowProgress`): in pipes, CI logs
 * and tests it is silent, so stderr carries nothing but errors.
 */
import ora, { type Ora } from 'ora';
import { canShowProgress } from './terminal.js';

export interface Progress {
  update(text: string): void;
  succeed(text: string): void;
  stop(): void;
}

const silent: Progress = { update: () => {}, succeed: () => {}, stop: () => {} };

/** A spinner on stderr, or a no-op when stderr cannot show one (or `enabled` is false). */
export function createProgress(text: string, enabled = true): Progress {
  if (!enabled || !canShowProgress(process.stderr)) return silent;
  const spinner: Ora = ora({ text, stream: process.stderr, isEnabled: true, discardStdin: false }).start();
  // Redraws are throttled: a tree of 100 000 files must not spend its time painting.
  let last = 0;
  return {
    update: (t) => {
      const now = Date.now();
      if (now - last < 100) return;
      last = now;
      spinner.text = t;
    },
    succeed: (t) => spinner.succeed(t),
    stop: () => spinner.stop(),
  };
}

/** `1.5 MiB`-style sizes for progress text. */
export function formatBytes(sizeBytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = sizeBytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

/**
 * Counts blobs and bytes moved and says so with the rate: `Uploaded 12 blobs, 3.4 MiB (1.2 MiB/s)`.
 * `now` is injectable for tests.
 */
export class TransferMeter {
  blobs = 0;
  bytes = 0;
  private readonly startedMs: number;

  constructor(
    private readonly verb: string,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.startedMs = now();
  }

  /** One whole blob of `sizeBytes`. */
  add(sizeBytes: number): this {
    this.blobs++;
    this.bytes += sizeBytes;
    return this;
  }

  /** Part of a blob still streaming (count the blob with `add(0)` when it is done). */
  addBytes(n: number): this {
    this.bytes += n;
    return this;
  }

  /** Bytes per second so far; 0 in the first few milliseconds. */
  rate(): number {
    const seconds = (this.now() - this.startedMs) / 1000;
    return seconds > 0.01 ? this.bytes / seconds : 0;
  }

  text(): string {
    return `${this.verb} ${this.blobs} blob${this.blobs === 1 ? '' : 's'}, ${formatBytes(this.bytes)} (${formatBytes(Math.round(this.rate()))}/s)`;
  }
}
