import { describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/lib/util/logger.js';
import { isLoopbackAddress } from '../../../src/lib/util/address.js';
import { warnIfExposed } from '../../../src/server/exposure-warning.js';

function capture(): { lines: string[]; logger: ReturnType<typeof createLogger> } {
  const lines: string[] = [];
  return { lines, logger: createLogger({ level: 'debug', write: (l) => lines.push(l) }) };
}

describe('exposure warning', () => {
  it('tells loopback and Unix sockets from addresses the network reaches', () => {
    for (const a of ['127.0.0.1:9099', '127.1.2.3:0', 'localhost:12100', '[::1]:9099', 'unix:/tmp/x/worker.sock']) expect(isLoopbackAddress(a), a).toBe(true);
    for (const a of ['0.0.0.0:9099', '10.0.0.2:9098', '[::]:9099', 'build.example:12100', '128.0.0.1:1']) expect(isLoopbackAddress(a), a).toBe(false);
  });

  it('warns once for a non-loopback address without TLS or authentication, naming what is missing', () => {
    const { lines, logger } = capture();
    expect(warnIfExposed(logger, 'scheduler', '127.0.0.1:9099')).toBe(false);
    expect(lines).toEqual([]);
    expect(warnIfExposed(logger, 'scheduler', '0.0.0.0:9099')).toBe(true);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/0\.0\.0\.0:9099 without TLS or authentication.*run commands/);
    expect(warnIfExposed(logger, 'apiserver', '0.0.0.0:12100', { tls: true, auth: false })).toBe(true);
    expect(lines[1]).toMatch(/without authentication/);
    expect(warnIfExposed(logger, 'apiserver', '0.0.0.0:12100', { tls: true, auth: true })).toBe(false);
    expect(lines).toHaveLength(2);
  });
});
