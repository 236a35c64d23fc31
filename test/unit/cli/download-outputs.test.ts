import { lstat, mkdir, mkdtemp, readFile, readlink, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkNoOverlaps, downloadActionOutputs, isEmptyOrAbsent, validateOutputPath } from '../../../src/lib/cli/download-outputs.js';
import { CasClient } from '../../../src/lib/client/cas-client.js';
import { RemoteConnection } from '../../../src/lib/client/connection.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code, StatusError } from '../../../src/lib/errors/status-error.js';
import { encodeWithDigest } from '../../../src/lib/digest/encode-with-digest.js';
import { reapi } from '../../../src/lib/proto/index.js';
import { type StorageServer, startStorageServer } from '../client/storage-server.js';

const opts = { instanceName: '', digestFunction: 'sha256' as const };

let server: StorageServer;
let connection: RemoteConnection;
let cas: CasClient;
let work: string;

beforeEach(async () => {
  server = await startStorageServer();
  connection = new RemoteConnection(server.address);
  cas = new CasClient(connection);
  work = await mkdtemp(join(tmpdir(), 'bzutil-outputs-'));
});
afterEach(async () => {
  connection?.close();
  await server?.close();
  await rm(work, { recursive: true, force: true });
});

/** Stores `data` in the CAS and returns its digest. */
async function store(data: string | Uint8Array): Promise<Digest> {
  const bytes = typeof data === 'string' ? Buffer.from(data) : data;
  const digest = Digest.ofBytes(bytes, opts);
  await server.contentAddressableStorage.put(digest, bytes);
  return digest;
}

describe('downloadActionOutputs', () => {
  it('writes stdout, stderr, files with their exec bit, a Tree and symlinks at their paths', async () => {
    const stdout = await store('hello\n');
    const stderr = await store('warn\n');
    const tool = await store('#!/bin/sh\n');
    const data = await store('data');
    // An output directory `gen` holding `a.txt` and `sub/b.txt`, sent as a Tree.
    const a = await store('A');
    const b = await store('BB');
    const subDirectory: reapi.IDirectory = { files: [{ name: 'b.txt', digest: b.toProto() }] };
    const sub = encodeWithDigest(reapi.Directory, subDirectory, opts);
    const root: reapi.IDirectory = { files: [{ name: 'a.txt', digest: a.toProto() }], directories: [{ name: 'sub', digest: sub.digest.toProto() }] };
    const tree = await store(reapi.Tree.encode({ root, children: [subDirectory] }).finish());

    const dest = join(work, 'out');
    const written = await downloadActionOutputs(
      cas,
      {
        exitCode: 0,
        stdoutDigest: stdout.toProto(),
        stderrDigest: stderr.toProto(),
        outputFiles: [
          { path: 'bin/tool', digest: tool.toProto(), isExecutable: true },
          { path: 'data.txt', digest: data.toProto() },
        ],
        outputDirectories: [{ path: 'gen', treeDigest: tree.toProto() }],
        outputSymlinks: [{ path: 'latest', target: 'data.txt' }],
      },
      dest,
    );

    expect(await readFile(join(dest, 'stdout'), 'utf8')).toBe('hello\n');
    expect(await readFile(join(dest, 'stderr'), 'utf8')).toBe('warn\n');
    expect(await readFile(join(dest, 'bin/tool'), 'utf8')).toBe('#!/bin/sh\n');
    expect((await stat(join(dest, 'bin/tool'))).mode & 0o100).toBe(0o100);
    expect((await stat(join(dest, 'data.txt'))).mode & 0o111).toBe(0);
    expect(await readFile(join(dest, 'gen/a.txt'), 'utf8')).toBe('A');
    expect(await readFile(join(dest, 'gen/sub/b.txt'), 'utf8')).toBe('BB');
    expect(await readlink(join(dest, 'latest'))).toBe('data.txt');
    expect(written.directories).toEqual([{ path: join(dest, 'gen'), treeDigest: tree.toString(), files: 2, directories: 2, symlinks: 0 }]);
    expect(written.files.map((f) => f.path)).toEqual([join(dest, 'bin/tool'), join(dest, 'data.txt')]);
    expect(written.stdout).toBe(join(dest, 'stdout'));
  });

  it('writes inline stdout and file contents without asking the CAS', async () => {
    const contents = Buffer.from('inline');
    const dest = join(work, 'inline');
    await downloadActionOutputs(
      cas,
      { stdoutRaw: Buffer.from('raw out'), outputFiles: [{ path: 'f', digest: Digest.ofBytes(contents, opts).toProto(), contents, isExecutable: true }] },
      dest,
    );
    expect(await readFile(join(dest, 'stdout'), 'utf8')).toBe('raw out');
    expect(await readFile(join(dest, 'f'), 'utf8')).toBe('inline');
    expect((await stat(join(dest, 'f'))).mode & 0o100).toBe(0o100);
    // No stderr in the result: no stderr file.
    expect(await readdir(dest)).toEqual(['f', 'stdout']);
  });

  it('refuses an escaping output path before writing anything', async () => {
    const data = await store('x');
    const dest = join(work, 'escape');
    const err = await downloadActionOutputs(
      cas,
      { stdoutDigest: data.toProto(), outputFiles: [{ path: '../evil', digest: data.toProto() }] },
      dest,
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StatusError);
    expect((err as StatusError).code).toBe(Code.INVALID_ARGUMENT);
    expect(await isEmptyOrAbsent(dest)).toBe(true);
    await expect(lstat(join(work, 'evil'))).rejects.toThrow();
  });

  it('refuses an output named like the stdout file', async () => {
    const data = await store('x');
    await expect(
      downloadActionOutputs(cas, { stdoutDigest: data.toProto(), outputFiles: [{ path: 'stdout', digest: data.toProto() }] }, join(work, 'clash')),
    ).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT, message: expect.stringContaining('"stdout"') });
  });

  it('replaces what is at an output path only when asked to', async () => {
    const data = await store('new');
    const dest = join(work, 'replace');
    await mkdir(join(dest, 'gen'), { recursive: true });
    await writeFile(join(dest, 'gen/old.txt'), 'old');
    const empty = await store(reapi.Tree.encode({ root: {} }).finish());
    const result = { outputDirectories: [{ path: 'gen', treeDigest: empty.toProto() }], outputFiles: [{ path: 'f', digest: data.toProto() }] };

    await expect(downloadActionOutputs(cas, result, dest)).rejects.toMatchObject({ code: Code.ALREADY_EXISTS });
    expect(await readFile(join(dest, 'gen/old.txt'), 'utf8')).toBe('old');

    await downloadActionOutputs(cas, result, dest, { replace: true });
    expect(await readdir(join(dest, 'gen'))).toEqual([]);
    expect(await readFile(join(dest, 'f'), 'utf8')).toBe('new');
  });

  it('fails with NOT_FOUND naming the blob when an output is gone from the CAS', async () => {
    const absent = Digest.ofBytes(Buffer.from('never stored'), opts);
    await expect(downloadActionOutputs(cas, { outputFiles: [{ path: 'f', digest: absent.toProto() }] }, join(work, 'gone'))).rejects.toMatchObject({
      code: Code.NOT_FOUND,
      message: expect.stringContaining('Failed to download the output files'),
    });
  });
});

describe('output path checks', () => {
  it('accepts normalised relative paths and rejects everything else', () => {
    expect(() => validateOutputPath('a/b.txt', 'output_files.path')).not.toThrow();
    for (const bad of ['', '/etc/passwd', 'a/../b', './a', 'a//b', 'a/', '..', 'a\0b']) {
      expect(() => validateOutputPath(bad, 'output_files.path'), bad).toThrow(StatusError);
    }
  });

  it('finds entries written at the same path or one inside another', () => {
    expect(() => checkNoOverlaps([{ path: 'a', what: 'file' }, { path: 'ab', what: 'file' }, { path: 'a.b', what: 'file' }])).not.toThrow();
    // `a.b` sorts between `a` and `a/b`: the check must not rely on neighbours in sorted order.
    expect(() => checkNoOverlaps([{ path: 'a', what: 'file' }, { path: 'a.b', what: 'file' }, { path: 'a/b/c', what: 'directory' }])).toThrow(
      /file "a" and directory "a\/b\/c" would overlap/,
    );
    expect(() => checkNoOverlaps([{ path: 'x', what: 'file' }, { path: 'x', what: 'symlink' }])).toThrow(/overlap/);
  });
});
