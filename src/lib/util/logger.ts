/**
 * A minimal leveled logger that writes to stderr, so stdout stays reserved for results.
 * Servers and commands take a Logger as a dependency; tests pass `silentLogger`.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(component: string): Logger;
}

export function createLogger(opts: { level?: LogLevel; component?: string; write?: (line: string) => void } = {}): Logger {
  const min = ORDER[opts.level ?? ((process.env.BZUTIL_LOG_LEVEL as LogLevel | undefined) ?? 'info')] ?? ORDER.info;
  const write = opts.write ?? ((line: string) => process.stderr.write(line + '\n'));
  const prefix = opts.component ? `[${opts.component}] ` : '';
  const log = (level: LogLevel) => (msg: string, fields?: Record<string, unknown>) => {
    if (ORDER[level] < min) return;
    const extra = fields && Object.keys(fields).length ? ' ' + JSON.stringify(fields, replacer) : '';
    write(`${new Date().toISOString()} ${level.toUpperCase().padEnd(5)} ${prefix}${msg}${extra}`);
  };
  return {
    debug: log('debug'),
    info: log('info'),
    warn: log('warn'),
    error: log('error'),
    child: (component) => createLogger({ ...opts, component: opts.component ? `${opts.component}/${component}` : component }),
  };
}

function replacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) return { name: value.name, message: value.message, stack: value.stack };
  return value;
}

export const silentLogger: Logger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {},
  child: () => silentLogger,
};
