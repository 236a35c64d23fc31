/**
 * Progress on stderr for long operations (hashing and uploading large trees). Only when stderr is a
 * terminal: in pipes, CI logs and tests it is silent, so stderr carries nothing but errors.
 */
import ora, { type Ora } from 'ora';

export interface Progress {
  update(text: string): void;
  succeed(text: string): void;
  stop(): void;
}

const silent: Progress = { update: () => {}, succeed: () => {}, stop: () => {} };

/** A spinner on stderr, or a no-op when stderr is not a TTY (or `enabled` is false). */
export function createProgress(text: string, enabled = true): Progress {
  if (!enabled || !process.stderr.isTTY) return silent;
  const spinner: Ora = ora({ text, stream: process.stderr }).start();
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
