/**
 * `redis://[[USER]:PASSWORD@]HOST:PORT[/DB]` as `scheduler.state` takes it, and its redaction: a
 * password in the URL must not reach logs, error messages or `--print_config`.
 */
import { StatusError } from '../../errors/status-error.js';
import { redactUrlPassword } from '../../util/redact-url.js';

export interface RedisTarget {
  host: string;
  port: number;
  db: number;
  username?: string;
  password?: string;
}

/** Parses a `redis://` URL; INVALID_ARGUMENT (without the password) when it is malformed. */
export function parseRedisUrl(text: string, field = 'scheduler.state'): RedisTarget {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    url = undefined as unknown as URL;
  }
  const dbText = url?.pathname.replace(/^\//, '') ?? '';
  if (!url || url.protocol !== 'redis:' || !url.hostname || !url.port || !/^\d{0,2}$/.test(dbText) || url.search || url.hash) {
    throw StatusError.invalidArgument(`Failed to parse the Redis address ${JSON.stringify(redactUrlPassword(text))}: expected redis://HOST:PORT[/DB]`, [
      { field, description: 'Must be redis://HOST:PORT or redis://HOST:PORT/DB (DB 0-15), optionally with USER:PASSWORD@' },
    ]);
  }
  return {
    host: url.hostname.replace(/^\[|\]$/g, ''),
    port: Number(url.port),
    db: dbText === '' ? 0 : Number(dbText),
    ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
    ...(url.password ? { password: decodeURIComponent(url.password) } : {}),
  };
}
