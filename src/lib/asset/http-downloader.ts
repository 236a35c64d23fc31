/**
 * Downloads http(s) URLs into the CAS for Remote Asset FetchBlob, and archives for FetchDirectory
 * (unpacked into a tree by archive-unpacker.ts). Memory stays bounded: the body is
 * streamed to a temporary file while being hashed (with the CAS digest function and, when the
 * request carries `checksum.sri`, the SRI algorithm), then streamed into the CAS under the digest
 * found. A body larger than `maxSizeBytes` is cut off (RESOURCE_EXHAUSTED); a checksum that differs
 * is ABORTED (the Remote Asset API's code for a failed consistency check) and nothing is stored.
 * Every connection, redirects included, goes through UrlPolicy on the addresses actually resolved.
 */
import { createHash } from 'node:crypto';
import dns from 'node:dns';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import type { CallOptions } from '../blobstore/blob-store.js';
import { Digest } from '../digest/digest.js';
import { newHasher } from '../digest/digest-function.js';
import { Code, StatusError, toStatusError } from '../errors/status-error.js';
import type { AssetDownloader, DownloadRequest } from './remote-asset.js';
import { parseSri } from './sri.js';
import { UrlPolicy } from './url-policy.js';

export interface HttpDownloaderOptions {
  policy?: UrlPolicy;
  /** Largest body accepted. @default 1 GiB */
  maxSizeBytes?: number;
  /** FetchDirectory: most bytes an archive may unpack to. @default 4 GiB */
  maxUnpackedSizeBytes?: number;
  /** FetchDirectory: most entries (files, directories, links) in an archive. @default 1 000 000 */
  maxArchiveEntries?: number;
  /** Whole download, when the request gives no timeout. @default 5 minutes */
  timeoutMs?: number;
  /** Redirects followed. @default 5 */
  maxRedirects?: number;
}

const DEFAULT_MAX_UNPACKED_SIZE_BYTES = 4 * 1024 ** 3;
const DEFAULT_MAX_ARCHIVE_ENTRIES = 1_000_000;

export class HttpDownloader implements AssetDownloader {
  readonly supportedQualifiers: ReadonlySet<string> = new Set(['checksum.sri', 'bazel.canonical_id', 'resource_type']);
  private readonly policy: UrlPolicy;
  private readonly maxSizeBytes: number;

  constructor(private readonly options: HttpDownloaderOptions = {}) {
    this.policy = options.policy ?? new UrlPolicy();
    this.maxSizeBytes = options.maxSizeBytes ?? 1024 ** 3;
  }

  handles(uri: string): boolean {
    return /^https?:\/\//i.test(uri);
  }

  async fetchBlob(request: DownloadRequest, opts: CallOptions): Promise<Digest> {
    return this.withDownload(request, opts, async (file, digest) => {
      await request.contentAddressableStorage.put(digest, createReadStream(file), { signal: opts.signal });
      return digest;
    });
  }

  /**
   * Downloads a .tar, .tar.gz or .zip archive (the format from a `resource_type` qualifier or the
   * archive's first bytes) and unpacks it into the CAS as a tree (archive-unpacker.ts). The
   * archive itself is not stored: the tree is the asset.
   */
  async fetchDirectory(request: DownloadRequest, opts: CallOptions): Promise<Digest> {
    return this.withDownload(request, opts, async (file, _digest, dir) => {
      // The tar and zip readers load with the first archive, not with every server.
      const { detectArchiveFormat, unpackArchive } = await import('./archive-unpacker.js');
      const resourceType = request.qualifiers.find((q) => q.name === 'resource_type')?.value;
      const format = await detectArchiveFormat(file, resourceType);
      if (!format) {
        throw StatusError.invalidArgument(`The content at ${originOf(request.uri)} is not a .tar, .tar.gz or .zip archive`, [
          { field: 'uris', description: 'Not an archive this server unpacks' },
        ]);
      }
      return unpackArchive(
        file,
        format,
        {
          contentAddressableStorage: request.contentAddressableStorage,
          instanceName: request.instanceName,
          digestFunction: request.digestFunction,
          tempDir: dir,
          maxUnpackedSizeBytes: this.options.maxUnpackedSizeBytes ?? DEFAULT_MAX_UNPACKED_SIZE_BYTES,
          maxEntries: this.options.maxArchiveEntries ?? DEFAULT_MAX_ARCHIVE_ENTRIES,
          uri: request.uri,
        },
        { signal: opts.signal },
      );
    });
  }

  /**
   * Downloads `request.uri` into a file of a private temporary directory (hashing it with the CAS
   * digest function and checking `checksum.sri`), hands the file, its digest and the directory to
   * `use`, and removes the directory afterwards.
   */
  private async withDownload<T>(request: DownloadRequest, opts: CallOptions, use: (file: string, digest: Digest, dir: string) => Promise<T>): Promise<T> {
    const sriValue = request.qualifiers.find((q) => q.name === 'checksum.sri')?.value;
    const sri = sriValue === undefined ? undefined : parseSri(sriValue);
    const timeoutMs = request.timeoutMs ?? this.options.timeoutMs ?? 5 * 60_000;
    const timeout = AbortSignal.timeout(timeoutMs);
    const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
    const dir = await mkdtemp(join(tmpdir(), 'bzutil-asset-'));
    try {
      const file = join(dir, 'body');
      let response: http.IncomingMessage;
      try {
        response = await this.get(parseUrl(request.uri), signal, this.options.maxRedirects ?? 5);
      } catch (err) {
        throw timeout.aborted && !opts.signal?.aborted ? StatusError.deadlineExceeded(`Download of ${originOf(request.uri)} timed out after ${timeoutMs} ms`) : err;
      }
      const hasher = newHasher(request.digestFunction);
      const sriHash = sri && createHash(sri.algorithm);
      let sizeBytes = 0;
      const out = createWriteStream(file);
      try {
        for await (const chunk of response as AsyncIterable<Buffer>) {
          sizeBytes += chunk.length;
          if (sizeBytes > this.maxSizeBytes) {
            throw StatusError.resourceExhausted(`Download of ${originOf(request.uri)} exceeds the limit of ${this.maxSizeBytes} bytes`);
          }
          hasher.update(chunk);
          sriHash?.update(chunk);
          if (!out.write(chunk)) await once(out, 'drain');
        }
        out.end();
        await once(out, 'finish');
      } catch (err) {
        response.destroy();
        out.destroy();
        if (timeout.aborted && !opts.signal?.aborted) throw StatusError.deadlineExceeded(`Download of ${originOf(request.uri)} timed out after ${timeoutMs} ms`);
        throw err instanceof StatusError ? err : StatusError.unavailable(`Download of ${originOf(request.uri)} failed: ${(err as Error).message}`);
      }
      if (sri && sriHash) {
        const actual = sriHash.digest('base64');
        if (actual !== sri.expected) {
          throw StatusError.aborted(
            `Download of ${JSON.stringify(request.uri.slice(0, 200))} does not match checksum.sri: expected ${sri.algorithm}-${sri.expected}, got ${sri.algorithm}-${actual}`,
          );
        }
      }
      return await use(file, Digest.create(request.instanceName, request.digestFunction, hasher.digest('hex'), sizeBytes), dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** GETs `url`, following redirects (each checked against the policy); resolves on a 200 answer. */
  private async get(url: URL, signal: AbortSignal, redirectsLeft: number): Promise<http.IncomingMessage> {
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw StatusError.permissionDenied(`Refused to follow a redirect to a ${JSON.stringify(url.protocol)} URL`);
    }
    // IP literals never reach `lookup`: check them here.
    const literal = url.hostname.replace(/^\[|\]$/g, '');
    if (net.isIP(literal)) this.policy.checkAddress(url, literal);
    const lookup = (hostname: string, options: dns.LookupOptions, callback: (...args: unknown[]) => void) => {
      dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
        if (err) return callback(err);
        try {
          for (const a of addresses) this.policy.checkAddress(url, a.address);
        } catch (refusal) {
          return callback(refusal);
        }
        if (options.all) callback(null, addresses);
        else callback(null, addresses[0]!.address, addresses[0]!.family);
      });
    };
    const client = url.protocol === 'https:' ? https : http;
    const response = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const req = client.get(url, { signal, lookup: lookup as never, headers: { 'user-agent': 'bzutil-remote-asset' } }, resolve);
      req.on('error', reject);
    }).catch((err: unknown) => {
      if (err instanceof StatusError) throw err;
      if (signal.aborted) throw err;
      throw StatusError.unavailable(`Failed to connect to ${url.origin}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    });
    const status = response.statusCode ?? 0;
    if ([301, 302, 303, 307, 308].includes(status) && response.headers.location) {
      response.resume();
      if (redirectsLeft === 0) throw StatusError.unavailable(`Too many redirects fetching ${url.origin}`);
      return this.get(new URL(response.headers.location, url), signal, redirectsLeft - 1);
    }
    if (status === 200) return response;
    response.resume();
    const code = status === 404 || status === 410 ? Code.NOT_FOUND : status === 401 || status === 403 ? Code.PERMISSION_DENIED : Code.UNAVAILABLE;
    throw toStatusError(new StatusError(code, `${url.origin} answered HTTP ${status}`));
  }
}

function parseUrl(uri: string): URL {
  try {
    return new URL(uri);
  } catch {
    throw StatusError.invalidArgument('A URI is not a valid URL', [{ field: 'uris', description: 'Not a valid URL' }]);
  }
}

function originOf(uri: string): string {
  try {
    return JSON.stringify(new URL(uri).origin);
  } catch {
    return 'the URL';
  }
}
