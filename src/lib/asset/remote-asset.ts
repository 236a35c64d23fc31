/**
 * The Remote Asset API (build.bazel.remote.asset.v1) as library logic, apart from gRPC: Fetch
 * answers from the asset index and, for URIs a downloader handles (http(s), see http-downloader.ts),
 * by downloading into the CAS; Push records what a client already stored in the CAS. The gRPC
 * services (server/services/remote-asset-service.ts) are thin adapters over this class.
 *
 * An answer is only given for content still whole in the CAS: a record whose blob or tree (or
 * whose references) were evicted is treated as a miss, as the action cache treats incomplete results.
 * Fetch tries the URIs in request order; the first one with a usable record wins, then the first one
 * that downloads. A miss is NOT_FOUND; an empty URI list INVALID_ARGUMENT (BuildStream probes the
 * service with one).
 */
import type { BlobStore, CallOptions } from '../blobstore/blob-store.js';
import { Digest, requestDigestFunction } from '../digest/digest.js';
import { type DigestFunction, digestFunctionToProto } from '../digest/digest-function.js';
import { Code, hasCode, StatusError, wrapStatus } from '../errors/status-error.js';
import type { asset, reapi } from '../proto/index.js';
import { msToTimestamp, timestampToMs } from '../proto/proto-time.js';
import { type Clock, systemClock } from '../util/clock.js';
import { type AssetIndex, type AssetRecord, type IndexedDigest } from './asset-index.js';
import { assetKey, type Qualifier, validateAssetRequest } from './asset-key.js';
import { missingFromTree } from './tree-presence.js';

/** What a downloader is asked to fetch: one URI, with the request's qualifiers. */
export interface DownloadRequest {
  uri: string;
  qualifiers: readonly Qualifier[];
  instanceName: string;
  digestFunction: DigestFunction;
  /** The request's `timeout`, if any. */
  timeoutMs?: number;
  /** Where the downloaded content goes (uploads verified). */
  contentAddressableStorage: BlobStore;
}

/** Fetches content named by URIs of some schemes into the CAS. */
export interface AssetDownloader {
  /** Whether this downloader fetches `uri` at all (by scheme); others are never passed to it. */
  handles(uri: string): boolean;
  /** Qualifier names it understands; a fetch with another qualifier is INVALID_ARGUMENT. */
  readonly supportedQualifiers: ReadonlySet<string>;
  /** Downloads the blob into the CAS and returns its digest. */
  fetchBlob?(request: DownloadRequest, opts: CallOptions): Promise<Digest>;
  /** Downloads an archive, unpacks it into the CAS as a tree and returns the root Directory's digest. */
  fetchDirectory?(request: DownloadRequest, opts: CallOptions): Promise<Digest>;
}

export interface RemoteAssetOptions {
  index: AssetIndex;
  /** Where assets live; uploads through it must be verified (see createStorage). */
  contentAddressableStorage: BlobStore;
  /** The digest functions served (Capabilities); others are INVALID_ARGUMENT. */
  digestFunctions: readonly DigestFunction[];
  /** Fetchers of content not in the index, tried in order. @default none: Fetch answers from the index only */
  downloaders?: readonly AssetDownloader[];
  /** @default systemClock */
  clock?: Clock;
}

type Kind = 'blob' | 'directory';

export class RemoteAsset {
  private readonly clock: Clock;
  private readonly downloaders: readonly AssetDownloader[];

  constructor(private readonly options: RemoteAssetOptions) {
    this.clock = options.clock ?? systemClock;
    this.downloaders = options.downloaders ?? [];
  }

  async fetchBlob(request: asset.IFetchBlobRequest, opts: CallOptions = {}): Promise<asset.IFetchBlobResponse> {
    const found = await this.fetch('blob', request, opts);
    return {
      status: { code: Code.OK },
      uri: found.uri,
      qualifiers: found.qualifiers,
      expiresAt: found.expireAtMs === undefined ? null : msToTimestamp(found.expireAtMs),
      blobDigest: found.digest.toProto(),
      digestFunction: digestFunctionToProto(found.digest.digestFunction),
    };
  }

  async fetchDirectory(request: asset.IFetchDirectoryRequest, opts: CallOptions = {}): Promise<asset.IFetchDirectoryResponse> {
    const found = await this.fetch('directory', request, opts);
    return {
      status: { code: Code.OK },
      uri: found.uri,
      qualifiers: found.qualifiers,
      expiresAt: found.expireAtMs === undefined ? null : msToTimestamp(found.expireAtMs),
      rootDirectoryDigest: found.digest.toProto(),
      digestFunction: digestFunctionToProto(found.digest.digestFunction),
    };
  }

  pushBlob(request: asset.IPushBlobRequest, opts: CallOptions = {}): Promise<void> {
    return this.push('blob', request, request.blobDigest, 'blob_digest', opts);
  }

  pushDirectory(request: asset.IPushDirectoryRequest, opts: CallOptions = {}): Promise<void> {
    return this.push('directory', request, request.rootDirectoryDigest, 'root_directory_digest', opts);
  }

  private async fetch(kind: Kind, request: asset.IFetchBlobRequest, opts: CallOptions): Promise<Found> {
    const instanceName = request.instanceName ?? '';
    const uris = request.uris ?? [];
    const qualifiers = validateAssetRequest(uris, request.qualifiers ?? []);
    const digestFunction = requestDigestFunctionOrDefault(this.options.digestFunctions, request.digestFunction);
    const oldestAcceptedMs = timestampToMs(request.oldestContentAccepted);
    const now = this.clock.now();

    for (const uri of uris) {
      const record = await this.options.index.get(assetKey(instanceName, kind, uri, qualifiers), opts);
      if (!record || record.kind !== kind || record.digestFunction !== digestFunction) continue;
      if (record.expireAtMs !== undefined && record.expireAtMs <= now) continue;
      if (oldestAcceptedMs !== undefined && record.insertedAtMs < oldestAcceptedMs) continue;
      const digest = toDigest(instanceName, digestFunction, record.digest, 'index');
      if (await this.isWhole(kind, digest, record, opts)) return { uri, qualifiers, digest, expireAtMs: record.expireAtMs };
    }

    const candidates = uris.flatMap((uri) => {
      const downloader = this.downloaders.find((d) => d.handles(uri) && (kind === 'blob' ? d.fetchBlob : d.fetchDirectory));
      return downloader ? [{ uri, downloader }] : [];
    });
    if (candidates.length === 0) {
      throw StatusError.notFound(`No ${kind} is recorded for ${describeUris(uris)} with these qualifiers`);
    }
    for (const { downloader } of candidates) {
      const unsupported = qualifiers.find((q) => !downloader.supportedQualifiers.has(q.name));
      if (unsupported) {
        throw StatusError.invalidArgument(`Qualifier ${JSON.stringify(unsupported.name)} is not supported when downloading`, [
          { field: 'qualifiers', description: `Unsupported qualifier ${JSON.stringify(unsupported.name)}` },
        ]);
      }
    }
    const timeoutMs = request.timeout ? Number(request.timeout.seconds ?? 0) * 1000 + (request.timeout.nanos ?? 0) / 1e6 : undefined;
    let firstError: unknown;
    for (const { uri, downloader } of candidates) {
      try {
        const download = { uri, qualifiers, instanceName, digestFunction, timeoutMs: timeoutMs || undefined, contentAddressableStorage: this.options.contentAddressableStorage };
        const digest = kind === 'blob' ? await downloader.fetchBlob!(download, opts) : await downloader.fetchDirectory!(download, opts);
        const record: AssetRecord = {
          kind,
          digest: { hash: digest.hash, sizeBytes: digest.sizeBytes },
          digestFunction,
          insertedAtMs: this.clock.now(),
          referencesBlobs: [],
          referencesDirectories: [],
        };
        // Filed under the URI that answered, so that the next fetch needs no download.
        await this.options.index.put(assetKey(instanceName, kind, uri, qualifiers), record, opts);
        return { uri, qualifiers, digest };
      } catch (err) {
        if (opts.signal?.aborted) throw err;
        firstError ??= err;
      }
    }
    throw candidates.length === 1 ? firstError : wrapStatus(firstError, `Failed to fetch any of ${candidates.length} URIs (the first failed)`);
  }

  private async push(kind: Kind, request: asset.IPushBlobRequest, rootProto: reapi.IDigest | null | undefined, field: string, opts: CallOptions): Promise<void> {
    const instanceName = request.instanceName ?? '';
    const uris = request.uris ?? [];
    const qualifiers = validateAssetRequest(uris, request.qualifiers ?? []);
    const root = Digest.fromProto(instanceName, request.digestFunction, rootProto, field);
    if (!this.options.digestFunctions.includes(root.digestFunction)) {
      throw StatusError.invalidArgument(`Digest function ${root.digestFunction} is not served here`, [{ field: 'digest_function', description: 'Not served' }]);
    }
    const fnValue = digestFunctionToProto(root.digestFunction);
    const referencesBlobs = (request.referencesBlobs ?? []).map((d, i) => Digest.fromProto(instanceName, fnValue, d, `references_blobs[${i}]`));
    const referencesDirectories = (request.referencesDirectories ?? []).map((d, i) =>
      Digest.fromProto(instanceName, fnValue, d, `references_directories[${i}]`),
    );
    const record: AssetRecord = {
      kind,
      digest: indexed(root),
      digestFunction: root.digestFunction,
      insertedAtMs: this.clock.now(),
      expireAtMs: timestampToMs(request.expireAt),
      referencesBlobs: referencesBlobs.map(indexed),
      referencesDirectories: referencesDirectories.map(indexed),
    };
    // The content must be in the CAS already: a record of absent content would answer fetches
    // with digests the client cannot download.
    const missing = await this.missing(kind, root, record, opts);
    if (missing.length > 0) {
      throw StatusError.missingBlobs(
        missing.map((d) => ({ hash: d.hash, sizeBytes: d.sizeBytes })),
        `Failed to push ${kind}: ${missing.length} referenced blob(s) are not in the CAS (${missing.slice(0, 3).map(String).join(', ')})`,
      );
    }
    for (const uri of uris) await this.options.index.put(assetKey(instanceName, kind, uri, qualifiers), record, opts);
  }

  private async isWhole(kind: Kind, digest: Digest, record: AssetRecord, opts: CallOptions): Promise<boolean> {
    try {
      return (await this.missing(kind, digest, record, opts)).length === 0;
    } catch (err) {
      if (hasCode(err, Code.NOT_FOUND)) return false;
      throw wrapStatus(err, 'Failed to check that the recorded content is still in the CAS');
    }
  }

  /** What of the content (and its references) is absent from the CAS. */
  private async missing(kind: Kind, root: Digest, record: AssetRecord, opts: CallOptions): Promise<Digest[]> {
    const cas = this.options.contentAddressableStorage;
    const refBlobs = record.referencesBlobs.map((d) => toDigest(root.instanceName, root.digestFunction, d, 'references_blobs'));
    const refDirs = record.referencesDirectories.map((d) => toDigest(root.instanceName, root.digestFunction, d, 'references_directories'));
    const missing: Digest[] = [];
    if (kind === 'directory') missing.push(...(await missingFromTree(cas, root, refBlobs, opts)));
    else missing.push(...(await cas.findMissing([root, ...refBlobs], opts)));
    for (const dir of refDirs) missing.push(...(await missingFromTree(cas, dir, [], opts)));
    return missing;
  }
}

interface Found {
  uri: string;
  qualifiers: Qualifier[];
  digest: Digest;
  expireAtMs?: number;
}

/** The request's digest function (SHA-256 when unset); INVALID_ARGUMENT when not served. */
function requestDigestFunctionOrDefault(served: readonly DigestFunction[], value: number | null | undefined): DigestFunction {
  const fn = requestDigestFunction(value) ?? 'sha256';
  if (!served.includes(fn)) {
    throw StatusError.invalidArgument(`Digest function ${fn} is not served here (served: ${served.join(', ')})`, [
      { field: 'digest_function', description: 'Not served' },
    ]);
  }
  return fn;
}

function indexed(d: Digest): IndexedDigest {
  return { hash: d.hash, sizeBytes: d.sizeBytes };
}

function toDigest(instanceName: string, fn: DigestFunction, d: IndexedDigest, field: string): Digest {
  return Digest.create(instanceName, fn, d.hash, d.sizeBytes, field);
}

function describeUris(uris: readonly string[]): string {
  const shown = uris.slice(0, 3).map((u) => JSON.stringify(u.length > 200 ? `${u.slice(0, 200)}...` : u));
  return uris.length > 3 ? `${shown.join(', ')} and ${uris.length - 3} more` : shown.join(', ');
}
