/**
 * FetchDirectory of .tar, .tar.gz and .zip archives over a real apiserver, downloading from a local
 * HTTP server on 127.0.0.1:0 that the tests allow explicitly: the tree lands in the CAS (executables
 * and symlinks kept), the same content gives the same root whatever the format, and hostile
 * archives (path traversal, absolute names, symlink escapes, bombs) are refused with nothing recorded.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { HttpDownloader } from '../../../src/lib/asset/http-downloader.js';
import { UrlPolicy } from '../../../src/lib/asset/url-policy.js';
import type { BlobStore } from '../../../src/lib/blobstore/blob-store.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code } from '../../../src/lib/errors/status-error.js';
import { type asset, reapi } from '../../../src/lib/proto/index.js';
import { fetchService } from '../../../src/lib/proto/services.js';
import { type ArchiveEntry, makeTar, makeTarGz, makeZip } from '../../helpers/archives.js';
import { expectStatus, type Harness, startHarness, unary } from '../apiserver/harness.js';

const FetchClient = grpc.makeGenericClientConstructor(fetchService, 'Fetch');
type AnyClient = grpc.Client & Record<string, (...args: unknown[]) => unknown>;

const BIG = Buffer.alloc(3 * 1024 * 1024 + 17, 'source line\n');
const PROJECT: ArchiveEntry[] = [
  { name: 'proj-1.0/', type: 'directory' },
  { name: 'proj-1.0/BUILD', content: 'exports_files(["run.sh"])\n' },
  { name: 'proj-1.0/run.sh', content: '#!/bin/sh\necho hi\n', mode: 0o755 },
  { name: 'proj-1.0/src/lib/a.c', content: 'int a;\n' },
  { name: 'proj-1.0/src/big.txt', content: BIG },
  { name: 'proj-1.0/empty/', type: 'directory' },
  { name: 'proj-1.0/latest', type: 'symlink', linkname: 'src/lib' },
  { name: 'proj-1.0/up', type: 'symlink', linkname: '../proj-1.0/BUILD' },
];

/** The tree under `root` as path -> description, read back from the CAS. */
async function readTree(cas: BlobStore, root: Digest): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (digest: Digest, at: string) => {
    const dir = reapi.Directory.decode(await cas.get(digest));
    for (const f of dir.files) {
      const content = Buffer.from(await cas.get(Digest.fromProto('', 0, f.digest, 'f')));
      out[at + f.name] = `file ${content.length > 64 ? `${content.length} bytes` : JSON.stringify(content.toString())}${f.isExecutable ? ' x' : ''}`;
    }
    for (const l of dir.symlinks) out[at + l.name] = `-> ${l.target}`;
    for (const d of dir.directories) {
      out[`${at + d.name}/`] = 'dir';
      await walk(Digest.fromProto('', 0, d.digest, 'd'), `${at + d.name}/`);
    }
  };
  await walk(root, '');
  return out;
}

describe('FetchDirectory of archives', () => {
  let web: http.Server;
  let port = 0;
  const served = new Map<string, Buffer>();
  let requests: string[] = [];
  let h: Harness | undefined;
  let fetch: AnyClient | undefined;

  beforeAll(async () => {
    web = http.createServer((req, res) => {
      requests.push(req.url ?? '');
      const body = served.get(req.url ?? '');
      if (body) return void res.end(body);
      res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
    port = (web.address() as AddressInfo).port;
    served.set('/proj.tar.gz', await makeTarGz(PROJECT));
    served.set('/proj.tar', await makeTar(PROJECT));
    served.set('/proj.zip', makeZip(PROJECT, { deflate: true }));
    served.set('/not-an-archive', Buffer.from('just some text\n'.repeat(50)));
  });
  afterAll(async () => {
    await new Promise((resolve) => web.close(resolve));
  });
  afterEach(async () => {
    fetch?.close();
    fetch = undefined;
    await h?.close();
    h = undefined;
    requests = [];
  });

  async function start(limits: { maxUnpackedSizeBytes?: number; maxArchiveEntries?: number } = {}) {
    h = await startHarness({ inMemory: true, assetDownloaders: [new HttpDownloader({ policy: new UrlPolicy(['http://127.0.0.1:*']), ...limits })] });
    fetch = new FetchClient(h.server.address, grpc.credentials.createInsecure()) as unknown as AnyClient;
    return { h, fetch };
  }
  const url = (path: string) => `http://127.0.0.1:${port}${path}`;
  const fetchDir = (client: AnyClient, path: string, qualifiers: { name: string; value: string }[] = []) =>
    unary<asset.FetchDirectoryResponse>(client, 'fetchDirectory', { uris: [url(path)], qualifiers });
  const rootOf = (res: asset.FetchDirectoryResponse) => Digest.fromProto('', 0, res.rootDirectoryDigest, 'root');

  it('unpacks a .tar.gz into a CAS tree with executables, symlinks and empty directories, then answers from the index', async () => {
    const { h, fetch } = await start();
    const body = served.get('/proj.tar.gz')!;
    const sri = `sha256-${createHash('sha256').update(body).digest('base64')}`;
    const res = await fetchDir(fetch, '/proj.tar.gz', [{ name: 'checksum.sri', value: sri }]);
    expect(res.uri).toBe(url('/proj.tar.gz'));
    expect(await readTree(h.server.contentAddressableStorage, rootOf(res))).toEqual({
      'proj-1.0/': 'dir',
      'proj-1.0/BUILD': 'file "exports_files([\\"run.sh\\"])\\n"',
      'proj-1.0/run.sh': 'file "#!/bin/sh\\necho hi\\n" x',
      'proj-1.0/empty/': 'dir',
      'proj-1.0/latest': '-> src/lib',
      'proj-1.0/up': '-> ../proj-1.0/BUILD',
      'proj-1.0/src/': 'dir',
      'proj-1.0/src/big.txt': `file ${BIG.length} bytes`,
      'proj-1.0/src/lib/': 'dir',
      'proj-1.0/src/lib/a.c': 'file "int a;\\n"',
    });
    // The large entry went through a spool file and arrived whole.
    expect(Buffer.from(await h.server.contentAddressableStorage.get(Digest.ofBytes(BIG))).equals(BIG)).toBe(true);
    // The archive itself is not stored: the tree is the asset.
    expect(await h.server.contentAddressableStorage.findMissing([Digest.ofBytes(body)])).toHaveLength(1);
    await fetchDir(fetch, '/proj.tar.gz', [{ name: 'checksum.sri', value: sri }]);
    expect(requests).toEqual(['/proj.tar.gz']);
  });

  it('gives the same root for the same content as .tar, .tar.gz and .zip, by magic bytes or resource_type', async () => {
    const { fetch } = await start();
    const roots = [
      rootOf(await fetchDir(fetch, '/proj.tar.gz')),
      rootOf(await fetchDir(fetch, '/proj.tar')),
      rootOf(await fetchDir(fetch, '/proj.zip')),
      rootOf(await fetchDir(fetch, '/proj.zip', [{ name: 'resource_type', value: 'application/zip' }])),
    ];
    expect(new Set(roots.map(String)).size).toBe(1);
    // A resource_type that contradicts the bytes fails to unpack.
    await expectStatus(fetchDir(fetch, '/proj.zip', [{ name: 'resource_type', value: 'application/x-tar' }]), Code.INVALID_ARGUMENT);
  });

  it('refuses a checksum mismatch with ABORTED and content that is no archive with INVALID_ARGUMENT', async () => {
    const { fetch } = await start();
    await expectStatus(fetchDir(fetch, '/proj.tar.gz', [{ name: 'checksum.sri', value: `sha256-${createHash('sha256').update('x').digest('base64')}` }]), Code.ABORTED);
    const err = await expectStatus(fetchDir(fetch, '/not-an-archive'), Code.INVALID_ARGUMENT);
    expect(err.message).toContain('not a .tar, .tar.gz or .zip archive');
    await expectStatus(fetchDir(fetch, '/absent.tar.gz'), Code.NOT_FOUND);
  });

  const hostile: [string, ArchiveEntry[], string][] = [
    ['a ".." component', [{ name: 'ok/../../evil', content: 'x' }], '".." component'],
    ['an absolute name', [{ name: '/etc/cron.d/evil', content: 'x' }], 'absolute'],
    ['an absolute symlink', [{ name: 'etc', type: 'symlink', linkname: '/etc' }], 'absolute'],
    ['a symlink climbing out', [{ name: 'a/b', type: 'symlink', linkname: '../../outside' }], 'leaves the tree'],
    ['a symlink escaping through another symlink', [{ name: 's', type: 'symlink', linkname: '.' }, { name: 't', type: 'symlink', linkname: 's/..' }], 'leaves the tree'],
    ['a file written through a symlink', [{ name: 'link', type: 'symlink', linkname: 'sub' }, { name: 'link/file', content: 'x' }], 'symlink'],
    ['a hard link to nothing earlier', [{ name: 'h', type: 'link', linkname: 'etc/passwd' }], 'hard link'],
  ];
  for (const [what, entries, message] of hostile) {
    it(`refuses an archive with ${what} (INVALID_ARGUMENT) and records nothing`, async () => {
      const { fetch } = await start();
      const path = `/hostile-${what.replace(/\W+/g, '-')}.tar`;
      served.set(path, await makeTar(entries));
      const err = await expectStatus(fetchDir(fetch, path), Code.INVALID_ARGUMENT);
      expect(err.message).toContain(message);
      // Nothing was recorded: the next fetch downloads again and fails again.
      await expectStatus(fetchDir(fetch, path), Code.INVALID_ARGUMENT);
      expect(requests.filter((r) => r === path)).toHaveLength(2);
    });
  }

  it('refuses zip entries with ".." or absolute names and zip symlinks that escape', async () => {
    const { fetch } = await start();
    for (const [i, entries] of [
      [{ name: '../evil', content: 'x' }],
      [{ name: '/abs', content: 'x' }],
      [{ name: 'l', type: 'symlink', linkname: '../../x' }],
    ].entries() as IterableIterator<[number, ArchiveEntry[]]>) {
      served.set(`/hostile-${i}.zip`, makeZip(entries));
      await expectStatus(fetchDir(fetch, `/hostile-${i}.zip`), Code.INVALID_ARGUMENT);
    }
  });

  it('stops archives that unpack past max_unpacked_size or the entry limit with RESOURCE_EXHAUSTED', async () => {
    const { fetch } = await start({ maxUnpackedSizeBytes: 1024 * 1024, maxArchiveEntries: 50 });
    // A gzip bomb: 64 MiB of zeros in a tar, about 64 KiB on the wire.
    served.set('/bomb.tar.gz', gzipSync(await makeTar([{ name: 'zeros', content: Buffer.alloc(64 * 1024 * 1024) }])));
    expect(served.get('/bomb.tar.gz')!.length).toBeLessThan(200 * 1024);
    await expectStatus(fetchDir(fetch, '/bomb.tar.gz'), Code.RESOURCE_EXHAUSTED);
    served.set('/bomb.zip', makeZip([{ name: 'zeros', content: Buffer.alloc(8 * 1024 * 1024) }], { deflate: true }));
    await expectStatus(fetchDir(fetch, '/bomb.zip'), Code.RESOURCE_EXHAUSTED);
    served.set('/many.tar', await makeTar(Array.from({ length: 60 }, (_, i) => ({ name: `f${i}`, content: `${i}` }))));
    await expectStatus(fetchDir(fetch, '/many.tar'), Code.RESOURCE_EXHAUSTED);
  });
});
