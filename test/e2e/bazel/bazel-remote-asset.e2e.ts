/**
 * Bazel 4.2.3 as a Remote Asset client: `--experimental_remote_downloader` points at
 * `bzutil serve apiserver`, and an `http_archive` (with sha256) names a .tar.gz on a local HTTP
 * server that this test starts (allowed with --asset_allow for its own address, loopback being
 * refused otherwise). Bazel asks bzutil's FetchBlob, bzutil downloads the archive into its CAS, and
 * Bazel reads it from there. Assertions: the build succeeds with the archive's content, the archive
 * was requested by bzutil (its user agent) and once only, it is in bzutil's CAS, bzutil's index
 * answers a FetchBlob for it, and a second Bazel (fresh output base, no repository cache) builds
 * again while the HTTP server refuses everything: the archive comes from bzutil alone.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { asset, reapi } from '../../../src/lib/proto/index.js';
import { contentAddressableStorageService, fetchService } from '../../../src/lib/proto/services.js';
import { makeTarGz } from '../../helpers/archives.js';
import { startServe, type ServeProcess } from '../../helpers/serve-process.js';
import { bazelAvailable, COMMON_FLAGS, copyWorkspace, runBazel, type Workspace } from './bazel-harness.js';

const haveBazel = bazelAvailable();
const BAZEL_TIMEOUT_MS = 600_000;
type AnyClient = grpc.Client & Record<string, (...args: unknown[]) => unknown>;

function call<Res>(client: AnyClient, method: string, request: unknown): Promise<Res> {
  return new Promise((resolve, reject) => {
    client[method]!(request, (err: Error | null, res: Res) => (err ? reject(err) : resolve(res)));
  });
}

describe.skipIf(!haveBazel)('Bazel 4.2.3 fetching an http_archive through bzutil Remote Asset', () => {
  let ws: Workspace;
  let web: http.Server;
  let serve: ServeProcess;
  let archive: Buffer;
  let archiveUrl = '';
  let refuseAll = false;
  const requests: { url: string; userAgent: string }[] = [];
  const scratch = mkdtempSync(join(tmpdir(), 'bzutil-bazel-asset-'));

  beforeAll(async () => {
    archive = await makeTarGz([
      { name: 'ext-1.0/', type: 'directory' },
      { name: 'ext-1.0/data.txt', content: 'fetched through bzutil remote asset\n' },
    ]);
    web = http.createServer((req, res) => {
      requests.push({ url: req.url ?? '', userAgent: req.headers['user-agent'] ?? '' });
      if (!refuseAll && req.url === '/ext-1.0.tar.gz') return void res.end(archive);
      res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
    const port = (web.address() as AddressInfo).port;
    archiveUrl = `http://127.0.0.1:${port}/ext-1.0.tar.gz`;

    serve = await startServe(
      ['apiserver', '--listen=127.0.0.1:0', '--allow_ac_updates', `--storage_dir=${join(scratch, 'storage')}`, `--asset_allow=http://127.0.0.1:${port}/*`],
      ['apiserver'],
    );

    ws = copyWorkspace('asset');
    const sha256 = createHash('sha256').update(archive).digest('hex');
    appendFileSync(
      join(ws.dir, 'WORKSPACE'),
      `
load("@bazel_tools//tools/build_defs/repo:http.bzl", "http_archive")

http_archive(
    name = "ext",
    urls = ["${archiveUrl}"],
    sha256 = "${sha256}",
    strip_prefix = "ext-1.0",
    build_file_content = 'exports_files(["data.txt"])',
)
`,
    );
    mkdirSync(join(ws.dir, 'fetched'), { recursive: true });
    writeFileSync(
      join(ws.dir, 'fetched', 'BUILD'),
      `genrule(
    name = "copy",
    srcs = ["@ext//:data.txt"],
    outs = ["copy.txt"],
    cmd = "cp $< $@",
)
`,
    );
  }, 120_000);

  afterAll(async () => {
    await ws?.cleanup();
    await serve?.stop();
    await new Promise((resolve) => web?.close(resolve));
    rmSync(scratch, { recursive: true, force: true });
  }, 120_000);

  const build = (outputBase: string) =>
    runBazel(
      ws,
      join(ws.root, outputBase),
      [
        'build',
        ...COMMON_FLAGS,
        `--experimental_remote_downloader=grpc://${serve.addresses.apiserver}`,
        // Bazel 4 refuses a remote downloader without a gRPC cache.
        `--remote_cache=grpc://${serve.addresses.apiserver}`,
        // No repository cache: a hit there would skip the downloader.
        '--repository_cache=',
        '//fetched:copy',
      ],
      BAZEL_TIMEOUT_MS,
    );

  const copiedText = async (outputBase: string) => {
    const info = await runBazel(ws, join(ws.root, outputBase), ['info', 'bazel-bin']);
    return readFileSync(join(info.output.trim().split('\n').at(-1)!.trim(), 'fetched', 'copy.txt'), 'utf8');
  };

  it('builds with the archive downloaded by bzutil into its CAS', async () => {
    const result = await build('ob-1');
    expect(result.code, `build failed:\n${result.output.slice(-6000)}`).toBe(0);
    expect(await copiedText('ob-1')).toBe('fetched through bzutil remote asset\n');
    // One request, made by bzutil's downloader, not by Bazel.
    expect(requests).toEqual([{ url: '/ext-1.0.tar.gz', userAgent: 'bzutil-remote-asset' }]);

    const target = serve.addresses.apiserver!;
    const cas = new (grpc.makeGenericClientConstructor(contentAddressableStorageService, 'CAS'))(target, grpc.credentials.createInsecure()) as unknown as AnyClient;
    const fetch = new (grpc.makeGenericClientConstructor(fetchService, 'Fetch'))(target, grpc.credentials.createInsecure()) as unknown as AnyClient;
    try {
      const digest = { hash: createHash('sha256').update(archive).digest('hex'), sizeBytes: archive.length };
      const missing = await call<reapi.FindMissingBlobsResponse>(cas, 'findMissingBlobs', { blobDigests: [digest] });
      expect(missing.missingBlobDigests).toEqual([]);
      // The index answers for the URL with the SRI Bazel sent, without another download.
      const sri = `sha256-${createHash('sha256').update(archive).digest('base64')}`;
      const res = await call<asset.FetchBlobResponse>(fetch, 'fetchBlob', { uris: [archiveUrl], qualifiers: [{ name: 'checksum.sri', value: sri }] });
      expect(res.blobDigest?.hash).toBe(digest.hash);
      expect(requests).toHaveLength(1);
    } finally {
      cas.close();
      fetch.close();
    }
  }, BAZEL_TIMEOUT_MS);

  it('builds again from a fresh output base while the HTTP server refuses everything', async () => {
    refuseAll = true;
    const result = await build('ob-2');
    expect(result.code, `build failed:\n${result.output.slice(-6000)}`).toBe(0);
    expect(await copiedText('ob-2')).toBe('fetched through bzutil remote asset\n');
    expect(requests).toHaveLength(1);
  }, BAZEL_TIMEOUT_MS);
});
