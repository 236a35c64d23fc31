/**
 * What the terminal (or pipe, or CI log) can take: colour, following the NO_COLOR and FORCE_COLOR
 * conventions, and whether a live progress line makes sense at all.
 */
import chalk, { chalkStderr } from 'chalk';

/** Narrower than this (or 0, which some CI runners report), a redrawn line wraps into garbage. */
export const MIN_PROGRESS_COLUMNS = 20;

/**
 * The colour level the environment asks for, or undefined to let chalk decide. FORCE_COLOR wins over
 * NO_COLOR (as in Node's own `tty.getColorDepth`); NO_COLOR counts when set and not empty
 * (https://no-color.org). chalk itself reads FORCE_COLOR but not NO_COLOR.
 */
export function colorLevelFromEnv(env: NodeJS.ProcessEnv = process.env): 0 | undefined {
  if (env.FORCE_COLOR !== undefined) return undefined;
  return env.NO_COLOR !== undefined && env.NO_COLOR !== '' ? 0 : undefined;
}

/** Switches chalk's colour off when NO_COLOR asks for it (for stdout and stderr, and for ora). */
export function applyColorEnvironment(env: NodeJS.ProcessEnv = process.env): void {
  if (colorLevelFromEnv(env) === 0) {
    chalk.level = 0;
    chalkStderr.level = 0;
  }
}

/** The parts of a stream that decide whether to draw progress on it. */
export interface TerminalLike {
  isTTY?: boolean;
  columns?: number;
}

/**
 * True when a spinner may be drawn on `stream`: a TTY, a sane width (a 0-column pty made ora loop
 * forever), a terminal that can move the cursor (TERM is not `dumb`) and not a CI log.
 */
export function canShowProgress(stream: TerminalLike = process.stderr, env: NodeJS.ProcessEnv = process.env): boolean {
  if (stream.isTTY !== true) return false;
  if (!(typeof stream.columns === 'number' && stream.columns >= MIN_PROGRESS_COLUMNS)) return false;
  if (env.TERM === 'dumb') return false;
  return env.CI === undefined || env.CI === '' || env.CI === 'false';
}
