/**
 * ArchiveTreeBuilder alone: the Directory messages it stores and the archives it refuses, without
 * a download or an archive format in the way.
 */
import { describe, expect, it } from 'vitest';
import { ArchiveTreeBuilder, entryPathComponents } from '../../../src/lib/asset/archive-tree.js';
import { MemoryBlobStore } from '../../../src/lib/blobstore/memory-blob-store.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code, StatusError } from '../../../src/lib/errors/status-error.js';
import { reapi } from '../../../src/lib/proto/index.js';

const opts = { instanceName: '', digestFunction: 'sha256' as const };
const blob = (s: string) => Digest.ofBytes(new TextEncoder().encode(s));

function refusal(fn: () => void): StatusError {
  try {
    fn();
  } catch (err) {
    return err as StatusError;
  }
  throw new Error('expected a refusal');
}

describe('ArchiveTreeBuilder', () => {
  it('stores canonical Directory messages: sorted by UTF-8 bytes, hard links as copies, a later entry replacing an earlier one', async () => {
    const cas = new MemoryBlobStore({ maxSizeBytes: 1 << 20 });
    const tree = new ArchiveTreeBuilder({ maxEntries: 100 });
    tree.addFile('./b', blob('old'), false);
    tree.addFile('b', blob('new'), true);
    tree.addFile('é', blob('e'), false);
    tree.addFile('Z', blob('z'), false);
    tree.addHardLink('copy', 'b');
    tree.addSymlink('sub/link', '../Z');
    const root = await tree.store(cas, opts, {});
    const dir = reapi.Directory.decode(await cas.get(root));
    expect(dir.files.map((f) => [f.name, f.digest?.hash, !!f.isExecutable])).toEqual([
      ['Z', blob('z').hash, false],
      ['b', blob('new').hash, true],
      ['copy', blob('new').hash, true],
      ['é', blob('e').hash, false],
    ]);
    const sub = reapi.Directory.decode(await cas.get(Digest.fromProto('', 0, dir.directories[0]!.digest, 'd')));
    expect(sub.symlinks.map((l) => [l.name, l.target])).toEqual([['link', '../Z']]);
  });

  it('normalises "./" and repeated slashes, and refuses "..", absolute and drive-letter names', () => {
    expect(entryPathComponents('./a//b/')).toEqual(['a', 'b']);
    expect(entryPathComponents('./')).toEqual([]);
    for (const bad of ['../x', 'a/../../x', '/etc/passwd', 'C:/x', 'C:\\x']) {
      expect(refusal(() => entryPathComponents(bad)).code, bad).toBe(Code.INVALID_ARGUMENT);
    }
  });

  it('refuses symlink chains that leave the tree and symlink loops, at store time', async () => {
    const cas = new MemoryBlobStore({ maxSizeBytes: 1 << 20 });
    const escape = new ArchiveTreeBuilder({ maxEntries: 100 });
    // Each link is lexically inside, but d/up -> .. resolves to the root, and x -> d/up/.. above it.
    escape.addSymlink('d/up', '..');
    escape.addSymlink('x', 'd/up/..');
    await expect(escape.store(cas, opts, {})).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT, message: expect.stringContaining('leaves the tree') });
    const loop = new ArchiveTreeBuilder({ maxEntries: 100 });
    loop.addSymlink('a', 'b');
    loop.addSymlink('b', 'a');
    await expect(loop.store(cas, opts, {})).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT, message: expect.stringContaining('loop') });
    // Dangling links stay allowed, but their ".." steps still count.
    const dangling = new ArchiveTreeBuilder({ maxEntries: 100 });
    dangling.addSymlink('ok', 'missing/file');
    await dangling.store(cas, opts, {});
    dangling.addSymlink('bad', 'missing/../../x');
    await expect(dangling.store(cas, opts, {})).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT });
  });

  it('refuses kind conflicts and counts entries, directories made implicitly included', () => {
    const tree = new ArchiveTreeBuilder({ maxEntries: 3 });
    tree.addFile('a/b/c', blob('c'), false);
    expect(refusal(() => tree.addFile('a/b', blob('x'), false)).message).toContain('names a directory');
    expect(refusal(() => tree.addFile('a/b/c/d', blob('x'), false)).message).toContain('is a file');
    expect(refusal(() => tree.addFile('e', blob('e'), false)).code).toBe(Code.RESOURCE_EXHAUSTED);
  });
});
