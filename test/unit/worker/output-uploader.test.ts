import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code, StatusError } from '../../../src/lib/errors/status-error.js';
import { encodeWithDigest } from '../../../src/lib/digest/encode-with-digest.js';
import { reapi } from '../../../src/lib/proto/index.js';
import { OutputUploader, type UploadOutputsRequest } from '../../../src/lib/worker/output-uploader.js';
import { blobText, newMemoryStore, putBlob, RecordingBlobStore } from './worker-test-helpers.js';

describe('OutputUploader', () => {
  let dir: string;
  let root: string;
  let store: RecordingBlobStore;
  let uploader: OutputUploader;

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), 'bzutil-uploader-'));
    root = path.join(dir, 'root');
    mkdirSync(root);
    store = new RecordingBlobStore(newMemoryStore());
    uploader = new OutputUploader({ contentAddressableStorage: store });
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  const write = (rel: string, text: string, mode = 0o644) => {
    mkdirSync(path.dirname(path.join(root, rel)), { recursive: true });
    writeFileSync(path.join(root, rel), text);
    chmodSync(path.join(root, rel), mode);
  };
  const upload = (command: reapi.ICommand, extra: Partial<UploadOutputsRequest> = {}) =>
    uploader.uploadOutputs({ inputRoot: root, command, instanceName: '', digestFunction: 'sha256', ...extra });
  const digestOf = (text: string) => Digest.ofBytes(new TextEncoder().encode(text)).toProto();
  const treeOf = async (digest: reapi.IDigest | null | undefined) =>
    reapi.Tree.decode(await store.get(Digest.create('', 'sha256', digest!.hash!, Number(digest!.sizeBytes ?? 0))));

  it('reports output files with digests and executable bits, and stores their contents', async () => {
    write('out/lib.a', 'archive');
    write('out/tool', '#!/bin/sh\n', 0o755);

    const result = await upload({ outputFiles: ['out/lib.a', 'out/tool'] });

    expect(result.outputFiles).toEqual([
      { path: 'out/lib.a', digest: digestOf('archive'), isExecutable: false },
      { path: 'out/tool', digest: digestOf('#!/bin/sh\n'), isExecutable: true },
    ]);
    expect(await blobText(store, digestOf('archive'))).toBe('archive');
  });

  it('resolves outputs against the working directory but reports them as declared', async () => {
    write('work/out.txt', 'w');

    const result = await upload({ workingDirectory: 'work', outputFiles: ['out.txt'] });

    expect(result.outputFiles).toEqual([{ path: 'out.txt', digest: digestOf('w'), isExecutable: false }]);
  });

  it('leaves declared outputs that were not produced out of the result', async () => {
    const result = await upload({ outputFiles: ['nope', 'no/parent/either'], outputDirectories: ['absent'] });
    expect(result).toEqual({});
  });

  it('stores an output directory as a Tree with nested, empty and deduplicated directories', async () => {
    write('gen/b.txt', 'B');
    write('gen/a/x.txt', 'X', 0o755);
    write('gen/c/x.txt', 'X', 0o755);
    mkdirSync(path.join(root, 'gen', 'a', 'empty'));
    mkdirSync(path.join(root, 'gen', 'c', 'empty'));
    symlinkSync('b.txt', path.join(root, 'gen', 'link'));

    const result = await upload({ outputDirectories: ['gen'] });

    expect(result.outputDirectories).toHaveLength(1);
    const out = result.outputDirectories![0]!;
    const tree = await treeOf(out.treeDigest);
    const same: reapi.IDirectory = { files: [{ name: 'x.txt', digest: digestOf('X'), isExecutable: true }], directories: [{ name: 'empty', digest: Digest.empty().toProto() }] };
    const sameDigest = encodeWithDigest(reapi.Directory, same).digest.toProto();
    const root_: reapi.IDirectory = {
      files: [{ name: 'b.txt', digest: digestOf('B') }],
      directories: [
        { name: 'a', digest: sameDigest },
        { name: 'c', digest: sameDigest },
      ],
      symlinks: [{ name: 'link', target: 'b.txt' }],
    };
    expect(reapi.Directory.toObject(tree.root as reapi.Directory, { defaults: false })).toEqual(
      reapi.Directory.toObject(reapi.Directory.fromObject(root_), { defaults: false }),
    );
    // a and c are identical, so the children hold that directory once, then the empty one after it.
    expect(tree.children.map((c) => encodeWithDigest(reapi.Directory, c).digest.toProto())).toEqual([sameDigest, Digest.empty().toProto()]);
    expect(out.isTopologicallySorted).toBe(true);
    expect(out.rootDirectoryDigest).toEqual(encodeWithDigest(reapi.Directory, root_).digest.toProto());
    expect(out.path).toBe('gen');
    // Files inside the tree are in the CAS too.
    expect(await blobText(store, digestOf('X'))).toBe('X');
  });

  it('describes an empty output directory as a Tree with an empty root', async () => {
    mkdirSync(path.join(root, 'empty'));

    const result = await upload({ outputDirectories: ['empty'] });

    const tree = await treeOf(result.outputDirectories![0]!.treeDigest);
    expect(tree.children).toEqual([]);
    expect(reapi.Directory.encode(tree.root!).finish()).toHaveLength(0);
    expect(result.outputDirectories![0]!.rootDirectoryDigest).toEqual(Digest.empty().toProto());
  });

  it('sorts Directory entries by UTF-8 bytes, not UTF-16 units', async () => {
    // U+FF21 is EF BC A1 in UTF-8, before U+1F600's F0 9F 98 80; in UTF-16 it is 0xFF21, after the
    // emoji's surrogate 0xD83D. A plain JS sort would get this wrong.
    write('d/\u{1F600}', '1');
    write('d/\uFF21', '2');

    const result = await upload({ outputDirectories: ['d'] });

    const tree = await treeOf(result.outputDirectories![0]!.treeDigest);
    expect(tree.root!.files!.map((f) => f.name)).toEqual(['\uFF21', '\u{1F600}']);
  });

  it('reports declared outputs that are symlinks with their literal targets (v2.0 fields)', async () => {
    write('real.txt', 'r');
    mkdirSync(path.join(root, 'realdir'));
    symlinkSync('real.txt', path.join(root, 'file-link'));
    symlinkSync('/absolute/elsewhere', path.join(root, 'dir-link'));

    const result = await upload({ outputFiles: ['file-link'], outputDirectories: ['dir-link'] });

    expect(result.outputFileSymlinks).toEqual([{ path: 'file-link', target: 'real.txt' }]);
    expect(result.outputDirectorySymlinks).toEqual([{ path: 'dir-link', target: '/absolute/elsewhere' }]);
    expect(result.outputSymlinks).toBeUndefined();
  });

  it('reports output_paths by the kind found on disk (v2.1)', async () => {
    write('p/file', 'f');
    write('p/dir/inner', 'i');
    symlinkSync('file', path.join(root, 'p', 'link'));

    const result = await upload({ outputPaths: ['p/file', 'p/dir', 'p/link', 'p/missing'] });

    expect(result.outputFiles).toEqual([{ path: 'p/file', digest: digestOf('f'), isExecutable: false }]);
    expect(result.outputDirectories?.map((d) => d.path)).toEqual(['p/dir']);
    expect(result.outputSymlinks).toEqual([{ path: 'p/link', target: 'file' }]);
    expect(result.outputFileSymlinks).toBeUndefined();
  });

  it('fails with FAILED_PRECONDITION when an output has the wrong kind', async () => {
    mkdirSync(path.join(root, 'is-a-dir'));
    write('is-a-file', 'f');

    const asFile = (await upload({ outputFiles: ['is-a-dir'] }).catch((e: unknown) => e)) as StatusError;
    const asDir = (await upload({ outputDirectories: ['is-a-file'] }).catch((e: unknown) => e)) as StatusError;

    expect(asFile.code).toBe(Code.FAILED_PRECONDITION);
    expect(asFile.message).toContain('expected a regular file, found a directory');
    expect(asDir.code).toBe(Code.FAILED_PRECONDITION);
  });

  it('rejects an output path that leaves the input root', async () => {
    const err = (await upload({ outputFiles: ['../escape'] }).catch((e: unknown) => e)) as StatusError;
    expect(err.code).toBe(Code.INVALID_ARGUMENT);
  });

  it('rejects an output whose parent the action replaced with a symlink out of the input root', async () => {
    const outside = path.join(dir, 'outside');
    mkdirSync(outside);
    writeFileSync(path.join(outside, 'secret'), 'do not upload');
    symlinkSync(outside, path.join(root, 'out'));

    const err = (await upload({ outputFiles: ['out/secret'] }).catch((e: unknown) => e)) as StatusError;

    expect(err.code).toBe(Code.INVALID_ARGUMENT);
    expect(err.message).toContain('"out" is a symlink, which the worker does not follow');
    expect(store.count('put')).toBe(0);
  });

  it('uploads only the blobs the CAS lacks', async () => {
    await putBlob(store, 'already there');
    write('a', 'already there');
    write('b', 'new');
    const putsBefore = store.count('put');

    await upload({ outputFiles: ['a', 'b'] });

    expect(store.count('findMissing')).toBe(1);
    expect(store.calls.filter((c) => c.method === 'put').slice(putsBefore).map((c) => c.digests[0])).toEqual([Digest.ofBytes(new TextEncoder().encode('new')).toString()]);
  });

  it('stores stdout and stderr, giving an empty stream the empty blob digest (as Scoot does)', async () => {
    writeFileSync(path.join(dir, 'stdout'), 'printed');
    writeFileSync(path.join(dir, 'stderr'), '');

    const result = await upload({}, { stdoutPath: path.join(dir, 'stdout'), stderrPath: path.join(dir, 'stderr') });

    expect(result.stdoutDigest).toEqual(digestOf('printed'));
    expect(await blobText(store, result.stdoutDigest)).toBe('printed');
    expect(result.stderrDigest).toEqual({ hash: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' });
  });
});
