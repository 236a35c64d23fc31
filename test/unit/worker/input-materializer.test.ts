import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, existsSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code, StatusError } from '../../../src/lib/errors/status-error.js';
import { FileCache } from '../../../src/lib/worker/file-cache.js';
import { createOutputParents, InputMaterializer } from '../../../src/lib/worker/input-materializer.js';
import { newMemoryStore, putBlob, putDirectory, putTree, RecordingBlobStore } from './worker-test-helpers.js';

describe('InputMaterializer', () => {
  let dir: string;
  let root: string;
  let store: RecordingBlobStore;
  let cache: FileCache;
  let materializer: InputMaterializer;

  beforeEach(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'bzutil-materializer-'));
    root = path.join(dir, 'root');
    mkdirSync(root);
    store = new RecordingBlobStore(newMemoryStore());
    cache = await FileCache.open({ directory: path.join(dir, 'cache'), contentAddressableStorage: store, maxSizeBytes: 1 << 20 });
    materializer = new InputMaterializer({ contentAddressableStorage: store, fileCache: cache });
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  const failure = (p: Promise<unknown>) => p.then(() => expect.fail('expected a failure'), (e: unknown) => e as StatusError);

  it('builds nested directories, files, executables and symlinks', async () => {
    const digest = await putTree(store, {
      'main.c': 'int main() {}',
      tools: { 'cc.sh': { text: '#!/bin/sh\n', executable: true }, empty: {} },
      'link': { symlink: 'tools/cc.sh' },
    });

    await materializer.materialize(digest, root);

    expect(readFileSync(path.join(root, 'main.c'), 'utf8')).toBe('int main() {}');
    expect(statSync(path.join(root, 'tools', 'cc.sh')).mode & 0o777).toBe(0o555);
    expect(statSync(path.join(root, 'main.c')).mode & 0o777).toBe(0o444);
    expect(readdirSync(path.join(root, 'tools', 'empty'))).toEqual([]);
    expect(lstatSync(path.join(root, 'link')).isSymbolicLink()).toBe(true);
    expect(readlinkSync(path.join(root, 'link'))).toBe('tools/cc.sh');
  });

  it('hard-links inputs from the cache, so a second action costs no transfer', async () => {
    const digest = await putTree(store, { 'big.bin': 'z'.repeat(10_000) });
    await materializer.materialize(digest, root);
    const second = path.join(dir, 'root2');
    mkdirSync(second);
    const readsBefore = store.count('read');

    await materializer.materialize(digest, second);

    expect(store.count('read')).toBe(readsBefore);
    const inode = statSync(path.join(root, 'big.bin')).ino;
    expect(statSync(path.join(second, 'big.bin')).ino).toBe(inode);
    expect(statSync(path.join(second, 'big.bin')).nlink).toBeGreaterThanOrEqual(3);
  });

  it('uses the Directories the scheduler resolved: no Directory fetch and no second FindMissing', async () => {
    const file = await putBlob(store, 'checked by the scheduler');
    const sub = await putDirectory(store, { files: [{ name: 'f.txt', digest: file.toProto() }] });
    const digest = await putDirectory(store, { directories: [{ name: 'sub', digest: sub.toProto() }] });
    const resolved = [
      { digest: digest.toProto(), directory: { directories: [{ name: 'sub', digest: sub.toProto() }] } },
      { digest: sub.toProto(), directory: { files: [{ name: 'f.txt', digest: file.toProto() }] } },
    ];
    store.calls.length = 0;

    await materializer.materialize(digest, root, { resolved });

    expect(readFileSync(path.join(root, 'sub', 'f.txt'), 'utf8')).toBe('checked by the scheduler');
    expect(store.count('findMissing')).toBe(0);
    expect(store.calls.flatMap((c) => c.digests)).not.toContain(sub.toString());
    expect(store.calls.flatMap((c) => c.digests)).not.toContain(digest.toString());
  });

  it('reports a file that vanished after the scheduler checked it as a missing blob', async () => {
    const gone = Digest.ofBytes(new TextEncoder().encode('deleted after the check'));
    const digest = await putDirectory(store, { files: [{ name: 'gone.txt', digest: gone.toProto() }] });
    const resolved = [{ digest: digest.toProto(), directory: { files: [{ name: 'gone.txt', digest: gone.toProto() }] } }];

    const err = await failure(materializer.materialize(digest, root, { resolved }));

    expect(err.code).toBe(Code.FAILED_PRECONDITION);
    expect(err.preconditionViolations().map((v) => v.subject)).toEqual([`blobs/${gone.hash}/${gone.sizeBytes}`]);
  });

  it('checks the resolved Directories like fetched ones: bad names refused, symlinks made last and never written through', async () => {
    const file = await putBlob(store, 'x');
    const outside = path.join(dir, 'outside');
    mkdirSync(outside);
    const bad = await putDirectory(store, { files: [{ name: '..', digest: file.toProto() }] });
    const badErr = await failure(materializer.materialize(bad, root, { resolved: [{ digest: bad.toProto(), directory: { files: [{ name: '..', digest: file.toProto() }] } }] }));
    expect(badErr.code).toBe(Code.INVALID_ARGUMENT);
    expect(readdirSync(root)).toEqual([]);

    const sub = await putDirectory(store, { files: [{ name: 'f.txt', digest: file.toProto() }] });
    const top = { directories: [{ name: 'sub', digest: sub.toProto() }], symlinks: [{ name: 'link', target: outside }] };
    const digest = await putDirectory(store, top);
    const resolved = [
      { digest: digest.toProto(), directory: top },
      { digest: sub.toProto(), directory: { files: [{ name: 'f.txt', digest: file.toProto() }] } },
    ];
    await materializer.materialize(digest, root, { resolved });
    expect(lstatSync(path.join(root, 'link')).isSymbolicLink()).toBe(true);
    expect(readFileSync(path.join(root, 'sub', 'f.txt'), 'utf8')).toBe('x');
    expect(readdirSync(outside)).toEqual([]);
  });

  it.each([
    ['a name with a slash', 'a/b'],
    ['"."', '.'],
    ['".."', '..'],
    ['an empty name', ''],
  ])('rejects %s with INVALID_ARGUMENT and writes nothing', async (_label, name) => {
    const file = await putBlob(store, 'x');
    const digest = await putDirectory(store, { files: [{ name, digest: file.toProto() }] });

    const err = await failure(materializer.materialize(digest, root));

    expect(err.code).toBe(Code.INVALID_ARGUMENT);
    expect(err.message).toContain('Invalid entry name');
    expect(readdirSync(root)).toEqual([]);
  });

  it('rejects duplicate names across files and directories', async () => {
    const file = await putBlob(store, 'x');
    const sub = await putDirectory(store, {});
    const digest = await putDirectory(store, { files: [{ name: 'dup', digest: file.toProto() }], directories: [{ name: 'dup', digest: sub.toProto() }] });

    const err = await failure(materializer.materialize(digest, root));

    expect(err.code).toBe(Code.INVALID_ARGUMENT);
    expect(err.message).toContain('"dup" appears more than once');
  });

  it.each([
    ['an absolute target', '', '/etc/passwd'],
    ['a target climbing out of the root', '', '../outside'],
    ['a target climbing out from a subdirectory', 'sub', '../../outside'],
  ])('creates a symlink with %s as given (strategy ALLOWED), without following it', async (_label, where, target) => {
    const link = { symlinks: [{ name: 'link', target }] };
    const digest = where === '' ? await putDirectory(store, link) : await putDirectory(store, { directories: [{ name: where, digest: (await putDirectory(store, link)).toProto() }] });

    await materializer.materialize(digest, root);

    expect(readlinkSync(path.join(root, where, 'link'))).toBe(target);
  });

  it.each([
    ['an empty target', ''],
    ['a NUL in the target', 'a\0b'],
  ])('rejects a symlink with %s', async (_label, target) => {
    const err = await failure(materializer.materialize(await putDirectory(store, { symlinks: [{ name: 'link', target }] }), root));

    expect(err.code).toBe(Code.INVALID_ARGUMENT);
    expect(err.message).toContain('Invalid symlink');
  });

  it('accepts a symlink climbing to a sibling inside the root', async () => {
    const digest = await putTree(store, { a: { link: { symlink: '../b/file' } }, b: { file: 'content' } });

    await materializer.materialize(digest, root);

    expect(readFileSync(path.join(root, 'a', 'link'), 'utf8')).toBe('content');
  });

  it('reports every missing file and directory as MISSING violations, writing nothing', async () => {
    const missingFile = Digest.ofBytes(new TextEncoder().encode('gone'));
    const otherMissingFile = Digest.ofBytes(new TextEncoder().encode('also gone'));
    const present = await putBlob(store, 'here');
    const digest = await putDirectory(store, {
      files: [
        { name: 'a', digest: missingFile.toProto() },
        { name: 'b', digest: otherMissingFile.toProto() },
        { name: 'c', digest: present.toProto() },
      ],
    });

    const err = await failure(materializer.materialize(digest, root));

    expect(err.code).toBe(Code.FAILED_PRECONDITION);
    expect(err.preconditionViolations().map((v) => v.subject).sort()).toEqual([missingFile.toMissingSubject(), otherMissingFile.toMissingSubject()].sort());
    expect(readdirSync(root)).toEqual([]);
  });

  it('reports a missing input root Directory as MISSING', async () => {
    const absent = Digest.ofBytes(new TextEncoder().encode('not a directory we stored'));

    const err = await failure(materializer.materialize(absent, root));

    expect(err.code).toBe(Code.FAILED_PRECONDITION);
    expect(err.preconditionViolations()).toEqual([{ type: 'MISSING', subject: absent.toMissingSubject() }]);
  });

  it('fetches a Directory used in several places once', async () => {
    const shared = await putTree(store, { f: 'same' });
    const digest = await putDirectory(store, {
      directories: [
        { name: 'x', digest: shared.toProto() },
        { name: 'y', digest: shared.toProto() },
      ],
    });

    await materializer.materialize(digest, root);

    expect(store.calls.filter((c) => c.method === 'get' && c.digests[0] === shared.toString())).toHaveLength(1);
    expect(readFileSync(path.join(root, 'y', 'f'), 'utf8')).toBe('same');
  });
});

describe('createOutputParents', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(path.join(tmpdir(), 'bzutil-outparents-'));
  });
  afterEach(() => {
    rmSync(root, { recursive: true, force: true });
  });

  it('creates the parents of outputs relative to the working directory, not the outputs themselves', async () => {
    await createOutputParents(root, {
      workingDirectory: 'work',
      outputFiles: ['out/a/file.o'],
      outputDirectories: ['gen/tree'],
      outputPaths: ['../top/p'],
    });

    expect(statSync(path.join(root, 'work', 'out', 'a')).isDirectory()).toBe(true);
    expect(existsSync(path.join(root, 'work', 'out', 'a', 'file.o'))).toBe(false);
    expect(statSync(path.join(root, 'work', 'gen')).isDirectory()).toBe(true);
    expect(existsSync(path.join(root, 'work', 'gen', 'tree'))).toBe(false);
    expect(statSync(path.join(root, 'top')).isDirectory()).toBe(true);
  });

  it.each([
    ['an absolute path', { outputFiles: ['/tmp/x'] }, 'output_files'],
    ['a path leaving the input root', { outputDirectories: ['../../x'], workingDirectory: 'w' }, 'output_directories'],
    ['a trailing slash', { outputPaths: ['dir/'] }, 'output_paths'],
    ['a working directory leaving the input root', { workingDirectory: '..' }, 'working_directory'],
  ])('rejects %s with INVALID_ARGUMENT', async (_label, command, field) => {
    const err = (await createOutputParents(root, command).catch((e: unknown) => e)) as StatusError;
    expect(err.code).toBe(Code.INVALID_ARGUMENT);
    expect(err.fieldViolations()[0]?.field).toBe(field);
  });

  it.each([
    ['an output parent', { outputFiles: ['link/new/file'] }, 'output_files'],
    ['the working directory', { workingDirectory: 'link/sub' }, 'working_directory'],
  ])('refuses to create %s through an input symlink (nothing is created outside the root)', async (_label, command, field) => {
    const outside = mkdtempSync(path.join(tmpdir(), 'bzutil-outside-'));
    try {
      symlinkSync(outside, path.join(root, 'link'));
      const err = (await createOutputParents(root, command).catch((e: unknown) => e)) as StatusError;
      expect(err.code).toBe(Code.INVALID_ARGUMENT);
      expect(err.fieldViolations()[0]?.field).toBe(field);
      expect(readdirSync(outside)).toEqual([]);
    } finally {
      rmSync(outside, { recursive: true, force: true });
    }
  });
});
