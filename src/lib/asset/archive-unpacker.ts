/**
 * Unpacks a .tar, .tar.gz or .zip archive (a file on disk, as the downloader leaves it) into the
 * CAS as a Directory tree, for Remote Asset FetchDirectory. Memory stays bounded whatever the
 * archive's size: entries are read one at a time (tar-stream 3 for tar, yauzl 3 for zip, which reads
 * the central directory from the file instead of holding the archive), each file is hashed as it
 * streams and held in memory only up to INLINE_MAX_BYTES, beyond which it is spooled to a temporary
 * file and streamed into the CAS from there. Only the tree's shape stays in memory (archive-tree.ts,
 * which also refuses unsafe names and symlinks).
 *
 * Limits: the bytes unpacked (the tar stream after gunzip, or the sum of zip entries) and the number
 * of entries; past either the fetch is RESOURCE_EXHAUSTED, so a small archive cannot expand into an
 * unbounded one. An archive that cannot be read is INVALID_ARGUMENT.
 */
import { once } from 'node:events';
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import tar from 'tar-stream';
import yauzl from 'yauzl';
import type { BlobStore, CallOptions } from '../blobstore/blob-store.js';
import { Digest } from '../digest/digest.js';
import { type DigestFunction, newHasher } from '../digest/digest-function.js';
import { StatusError } from '../errors/status-error.js';
import { ArchiveTreeBuilder } from './archive-tree.js';

export type ArchiveFormat = 'tar' | 'tar.gz' | 'zip';

export interface UnpackOptions {
  contentAddressableStorage: BlobStore;
  instanceName: string;
  digestFunction: DigestFunction;
  /** Where large entries are spooled (a private directory of the caller's, removed by it). */
  tempDir: string;
  /** Most bytes unpacked. */
  maxUnpackedSizeBytes: number;
  /** Most entries (files, directories, links). */
  maxEntries: number;
  /** The URI, for messages. */
  uri: string;
}

/** Entries up to this size are hashed and stored from memory; larger ones go through a temporary file. */
const INLINE_MAX_BYTES = 1024 * 1024;
/** Longest symlink target read from a zip entry's content. */
const MAX_SYMLINK_TARGET_BYTES = 4096;

const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;
const S_IFDIR = 0o040000;
/** The "made by" host of zip entries whose external attributes carry a Unix mode. */
const ZIP_HOST_UNIX = 3;

/**
 * The format named by a `resource_type` qualifier (a MIME type), if any, else the format found in
 * the archive's first bytes; undefined when it is none of the three.
 */
export async function detectArchiveFormat(file: string, resourceType?: string): Promise<ArchiveFormat | undefined> {
  switch (resourceType) {
    case 'application/x-tar':
      return 'tar';
    case 'application/gzip':
    case 'application/x-gzip':
    case 'application/x-compressed-tar':
      return 'tar.gz';
    case 'application/zip':
      return 'zip';
  }
  const handle = await open(file, 'r');
  const head = Buffer.alloc(512);
  try {
    await handle.read(head, 0, 512, 0);
  } finally {
    await handle.close();
  }
  if (head[0] === 0x1f && head[1] === 0x8b) return 'tar.gz';
  if (head.subarray(0, 4).equals(Buffer.from('PK\x03\x04', 'latin1')) || head.subarray(0, 4).equals(Buffer.from('PK\x05\x06', 'latin1'))) return 'zip';
  if (head.subarray(257, 262).toString('latin1') === 'ustar') return 'tar';
  return undefined;
}

/** Unpacks `file` into the CAS and returns the root Directory's digest. */
export async function unpackArchive(file: string, format: ArchiveFormat, options: UnpackOptions, opts: CallOptions = {}): Promise<Digest> {
  const tree = new ArchiveTreeBuilder({ maxEntries: options.maxEntries });
  const store = new EntryStore(options, opts);
  try {
    if (format === 'zip') await unpackZip(file, tree, store, options);
    else await unpackTar(file, format === 'tar.gz', tree, store, options, opts);
  } catch (err) {
    if (err instanceof StatusError) throw err;
    if (opts.signal?.aborted) throw StatusError.cancelled('Unpacking was cancelled');
    throw StatusError.invalidArgument(`Failed to unpack the ${format} archive at ${JSON.stringify(options.uri.slice(0, 200))}: ${(err as Error).message}`, [
      { field: 'uris', description: `Not a readable ${format} archive` },
    ]);
  }
  return tree.store(options.contentAddressableStorage, options, opts);
}

async function unpackTar(file: string, gzipped: boolean, tree: ArchiveTreeBuilder, store: EntryStore, options: UnpackOptions, opts: CallOptions): Promise<void> {
  const source = createReadStream(file);
  const gunzip = gzipped ? createGunzip() : undefined;
  // The tar stream is counted as it leaves gunzip: headers and padding count as well as contents,
  // so neither a bomb of huge entries nor of huge pax headers (which tar-stream buffers) gets past the limit.
  let seen = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      seen += chunk.length;
      done(seen > options.maxUnpackedSizeBytes ? tooLarge(options) : null, chunk);
    },
  });
  const extract = tar.extract();
  const fail = (err: Error) => extract.destroy(err);
  source.on('error', fail);
  gunzip?.on('error', fail);
  counter.on('error', fail);
  const onAbort = () => fail(new Error('aborted'));
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  (gunzip ? source.pipe(gunzip) : source).pipe(counter).pipe(extract);
  try {
    for await (const entry of extract) {
      const { header } = entry;
      switch (header.type) {
        case 'file':
        case 'contiguous-file':
          tree.addFile(header.name, await store.put(entry), ((header.mode ?? 0) & 0o100) !== 0);
          break;
        case 'directory':
          entry.resume();
          tree.addDirectory(header.name);
          break;
        case 'symlink':
          entry.resume();
          tree.addSymlink(header.name, header.linkname ?? '');
          break;
        case 'link':
          entry.resume();
          tree.addHardLink(header.name, header.linkname ?? '');
          break;
        default:
          // Devices, FIFOs and global pax headers (git archive writes one) have no place in a CAS tree.
          entry.resume();
      }
    }
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    source.destroy();
    gunzip?.destroy();
  }
}

async function unpackZip(file: string, tree: ArchiveTreeBuilder, store: EntryStore, options: UnpackOptions): Promise<void> {
  // strictFileNames off: backslashes become `/`; yauzl still refuses absolute and `..` names, and so does the tree.
  const zip = await yauzl.openPromise(file, { lazyEntries: true, autoClose: false, strictFileNames: false, validateEntrySizes: true });
  try {
    for await (const entry of zip.eachEntry()) {
      const unix = entry.versionMadeBy >> 8 === ZIP_HOST_UNIX;
      const mode = unix ? entry.externalFileAttributes >>> 16 : 0;
      if (entry.fileName.endsWith('/') || (mode & S_IFMT) === S_IFDIR) {
        tree.addDirectory(entry.fileName);
        continue;
      }
      if (entry.uncompressedSize > options.maxUnpackedSizeBytes - store.unpackedBytes) throw tooLarge(options);
      const content = await zip.openReadStreamPromise(entry);
      if ((mode & S_IFMT) === S_IFLNK) {
        tree.addSymlink(entry.fileName, await readSmall(content, MAX_SYMLINK_TARGET_BYTES, entry.fileName));
      } else {
        tree.addFile(entry.fileName, await store.put(content), (mode & 0o100) !== 0);
      }
    }
  } finally {
    zip.close();
  }
}

/** Stores entry contents in the CAS, counting the bytes unpacked. */
class EntryStore {
  unpackedBytes = 0;
  private spools = 0;

  constructor(
    private readonly options: UnpackOptions,
    private readonly opts: CallOptions,
  ) {}

  async put(content: AsyncIterable<Buffer>): Promise<Digest> {
    const { contentAddressableStorage: cas, digestFunction, instanceName } = this.options;
    const hasher = newHasher(digestFunction);
    let chunks: Buffer[] = [];
    let sizeBytes = 0;
    let spool: { path: string; out: WriteStream } | undefined;
    try {
      for await (const chunk of content) {
        sizeBytes += chunk.length;
        this.unpackedBytes += chunk.length;
        if (this.unpackedBytes > this.options.maxUnpackedSizeBytes) throw tooLarge(this.options);
        hasher.update(chunk);
        if (!spool && sizeBytes <= INLINE_MAX_BYTES) {
          chunks.push(chunk);
          continue;
        }
        if (!spool) {
          const path = join(this.options.tempDir, `entry-${this.spools++}`);
          spool = { path, out: createWriteStream(path) };
          for (const c of chunks) spool.out.write(c);
          chunks = [];
        }
        if (!spool.out.write(chunk)) await once(spool.out, 'drain');
      }
      const digest = Digest.create(instanceName, digestFunction, hasher.digest('hex'), sizeBytes);
      if (!spool) {
        await cas.put(digest, Buffer.concat(chunks), this.opts);
        return digest;
      }
      spool.out.end();
      await once(spool.out, 'finish');
      if ((await cas.findMissing([digest], this.opts)).length > 0) await cas.put(digest, createReadStream(spool.path), this.opts);
      return digest;
    } finally {
      if (spool) {
        spool.out.destroy();
        await rm(spool.path, { force: true });
      }
    }
  }
}

async function readSmall(content: Readable, maxBytes: number, name: string): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of content as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) {
      content.destroy();
      throw StatusError.invalidArgument(`Archive entry ${JSON.stringify(name.slice(0, 200))} is a symlink with a target longer than ${maxBytes} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function tooLarge(options: UnpackOptions): StatusError {
  return StatusError.resourceExhausted(`The archive at ${JSON.stringify(options.uri.slice(0, 200))} unpacks to more than ${options.maxUnpackedSizeBytes} bytes`);
}
