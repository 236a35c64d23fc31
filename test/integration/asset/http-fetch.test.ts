/**
 * FetchBlob of http(s) URLs over a real apiserver, downloading from a local HTTP server on
 * 127.0.0.1:0 that the tests allow explicitly (everything else on loopback is refused).
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { HttpDownloader } from '../../../src/lib/asset/http-downloader.js';
import { refusedBy, UrlPolicy } from '../../../src/lib/asset/url-policy.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { Code } from '../../../src/lib/errors/status-error.js';
import type { asset } from '../../../src/lib/proto/index.js';
import { fetchService } from '../../../src/lib/proto/services.js';
import { expectStatus, type Harness, startHarness, unary } from '../apiserver/harness.js';

const FetchClient = grpc.makeGenericClientConstructor(fetchService, 'Fetch');
type AnyClient = grpc.Client & Record<string, (...args: unknown[]) => unknown>;

const BODY = Buffer.from('pretend this is a tarball\n'.repeat(100));
const sri = (algorithm: string, data: Buffer) => `${algorithm}-${createHash(algorithm).update(data).digest('base64')}`;

describe('FetchBlob from http URLs', () => {
  let web: http.Server;
  let port = 0;
  let requests: string[] = [];
  let h: Harness | undefined;
  let fetch: AnyClient | undefined;

  beforeAll(async () => {
    web = http.createServer((req, res) => {
      requests.push(req.url ?? '');
      if (req.url === '/file.tar') return void res.end(BODY);
      if (req.url === '/redirect-to-localhost') return void res.writeHead(302, { location: `http://localhost:${port}/file.tar` }).end();
      if (req.url === '/redirect-ok') return void res.writeHead(302, { location: `/file.tar` }).end();
      res.writeHead(404).end();
    });
    await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
    port = (web.address() as AddressInfo).port;
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

  async function start(allow: string[] = ['http://127.0.0.1:*'], maxSizeBytes?: number) {
    h = await startHarness({ inMemory: true, assetDownloaders: [new HttpDownloader({ policy: new UrlPolicy(allow), maxSizeBytes })] });
    fetch = new FetchClient(h.server.address, grpc.credentials.createInsecure()) as unknown as AnyClient;
    return { h, fetch };
  }
  const url = (path: string) => `http://127.0.0.1:${port}${path}`;

  it('downloads into the CAS, verifies checksum.sri, and answers the next fetch from the index', async () => {
    const { h, fetch } = await start();
    const qualifiers = [{ name: 'checksum.sri', value: sri('sha256', BODY) }];
    const res = await unary<asset.FetchBlobResponse>(fetch, 'fetchBlob', { uris: [url('/file.tar')], qualifiers });
    const expected = Digest.ofBytes(BODY);
    expect(res.blobDigest?.hash).toBe(expected.hash);
    expect(Buffer.from(await h.server.contentAddressableStorage.get(expected)).equals(BODY)).toBe(true);
    expect(requests).toEqual(['/file.tar']);
    await unary(fetch, 'fetchBlob', { uris: [url('/file.tar')], qualifiers });
    expect(requests).toEqual(['/file.tar']);
    // sha384 and sha512 SRI values work too; a redirect on the allowed origin is followed.
    await unary(fetch, 'fetchBlob', { uris: [url('/redirect-ok')], qualifiers: [{ name: 'checksum.sri', value: sri('sha512', BODY) }] });
    await unary(fetch, 'fetchBlob', { uris: [url('/file.tar')], qualifiers: [{ name: 'checksum.sri', value: sri('sha384', BODY) }] });
  });

  it('refuses a download whose checksum differs with ABORTED and stores nothing', async () => {
    const { h, fetch } = await start();
    const wrong = sri('sha256', Buffer.from('something else'));
    const err = await expectStatus(unary(fetch, 'fetchBlob', { uris: [url('/file.tar')], qualifiers: [{ name: 'checksum.sri', value: wrong }] }), Code.ABORTED);
    expect(err.message).toContain('checksum.sri');
    expect(await h.server.contentAddressableStorage.findMissing([Digest.ofBytes(BODY)])).toHaveLength(1);
    await expectStatus(unary(fetch, 'fetchBlob', { uris: [url('/file.tar')], qualifiers: [{ name: 'checksum.sri', value: 'md5-abc' }] }), Code.INVALID_ARGUMENT);
  });

  it('refuses loopback by default with PERMISSION_DENIED naming the rule, without connecting', async () => {
    const { fetch } = await start([]);
    const err = await expectStatus(unary(fetch, 'fetchBlob', { uris: [url('/file.tar')] }), Code.PERMISSION_DENIED);
    expect(err.message).toContain('"loopback"');
    for (const host of ['[::1]', '[::ffff:127.0.0.1]', '[::ffff:7f00:1]', '0.0.0.0', 'localhost']) {
      await expectStatus(unary(fetch, 'fetchBlob', { uris: [`http://${host}:${port}/file.tar`] }), Code.PERMISSION_DENIED);
    }
    expect(requests).toEqual([]);
  });

  it('checks the resolved address of names and of redirects, not just the allowed hostname', async () => {
    const { fetch } = await start();
    // localhost resolves to loopback, and only http://127.0.0.1:* is allowed.
    await expectStatus(unary(fetch, 'fetchBlob', { uris: [`http://localhost:${port}/file.tar`] }), Code.PERMISSION_DENIED);
    const err = await expectStatus(unary(fetch, 'fetchBlob', { uris: [url('/redirect-to-localhost')] }), Code.PERMISSION_DENIED);
    expect(err.message).toContain('loopback');
    expect(requests).toEqual(['/redirect-to-localhost']);
  });

  it('does not let user info impersonate an allowed host', () => {
    const policy = new UrlPolicy(['http://127.0.0.1:*']);
    expect(policy.isAllowed(new URL('http://127.0.0.1:80@localhost/x'))).toBe(false);
    expect(policy.isAllowed(new URL('http://127.0.0.1:8080/x'))).toBe(true);
  });

  it('maps a missing file to NOT_FOUND, an oversized body to RESOURCE_EXHAUSTED and unknown qualifiers to INVALID_ARGUMENT', async () => {
    const { fetch } = await start(['http://127.0.0.1:*'], 100);
    await expectStatus(unary(fetch, 'fetchBlob', { uris: [url('/absent')] }), Code.NOT_FOUND);
    await expectStatus(unary(fetch, 'fetchBlob', { uris: [url('/file.tar')] }), Code.RESOURCE_EXHAUSTED);
    await expectStatus(unary(fetch, 'fetchBlob', { uris: [url('/file.tar')], qualifiers: [{ name: 'vcs.branch', value: 'x' }] }), Code.INVALID_ARGUMENT);
    // Other schemes are not downloaded: a miss.
    await expectStatus(unary(fetch, 'fetchBlob', { uris: ['ftp://example.com/x'] }), Code.NOT_FOUND);
  });
});

describe('refusedBy', () => {
  it('names the rule for each reserved range and passes public addresses', () => {
    expect(refusedBy('169.254.169.254')).toBe('link-local');
    expect(refusedBy('10.1.2.3')).toBe('private');
    expect(refusedBy('192.168.0.1')).toBe('private');
    expect(refusedBy('fd00::1')).toBe('private');
    expect(refusedBy('fe80::1')).toBe('link-local');
    expect(refusedBy('::1')).toBe('loopback');
    expect(refusedBy('::ffff:10.0.0.1')).toBe('ipv4-mapped');
    expect(refusedBy('8.8.8.8')).toBeUndefined();
    expect(refusedBy('2001:4860:4860::8888')).toBeUndefined();
  });
});
