import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readFileOfSize, writeStreamVerified } from '../../../src/lib/client/local-files.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code, type StatusError } from '../../../src/lib/errors/status-error.js';

const bytes = (text: string) => new TextEncoder().encode(text);
async function* chunks(...parts: string[]): AsyncGenerator<Uint8Array> {
  for (const p of parts) yield bytes(p);
}

describe('local-files', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'bzutil-local-files-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('reads a file of the expected size and refuses one that changed since it was hashed', async () => {
    const file = path.join(dir, 'input');
    writeFileSync(file, 'hello');
    const digest = Digest.ofBytes(bytes('hello'));
    expect(Buffer.from(await readFileOfSize(file, digest)).toString()).toBe('hello');
    writeFileSync(file, 'hello, grown');
    const err = (await readFileOfSize(file, digest).catch((e: unknown) => e)) as StatusError;
    expect(err.code).toBe(Code.FAILED_PRECONDITION);
    expect(err.message).toContain('modified after hashing');
  });

  it('writes a verified stream into place, executable when asked', async () => {
    const target = path.join(dir, 'sub', 'tool');
    await writeStreamVerified(Digest.ofBytes(bytes('#!/bin/sh\n')), chunks('#!/bin', '/sh\n'), target, true);
    expect(readFileSync(target, 'utf8')).toBe('#!/bin/sh\n');
    expect(statSync(target).mode & 0o111).not.toBe(0);
  });

  it('leaves nothing behind when the bytes do not match the digest', async () => {
    const target = path.join(dir, 'out');
    const err = (await writeStreamVerified(Digest.ofBytes(bytes('expected')), chunks('corrupt!'), target, false).catch((e: unknown) => e)) as StatusError;
    expect(err.code).toBe(Code.DATA_LOSS);
    expect(existsSync(target)).toBe(false);
    expect(readdirSync(dir)).toEqual([]);
  });
});
