/**
 * Leveled logging to stderr (stdout stays reserved for results), behind a small interface that
 * servers and commands take as a dependency; tests pass `silentLogger`. The implementation is pino:
 * one JSON object per line (`time`, `level`, `component`, `msg`, then the fields), which log
 * collectors read as is. On a terminal the same records are printed as short human-readable lines
 * instead (a tiny formatter, no pretty-printer dependency).
 */
import { Writable } from 'node:stream';
import { pino, type DestinationStream, type Logger as PinoLogger } from 'pino';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const LEVELS: readonly string[] = ['debug', 'info', 'warn', 'error'];

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(component: string): Logger;
}

export interface CreateLoggerOptions {
  /** @default $BZUTIL_LOG_LEVEL, else 'info' */
  level?: LogLevel;
  component?: string;
  /** Receives each record as one line without its newline. @default stderr */
  write?: (line: string) => void;
  /** JSON lines, or the short human form. @default human on a terminal (without `write`), else JSON */
  format?: 'json' | 'human';
}

export function createLogger(opts: CreateLoggerOptions = {}): Logger {
  const envLevel = process.env.BZUTIL_LOG_LEVEL;
  const level = opts.level ?? (envLevel && LEVELS.includes(envLevel) ? (envLevel as LogLevel) : 'info');
  const format = opts.format ?? (opts.write === undefined && process.stderr.isTTY ? 'human' : 'json');
  const write = opts.write ?? ((line: string) => process.stderr.write(line + '\n'));
  const root = pino(
    {
      level,
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      serializers: { error: pino.stdSerializers.err, err: pino.stdSerializers.err },
    },
    destination(format === 'human' ? (line) => write(humanLine(line)) : write),
  );
  return wrap(root, opts.component);
}

function wrap(root: PinoLogger, component: string | undefined): Logger {
  const log = component ? root.child({ component }) : root;
  const at = (level: LogLevel) => (msg: string, fields?: Record<string, unknown>) => {
    if (fields && Object.keys(fields).length > 0) log[level](fields, msg);
    else log[level](msg);
  };
  return {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: (name) => wrap(root, component ? `${component}/${name}` : name),
  };
}

/** A synchronous line sink: a record is out before the next line of code runs (no loss at exit). */
function destination(write: (line: string) => void): DestinationStream {
  return new Writable({
    decodeStrings: false,
    write(chunk: string | Buffer, _encoding, callback) {
      for (const line of String(chunk).split('\n')) if (line !== '') write(line);
      callback();
    },
  });
}

/** `2026-01-02T03:04:05.678Z INFO  [component] msg {"field":1}` from one JSON record. */
function humanLine(json: string): string {
  let record: Record<string, unknown>;
  try {
    record = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json;
  }
  const { time, level, component, msg, ...fields } = record;
  const extra = Object.keys(fields).length > 0 ? ` ${JSON.stringify(fields)}` : '';
  return `${String(time)} ${String(level).toUpperCase().padEnd(5)} ${component ? `[${String(component)}] ` : ''}${String(msg ?? '')}${extra}`;
}

export const silentLogger: Logger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
  child: () => silentLogger,
};
