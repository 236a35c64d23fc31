import { createHash } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildDirectoryTree, buildTree, materializeTree, type TreeFetcher } from '../../../src/lib/cas/merkle.js';
import { compareUtf8, validateSymlinkTarget } from '../../../src/lib/cas/tree-paths.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code, StatusError } from '../../../src/lib/errors/status-error.js';
import { encodeCanonical } from '../../../src/lib/proto/canonical.js';
import { reapi } from '../../../src/lib/proto/index.js';

const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const sha256 = (data: string | Uint8Array) => createHash('sha256').update(data).digest('hex');

/** A length-delimited protobuf field with a one-byte tag and one-byte length (enough here). */
const ld = (field: number, payload: Buffer) => Buffer.concat([Buffer.from([(field << 3) | 2, payload.length]), payload]);

let work: string;
beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'bzutil-merkle-'));
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

async function makeDir(rel: string): Promise<string> {
  const p = join(work, rel);
  await mkdir(p, { recursive: true });
  return p;
}

/** A fetcher serving the directories of a built tree and copying files from the source paths. */
function fetcherFor(tree: Awaited<ReturnType<typeof buildDirectoryTree>>): TreeFetcher & { calls: string[] } {
  const byDigest = new Map(tree.files.map((f) => [f.digest.key, f.absolutePath]));
  const calls: string[] = [];
  return {
    calls,
    async getDirectory(digest) {
      const d = tree.directories.get(digest.key);
      if (!d) throw StatusError.notFound(`no directory ${digest}`);
      return reapi.Directory.decode(d.bytes);
    },
    async downloadFile(digest, path, isExecutable) {
      calls.push(path);
      await writeFile(path, await readFile(byDigest.get(digest.key)!));
      await chmod(path, isExecutable ? 0o755 : 0o644);
    },
  };
}

/** A fetcher serving hand-written Directory messages. */
function fakeFetcher(dirs: Record<string, reapi.IDirectory>): TreeFetcher & { rootDigest: (name: string) => Digest; written: string[] } {
  const byKey = new Map<string, reapi.IDirectory>();
  const digests = new Map<string, Digest>();
  for (const [name, dir] of Object.entries(dirs)) {
    const d = Digest.ofBytes(encodeCanonical(reapi.Directory, dir));
    byKey.set(d.key, dir);
    digests.set(name, d);
  }
  const written: string[] = [];
  return {
    written,
    rootDigest: (name) => digests.get(name)!,
    async getDirectory(digest) {
      const d = byKey.get(digest.key);
      if (!d) throw StatusError.notFound(`no directory ${digest}`);
      return d;
    },
    async downloadFile(_digest, path) {
      written.push(path);
      await writeFile(path, '');
    },
  };
}

describe('buildDirectoryTree', () => {
  it('gives an empty directory the digest of zero bytes', async () => {
    const tree = await buildDirectoryTree(await makeDir('empty'));
    expect(tree.rootDigest.toString()).toBe(`${EMPTY_SHA256}/0`);
    expect(tree.files).toEqual([]);
    expect(tree.directories.size).toBe(1);
  });

  it('encodes a one-file directory exactly as the REAPI wire format prescribes', async () => {
    const dir = await makeDir('one');
    await writeFile(join(dir, 'a'), 'hello');
    const tree = await buildDirectoryTree(dir);

    // Directory{files:[FileNode{name:"a", digest:{hash, size_bytes:5}}]}, written by hand.
    const digest = Buffer.concat([ld(1, Buffer.from(sha256('hello'))), Buffer.from([0x10, 5])]);
    const fileNode = Buffer.concat([ld(1, Buffer.from('a')), ld(2, digest)]);
    const expected = ld(1, fileNode);
    expect(Buffer.from(tree.root.bytes).toString('hex')).toBe(expected.toString('hex'));
    expect(tree.rootDigest.hash).toBe(sha256(expected));
    expect(tree.rootDigest.sizeBytes).toBe(expected.length);
  });

  it('produces the same root digest whatever order files were created in', async () => {
    const names = ['z', 'a', 'm', 'b.txt', 'sub/x', 'sub/c'];
    const first = await makeDir('first');
    const second = await makeDir('second');
    for (const n of names) {
      await mkdir(join(first, n, '..'), { recursive: true });
      await writeFile(join(first, n), `content of ${n}`);
    }
    for (const n of [...names].reverse()) {
      await mkdir(join(second, n, '..'), { recursive: true });
      await writeFile(join(second, n), `content of ${n}`);
    }
    const a = await buildDirectoryTree(first);
    const b = await buildDirectoryTree(second);
    expect(a.rootDigest.key).toBe(b.rootDigest.key);
    expect(Buffer.from(a.root.bytes).equals(Buffer.from(b.root.bytes))).toBe(true);
    expect(a.files.map((f) => f.path)).toEqual(['a', 'b.txt', 'm', 'sub/c', 'sub/x', 'z']);
  });

  it('sorts entries by UTF-8 bytes, not by JS string order', async () => {
    const dir = await makeDir('utf8');
    // UTF-8 bytes: "B" 42 < "a" 61 < "z" 7a < "é" c3a9 < "ｆ" efbd86 < "😀" f09f9880.
    for (const n of ['z', 'é', 'a', 'B', '😀', 'ｆ']) await writeFile(join(dir, n), n);
    const tree = await buildDirectoryTree(dir);
    const names = (tree.root.message.files ?? []).map((f) => f.name);
    expect(names).toEqual(['B', 'a', 'z', 'é', 'ｆ', '😀']);
    // JS code-unit order would put the surrogate pair of 😀 (0xd83d) before ｆ (0xff46).
    expect(['ｆ', '😀'].sort()).toEqual(['😀', 'ｆ']);
    expect(compareUtf8('ｆ', '😀')).toBeLessThan(0);
  });

  it('marks files executable from the owner-execute bit only', async () => {
    const dir = await makeDir('exec');
    await writeFile(join(dir, 'run.sh'), '#!/bin/sh\n');
    await chmod(join(dir, 'run.sh'), 0o744);
    await writeFile(join(dir, 'group-only'), 'x');
    await chmod(join(dir, 'group-only'), 0o654);
    const tree = await buildDirectoryTree(dir);
    const byName = Object.fromEntries((tree.root.message.files ?? []).map((f) => [f.name, f.isExecutable ?? false]));
    expect(byName).toEqual({ 'group-only': false, 'run.sh': true });
  });

  it('keeps symlinks as SymlinkNodes with their literal target', async () => {
    const dir = await makeDir('links');
    await writeFile(join(dir, 'target.txt'), 'data');
    await symlink('target.txt', join(dir, 'link'));
    await symlink('../outside/nowhere', join(dir, 'dangling'));
    const tree = await buildDirectoryTree(dir);
    expect(tree.root.message.symlinks).toEqual([
      { name: 'dangling', target: '../outside/nowhere' },
      { name: 'link', target: 'target.txt' },
    ]);
    expect(tree.files.map((f) => f.path)).toEqual(['target.txt']);
    expect(tree.symlinkCount).toBe(2);
  });

  it('stores what a symlink points to when following symlinks', async () => {
    const dir = await makeDir('follow');
    await writeFile(join(dir, 'target.txt'), 'data');
    await symlink('target.txt', join(dir, 'link'));
    const tree = await buildDirectoryTree(dir, { followSymlinks: true });
    expect((tree.root.message.files ?? []).map((f) => f.name)).toEqual(['link', 'target.txt']);
    expect(tree.root.message.symlinks).toEqual([]);
  });

  it('includes empty directories as DirectoryNodes with the empty digest', async () => {
    const dir = await makeDir('withempty');
    await mkdir(join(dir, 'nothing'));
    const tree = await buildDirectoryTree(dir);
    expect(tree.root.message.directories).toEqual([{ name: 'nothing', digest: { hash: EMPTY_SHA256 } }]);
    expect(tree.directories.size).toBe(2);
  });

  it('deduplicates identical subdirectories in the directory map', async () => {
    const dir = await makeDir('dups');
    for (const d of ['one', 'two']) {
      await mkdir(join(dir, d));
      await writeFile(join(dir, d, 'same'), 'same');
    }
    const tree = await buildDirectoryTree(dir);
    expect(tree.directories.size).toBe(2);
    expect(tree.files).toHaveLength(2);
  });

  it('keeps only files matching the globs and their parent directories', async () => {
    const dir = await makeDir('globbed');
    await mkdir(join(dir, 'src/deep'), { recursive: true });
    await mkdir(join(dir, 'docs'));
    await writeFile(join(dir, 'src/main.ts'), 'ts');
    await writeFile(join(dir, 'src/deep/util.ts'), 'ts');
    await writeFile(join(dir, 'src/readme.md'), 'md');
    await writeFile(join(dir, 'docs/guide.md'), 'md');
    const tree = await buildDirectoryTree(dir, { globs: ['**/*.ts'] });
    expect(tree.files.map((f) => f.path)).toEqual(['src/deep/util.ts', 'src/main.ts']);
    expect((tree.root.message.directories ?? []).map((d) => d.name)).toEqual(['src']);
  });

  it('fails with NOT_FOUND for a missing root', async () => {
    const err = await buildDirectoryTree(join(work, 'absent')).catch((e) => e);
    expect(err).toBeInstanceOf(StatusError);
    expect(err.code).toBe(Code.NOT_FOUND);
    expect(err.message).toMatch(/^Failed to read directory/);
  });

  it('uses the requested digest function', async () => {
    const dir = await makeDir('sha1');
    await writeFile(join(dir, 'f'), 'x');
    const tree = await buildDirectoryTree(dir, { digestFunction: 'sha1' });
    expect(tree.files[0]!.digest.hash).toBe(createHash('sha1').update('x').digest('hex'));
    expect(tree.rootDigest.digestFunction).toBe('sha1');
  });
});

describe('buildTree', () => {
  it('lists the root and each distinct child directory once', async () => {
    const dir = await makeDir('tree');
    for (const d of ['a', 'b', 'b/c']) await mkdir(join(dir, d), { recursive: true });
    await writeFile(join(dir, 'a/f'), 'same');
    await writeFile(join(dir, 'b/c/f'), 'same');
    await writeFile(join(dir, 'b/g'), 'other');
    const built = await buildTree(dir);
    // a and b/c hold the same single file, so their Directory messages are one.
    expect(built.tree.children).toHaveLength(2);
    expect(Digest.ofBytes(encodeCanonical(reapi.Directory, built.tree.root!)).key).toBe(built.rootDigest.key);
    const decoded = reapi.Tree.decode(built.bytes);
    expect(decoded.children).toHaveLength(2);
    expect(built.digest.hash).toBe(sha256(built.bytes));
  });
});

describe('materializeTree', () => {
  it('round-trips: build, materialise elsewhere, build again gives the same root digest', async () => {
    const src = await makeDir('src');
    await mkdir(join(src, 'bin'));
    await mkdir(join(src, 'empty'));
    await writeFile(join(src, 'bin/tool'), '#!/bin/sh\necho hi\n');
    await chmod(join(src, 'bin/tool'), 0o755);
    await writeFile(join(src, 'data.txt'), 'payload');
    await symlink('bin/tool', join(src, 'tool-link'));
    const built = await buildDirectoryTree(src);

    const dest = join(work, 'dest');
    const result = await materializeTree(fetcherFor(built), built.rootDigest, dest);
    expect(result).toEqual({ files: 2, directories: 3, symlinks: 1 });
    expect((await stat(join(dest, 'bin/tool'))).mode & 0o100).toBe(0o100);
    expect(await readlink(join(dest, 'tool-link'))).toBe('bin/tool');
    expect((await stat(join(dest, 'empty'))).isDirectory()).toBe(true);

    const again = await buildDirectoryTree(dest);
    expect(again.rootDigest.key).toBe(built.rootDigest.key);
  });

  it.each([['..'], ['.'], [''], ['a/b']])('rejects the entry name %j with INVALID_ARGUMENT before writing', async (name) => {
    const fetcher = fakeFetcher({ root: { files: [{ name, digest: { hash: EMPTY_SHA256 } }] } });
    const dest = join(work, 'bad-name');
    const err = await materializeTree(fetcher, fetcher.rootDigest('root'), dest).catch((e) => e);
    expect(err).toBeInstanceOf(StatusError);
    expect(err.code).toBe(Code.INVALID_ARGUMENT);
    expect(fetcher.written).toEqual([]);
  });

  it('rejects a name used twice in one directory', async () => {
    const fetcher = fakeFetcher({
      root: { files: [{ name: 'x', digest: { hash: EMPTY_SHA256 } }], symlinks: [{ name: 'x', target: 'y' }] },
    });
    const err = await materializeTree(fetcher, fetcher.rootDigest('root'), join(work, 'dup')).catch((e) => e);
    expect(err.code).toBe(Code.INVALID_ARGUMENT);
    expect(err.message).toContain('appears twice');
  });

  it.each([['/etc/passwd'], ['../escape'], ['sub/../../escape']])('rejects the escaping symlink target %j', async (target) => {
    const fetcher = fakeFetcher({ root: { symlinks: [{ name: 'link', target }] } });
    const err = await materializeTree(fetcher, fetcher.rootDigest('root'), join(work, 'esc')).catch((e) => e);
    expect(err.code).toBe(Code.INVALID_ARGUMENT);
    expect(err.fieldViolations()[0]?.field).toBe('symlinks.target');
  });

  it('reports a missing directory with the path it was needed for', async () => {
    const missing = Digest.ofBytes(new TextEncoder().encode('not a directory'));
    const fetcher = fakeFetcher({ root: { directories: [{ name: 'sub', digest: missing.toProto() }] } });
    const err = await materializeTree(fetcher, fetcher.rootDigest('root'), join(work, 'miss')).catch((e) => e);
    expect(err.code).toBe(Code.NOT_FOUND);
    expect(err.message).toContain('"sub"');
  });
});

describe('validateSymlinkTarget', () => {
  it('accepts targets that climb within the tree', () => {
    expect(() => validateSymlinkTarget('a/b', 'link', '../c')).not.toThrow();
    expect(() => validateSymlinkTarget('a', 'link', '../c')).not.toThrow();
    expect(() => validateSymlinkTarget('', 'link', '../c')).toThrow(StatusError);
    // Lexically: climbing above the root and back in is still an escape.
    expect(() => validateSymlinkTarget('a', 'link', '../../a/c')).toThrow(/escapes the tree/);
    expect(() => validateSymlinkTarget('a', 'link', '/etc/passwd')).toThrow(/absolute/);
  });
});
