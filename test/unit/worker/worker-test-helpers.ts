/**
 * Shared fixtures for the worker tests: building input trees in a blob store, a store that records
 * which calls reached it, process liveness checks and bounded polling.
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { BlobStore, CallOptions, GetOptions, ReadOptions } from '../../../src/lib/blobstore/blob-store.js';
import { MemoryBlobStore } from '../../../src/lib/blobstore/memory-blob-store.js';
import { Digest } from '../../../src/lib/digest/digest.js';
import { encodeWithDigest } from '../../../src/lib/digest/encode-with-digest.js';
import { reapi } from '../../../src/lib/proto/index.js';
import { compareUtf8 } from '../../../src/lib/cas/tree-paths.js';

export function newMemoryStore(): MemoryBlobStore {
  return new MemoryBlobStore({ maxSizeBytes: 64 * 1024 * 1024 });
}

/** A file is its text (or `{ text, executable }`), a symlink `{ symlink: target }`, a directory a nested object. */
export type TreeSpec = { [name: string]: string | { text: string; executable?: boolean } | { symlink: string } | TreeSpec };

export async function putBlob(store: BlobStore, data: string | Uint8Array): Promise<Digest> {
  const bytes = typeof data === 'string' ? new TextEncoder().encode(data) : data;
  const digest = Digest.ofBytes(bytes);
  await store.put(digest, bytes);
  return digest;
}

export async function putDirectory(store: BlobStore, directory: reapi.IDirectory): Promise<Digest> {
  const { bytes, digest } = encodeWithDigest(reapi.Directory, directory);
  await store.put(digest, bytes);
  return digest;
}

/** Uploads a tree described by `spec` (files, executables, symlinks, subdirectories); returns the root digest. */
export async function putTree(store: BlobStore, spec: TreeSpec): Promise<Digest> {
  const directory: reapi.IDirectory = { files: [], directories: [], symlinks: [] };
  for (const name of Object.keys(spec).sort(compareUtf8)) {
    const entry = spec[name]!;
    if (typeof entry === 'string') {
      directory.files!.push({ name, digest: (await putBlob(store, entry)).toProto() });
    } else if ('symlink' in entry && typeof entry.symlink === 'string') {
      directory.symlinks!.push({ name, target: entry.symlink });
    } else if ('text' in entry && typeof entry.text === 'string') {
      directory.files!.push({ name, digest: (await putBlob(store, entry.text)).toProto(), isExecutable: !!entry.executable });
    } else {
      directory.directories!.push({ name, digest: (await putTree(store, entry as TreeSpec)).toProto() });
    }
  }
  return putDirectory(store, directory);
}

/** Wraps a store and records every call, for "was the backend asked" assertions. */
export class RecordingBlobStore implements BlobStore {
  readonly calls: { method: 'get' | 'read' | 'put' | 'findMissing'; digests: string[] }[] = [];
  constructor(readonly base: BlobStore) {}

  get(digest: Digest, opts?: GetOptions): Promise<Uint8Array> {
    this.calls.push({ method: 'get', digests: [digest.toString()] });
    return this.base.get(digest, opts);
  }
  read(digest: Digest, opts?: ReadOptions): AsyncIterable<Uint8Array> {
    this.calls.push({ method: 'read', digests: [digest.toString()] });
    return this.base.read(digest, opts);
  }
  put(digest: Digest, data: Uint8Array | AsyncIterable<Uint8Array>, opts?: CallOptions): Promise<void> {
    this.calls.push({ method: 'put', digests: [digest.toString()] });
    return this.base.put(digest, data, opts);
  }
  findMissing(digests: readonly Digest[], opts?: CallOptions): Promise<Digest[]> {
    this.calls.push({ method: 'findMissing', digests: digests.map((d) => d.toString()) });
    return this.base.findMissing(digests, opts);
  }

  count(method: 'get' | 'read' | 'put' | 'findMissing'): number {
    return this.calls.filter((c) => c.method === method).length;
  }
}

/** True while `pid` is a live (not zombie) process. Reads /proc, so Linux only. */
export function isProcessAlive(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return false;
  }
  // Field 3, after the parenthesised command name, is the state; Z and X are dead.
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state !== 'Z' && state !== 'X';
}

/** Host processes whose command line contains `marker` (survivors of an action). */
export function processesWith(marker: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ').includes(marker)) found.push(Number(entry));
    } catch {
      // Gone meanwhile.
    }
  }
  return found;
}

/** SIGKILLs every pid in `pids` that is still around and empties the list (test cleanup). */
export function killProcesses(pids: number[]): void {
  for (const pid of pids.splice(0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

/** Polls `condition` every 10 ms until it holds; fails after `timeoutMs`. */
export async function waitFor(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Reads a whole blob as text. */
export async function blobText(store: BlobStore, digest: reapi.IDigest | null | undefined): Promise<string> {
  if (!digest) throw new Error('Expected a digest');
  const bytes = await store.get(Digest.create('', 'sha256', digest.hash ?? '', Number(digest.sizeBytes ?? 0)));
  return new TextDecoder().decode(bytes);
}
