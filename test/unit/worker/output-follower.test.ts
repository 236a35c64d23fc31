/**
 * The worker's live-output follower: what the command writes to its stdout/stderr files reaches
 * `send` in order with the right offsets, one send at a time; a reader that falls far behind skips
 * ahead (bounded memory) and the chunk offsets show the gap; `stop` sends what is left.
 */
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { followOutput, type OutputChunk } from '../../../src/lib/worker/output-follower.js';

let dir: string | undefined;
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

function files() {
  dir = mkdtempSync(join(tmpdir(), 'bzutil-follow-'));
  return { stdoutPath: join(dir, 'stdout'), stderrPath: join(dir, 'stderr') };
}

const until = async (cond: () => boolean, ms = 5000) => {
  const deadline = Date.now() + ms;
  while (!cond() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  expect(cond()).toBe(true);
};

describe('followOutput', () => {
  it('sends new output of both files as it is written, then the rest on stop', async () => {
    const f = files();
    const got: OutputChunk[] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    const follower = followOutput(f, {
      intervalMs: 10,
      send: async (chunks) => {
        maxInFlight = Math.max(maxInFlight, ++inFlight);
        got.push(...chunks);
        await new Promise((r) => setTimeout(r, 5));
        inFlight--;
      },
    });
    writeFileSync(f.stdoutPath, 'one\n');
    await until(() => got.length > 0);
    expect(got[0]).toMatchObject({ stream: 'stdout', offset: 0 });
    appendFileSync(f.stdoutPath, 'two\n');
    writeFileSync(f.stderrPath, 'err\n');
    await follower.stop();
    const text = (s: string) => Buffer.concat(got.filter((c) => c.stream === s).map((c) => c.data)).toString();
    expect(text('stdout')).toBe('one\ntwo\n');
    expect(text('stderr')).toBe('err\n');
    expect(maxInFlight).toBe(1);
  });

  it('skips ahead when far behind: chunks stay small and the last maxBehindBytes arrive', async () => {
    const f = files();
    const got: OutputChunk[] = [];
    // Written before following starts: 1 MiB, far more than maxBehindBytes.
    writeFileSync(f.stdoutPath, Buffer.alloc(1024 * 1024, 'a'));
    appendFileSync(f.stdoutPath, 'END');
    const follower = followOutput(f, { intervalMs: 10, maxChunkBytes: 1024, maxBehindBytes: 4096, send: async (chunks) => void got.push(...chunks) });
    await follower.stop();
    expect(got.every((c) => c.data.length <= 1024)).toBe(true);
    expect(got[0]!.offset).toBe(1024 * 1024 + 3 - 4096);
    const all = Buffer.concat(got.map((c) => c.data));
    expect(all.length).toBe(4096);
    expect(all.toString().endsWith('END')).toBe(true);
  });

  it('drops output whose send fails and keeps going', async () => {
    const f = files();
    let calls = 0;
    writeFileSync(f.stdoutPath, 'x');
    const follower = followOutput(f, {
      intervalMs: 10,
      send: async () => {
        calls++;
        throw new Error('scheduler without live logs');
      },
    });
    await until(() => calls >= 1);
    appendFileSync(f.stdoutPath, 'y');
    await follower.stop();
    expect(calls).toBe(2);
  });
});
