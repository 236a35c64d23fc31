import { describe, expect, it } from 'vitest';
import { parseRpcTimeout } from '../../../src/lib/cli/flags.js';
import { prose } from '../../../src/lib/cli/help-text.js';
import { TransferMeter } from '../../../src/lib/cli/progress.js';
import { canShowProgress, colorLevelFromEnv } from '../../../src/lib/cli/terminal.js';
import { normalizeOperationName } from '../../../src/lib/client/execution-client.js';
import { requireName } from '../../../src/server/services/request-fields.js';

describe('canShowProgress', () => {
  it('draws only on a TTY of sane width, never at 0 columns, in a dumb terminal or in CI', () => {
    expect(canShowProgress({ isTTY: true, columns: 80 }, {})).toBe(true);
    expect(canShowProgress({ isTTY: true, columns: 0 }, {})).toBe(false);
    expect(canShowProgress({ isTTY: true }, {})).toBe(false);
    expect(canShowProgress({ isTTY: true, columns: 5 }, {})).toBe(false);
    expect(canShowProgress({ isTTY: false, columns: 80 }, {})).toBe(false);
    expect(canShowProgress({ isTTY: true, columns: 80 }, { TERM: 'dumb' })).toBe(false);
    expect(canShowProgress({ isTTY: true, columns: 80 }, { CI: 'true' })).toBe(false);
    expect(canShowProgress({ isTTY: true, columns: 80 }, { CI: 'false' })).toBe(true);
  });
});

describe('colorLevelFromEnv', () => {
  it('switches colour off for a non-empty NO_COLOR unless FORCE_COLOR is set', () => {
    expect(colorLevelFromEnv({ NO_COLOR: '1' })).toBe(0);
    expect(colorLevelFromEnv({ NO_COLOR: '' })).toBeUndefined();
    expect(colorLevelFromEnv({})).toBeUndefined();
    expect(colorLevelFromEnv({ NO_COLOR: '1', FORCE_COLOR: '1' })).toBeUndefined();
  });
});

describe('TransferMeter', () => {
  it('counts blobs and bytes and gives the rate', () => {
    let now = 0;
    const meter = new TransferMeter('Uploaded', () => now);
    meter.add(1024).add(1024 * 1024);
    now = 2000;
    expect(meter.text()).toBe('Uploaded 2 blobs, 1.0 MiB (512.5 KiB/s)');
    expect(new TransferMeter('Downloaded', () => 0).add(5).text()).toBe('Downloaded 1 blob, 5 B (0 B/s)');
  });
});

describe('parseRpcTimeout', () => {
  it('takes durations and bare seconds; 0 means no deadline', () => {
    expect(parseRpcTimeout('30s')).toBe(30_000);
    expect(parseRpcTimeout('2m')).toBe(120_000);
    expect(parseRpcTimeout('500ms')).toBe(500);
    expect(parseRpcTimeout('45')).toBe(45_000);
    expect(parseRpcTimeout('0')).toBe(Infinity);
    expect(parseRpcTimeout('0s')).toBe(Infinity);
    expect(() => parseRpcTimeout('soon')).toThrow(/Invalid duration "soon"/);
  });
});

describe('prose', () => {
  it('joins hard-wrapped lines into paragraphs and keeps indented lines', () => {
    expect(prose('\nOne line\nwrapped here.\n\nSecond paragraph\n  indented example\n  another\n')).toBe('One line wrapped here.\n\nSecond paragraph\n  indented example\n  another');
  });
});

describe('operation names', () => {
  const uuid = 'b53b5e99-0162-43e1-6cbd-e44f8e6d1566';
  it('resolves a bare UUID to operations/<uuid> in the client, under the instance name', () => {
    expect(normalizeOperationName(uuid)).toBe(`operations/${uuid}`);
    expect(normalizeOperationName(uuid.toUpperCase(), 'main')).toBe(`main/operations/${uuid}`);
    expect(normalizeOperationName(`operations/${uuid}`)).toBe(`operations/${uuid}`);
    expect(normalizeOperationName('operations/does-not-exist')).toBe('operations/does-not-exist');
  });

  it('resolves a bare UUID on the server too, so that other clients can send it', () => {
    expect(requireName(uuid)).toBe(`operations/${uuid}`);
    expect(requireName(`main/operations/${uuid}`)).toBe(`main/operations/${uuid}`);
    expect(() => requireName('')).toThrow(/empty/);
  });
});
