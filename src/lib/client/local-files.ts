/**
 * The CAS client's local file side: reading a file that is about to be uploaded (and noticing it
 * changed since it was hashed), and writing downloaded blobs so that a partial or corrupt file never
 * appears under its final name (temporary file in the same directory, hash check, rename).
 */
import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Digest } from '../digest/digest.js';
import { newHasher } from '../digest/digest-function.js';
import { fsStatusError } from '../errors/fs-status.js';
import { Code, isAbortError, StatusError, wrapStatus } from '../errors/status-error.js';

/** The whole file at `path`, which must still hold exactly `digest.sizeBytes` bytes. */
export async function readFileOfSize(path: string, digest: Digest): Promise<Uint8Array> {
  const file = await open(path, 'r').catch((err) => {
    throw wrapStatus(fsStatusError(err), `Failed to open ${JSON.stringify(path)} for blob ${digest}`);
  });
  try {
    // Read one byte more than expected, to notice a file that grew since it was hashed.
    const buffer = Buffer.alloc(digest.sizeBytes + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await file.read(buffer, length, buffer.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length === buffer.length) break;
    }
    if (length !== digest.sizeBytes) {
      throw StatusError.failedPrecondition(`File ${JSON.stringify(path)} no longer has ${digest.sizeBytes} bytes; was it modified after hashing?`);
    }
    return buffer.subarray(0, length);
  } finally {
    await file.close();
  }
}

/** Writes `data` to `path` through a temporary file and a rename. */
export async function writeFileAtomic(path: string, data: Uint8Array, isExecutable: boolean): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const temp = `${path}.bzutil-${randomUUID()}.tmp`;
  try {
    const file = await open(temp, 'w', isExecutable ? 0o755 : 0o644);
    try {
      await file.writeFile(data);
    } finally {
      await file.close();
    }
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true });
    throw wrapStatus(fsStatusError(err), `Failed to write ${JSON.stringify(path)}`);
  }
}

/**
 * Streams `source` (the bytes of `digest`) into `path` through a temporary file in the same
 * directory, verifying the hash before renaming it into place. Memory stays at a chunk or two
 * whatever the blob size.
 */
export async function writeStreamVerified(digest: Digest, source: AsyncIterable<Uint8Array>, path: string, isExecutable: boolean): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const temp = `${path}.bzutil-${randomUUID()}.tmp`;
  const hasher = newHasher(digest.digestFunction);
  let sizeBytes = 0;
  async function* hashing(): AsyncGenerator<Uint8Array> {
    for await (const data of source) {
      hasher.update(data);
      sizeBytes += data.length;
      yield data;
    }
  }
  try {
    await pipeline(Readable.from(hashing(), { objectMode: false }), createWriteStream(temp, { mode: isExecutable ? 0o755 : 0o644 }));
    const hash = hasher.digest('hex');
    if (hash !== digest.hash || sizeBytes !== digest.sizeBytes) {
      throw new StatusError(Code.DATA_LOSS, `Failed to download blob ${digest}: received ${hash}/${sizeBytes}`);
    }
    await rename(temp, path);
  } catch (err) {
    await rm(temp, { force: true });
    if (err instanceof StatusError) throw err;
    if (isAbortError(err)) throw StatusError.cancelled(`Download of blob ${digest} was cancelled`);
    throw wrapStatus(fsStatusError(err), `Failed to write blob ${digest} to ${JSON.stringify(path)}`);
  }
}
