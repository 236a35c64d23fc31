/**
 * The CAS half of the walkthrough, through the built CLI (`node bin/run.js`, so `npm run build`
 * must have run) against an apiserver started in this process on 127.0.0.1:0. Every command runs
 * with --json and its stdout is parsed as the command's exported result type.
 *
 * Exit codes asserted here (see src/lib/cli/base-command.ts): 2 for usage errors, including a
 * malformed digest (caught before any remote call); 3 when the server refuses (NOT_FOUND,
 * FAILED_PRECONDITION...); 4 when the server cannot be reached.
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FindMissingBlobsResult } from '../../src/commands/find_missing_blobs.js';
import type { BatchDownloadResult } from '../../src/commands/batch_download.js';
import type { BatchUploadResult } from '../../src/commands/batch_upload.js';
import type { DownloadResult } from '../../src/commands/download.js';
import type { UploadActionResult } from '../../src/commands/upload_action.js';
import type { UploadCommandResult } from '../../src/commands/upload_command.js';
import type { UploadDirResult } from '../../src/commands/upload_dir.js';
import type { ErrorJson } from '../../src/lib/cli/base-command.js';
import { chunkBytes } from '../../src/lib/cas/fastcdc.js';
import { CasClient } from '../../src/lib/client/cas-client.js';
import { RemoteConnection } from '../../src/lib/client/connection.js';
import { Digest } from '../../src/lib/digest/digest.js';
import { reapi } from '../../src/lib/proto/index.js';
import { silentLogger } from '../../src/lib/util/logger.js';
import { type ApiServer, startApiServer } from '../../src/server/apiserver.js';
import { binPath, repoRoot } from '../helpers/serve-process.js';

interface Run {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI asynchronously (the in-process server must keep serving meanwhile). */
function bzutil(args: string[]): Promise<Run & { stdoutBytes: Buffer }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [binPath, ...args],
      { cwd: repoRoot, encoding: 'buffer', maxBuffer: 64 * 1024 * 1024, timeout: 60_000, env: { ...process.env, BZUTIL_CAS_ADDR: '' } },
      (err, stdout, stderr) => {
        const exitCode = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1) : 0;
        resolve({ exitCode, stdout: stdout.toString(), stderr: stderr.toString(), stdoutBytes: stdout });
      },
    );
  });
}

async function json<T>(args: string[]): Promise<T> {
  const run = await bzutil([...args, '--json']);
  if (run.exitCode !== 0) throw new Error(`bzutil ${args.join(' ')} exited ${run.exitCode}\nstdout: ${run.stdout}\nstderr: ${run.stderr}`);
  return JSON.parse(run.stdout) as T;
}

const sha256 = (data: Uint8Array | string) => createHash('sha256').update(data).digest('hex');

let server: ApiServer;
let work: string;
let cas: string;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'bzutil-e2e-cas-'));
  server = await startApiServer({ listenAddress: '127.0.0.1:0', storageDir: join(work, 'storage'), logger: silentLogger });
  cas = `--cas_addr=127.0.0.1:${server.port}`;
});
afterAll(async () => {
  await server?.close();
  await rm(work, { recursive: true, force: true });
});

describe('bzutil CAS commands', () => {
  it('walks through upload_command, upload_dir and upload_action, storing canonical messages', async () => {
    // upload_command sleep 17: Command{arguments:["sleep","17"]} is 11 bytes on the wire.
    const command = await json<UploadCommandResult>(['upload_command', cas, 'sleep', '17']);
    const expectedCommand = Buffer.from([0x0a, 5, ...Buffer.from('sleep'), 0x0a, 2, ...Buffer.from('17')]);
    expect(command.digest).toBe(`${sha256(expectedCommand)}/11`);
    expect(command.command.arguments).toEqual(['sleep', '17']);

    // upload_dir: a small tree with an executable, a symlink and an empty directory.
    const inputs = join(work, 'inputs');
    await mkdir(join(inputs, 'bin'), { recursive: true });
    await mkdir(join(inputs, 'empty'));
    await writeFile(join(inputs, 'bin/run.sh'), '#!/bin/sh\necho run\n');
    await chmod(join(inputs, 'bin/run.sh'), 0o755);
    await writeFile(join(inputs, 'data.txt'), 'payload');
    await symlink('bin/run.sh', join(inputs, 'run'));
    const dir = await json<UploadDirResult>(['upload_dir', cas, inputs]);
    // Sent: the root and bin/ Directories and two files. empty/ is the empty blob: never sent.
    expect(dir).toMatchObject({ files: 2, directories: 3, uploadedBlobs: 4, skippedBlobs: 1 });
    const again = await json<UploadDirResult>(['upload_dir', '--cas-addr', `127.0.0.1:${server.port}`, inputs]);
    expect(again).toMatchObject({ digest: dir.digest, uploadedBlobs: 0, skippedBlobs: 5 });

    // upload_action ties them together; the stored Action decodes to what was asked for.
    const action = await json<UploadActionResult>(['upload_action', cas, `--command=${command.digest}`, `--input_root=${dir.digest}`, '--timeout=30']);
    const stored = reapi.Action.decode(await server.contentAddressableStorage.get(Digest.parse(action.digest)));
    expect(stored.commandDigest?.hash).toBe(command.hash);
    expect(stored.inputRootDigest?.hash).toBe(Digest.parse(dir.digest).hash);
    expect(stored.timeout?.seconds).toBe(30);
    expect(stored.doNotCache).toBe(false);
  });

  it('prints the bare digest on stdout without --json', async () => {
    const run = await bzutil(['upload_command', cas, '--', 'sh', '-c', 'echo hi']);
    expect(run.exitCode).toBe(0);
    expect(run.stdout).toMatch(/^[0-9a-f]{64}\/\d+\n$/);
    expect(run.stderr).toBe('');
  });

  it('defaults the input root to the empty directory and refuses a command the CAS lacks', async () => {
    const command = await json<UploadCommandResult>(['upload_command', cas, 'true']);
    const action = await json<UploadActionResult>(['upload_action', cas, `--command=${command.digest}`, '--no_cache']);
    expect(action.action.inputRootDigest?.hash).toBe(Digest.empty().hash);
    expect(action.action.doNotCache).toBe(true);

    const absent = `${sha256('no such command')}/15`;
    const run = await bzutil(['upload_action', cas, `--command=${absent}`, '--json']);
    // A blob the CAS lacks is "not found": exit 4.
    expect(run.exitCode).toBe(4);
    const err = JSON.parse(run.stdout) as ErrorJson;
    expect(err).toMatchObject({ status: 4, code: 'FAILED_PRECONDITION' });
    expect(err.message).toContain(absent);
  });

  it('round-trips blobs: batch_upload, find_missing_blobs, batch_download and download', async () => {
    const blobs = join(work, 'blobs');
    await mkdir(blobs);
    const large = Buffer.alloc(3 * 1024 * 1024 + 7, 'q');
    await writeFile(join(blobs, 'small.txt'), 'small blob');
    await writeFile(join(blobs, 'large.bin'), large);
    const uploaded = await json<BatchUploadResult>(['batch_upload', cas, '--dir', blobs]);
    expect(uploaded.blobs.map((b) => b.path).sort()).toEqual(['large.bin', 'small.txt']);
    const digests = uploaded.blobs.map((b) => b.digest);

    const absent = `${sha256('absent')}/6`;
    const missing = await json<FindMissingBlobsResult>(['find_missing_blobs', cas, `--digests=${[...digests, absent].join(',')}`]);
    expect(missing).toEqual({ missing: [absent], checked: 3 });

    const out = join(work, 'downloaded');
    const downloaded = await json<BatchDownloadResult>(['batch_download', cas, '--digests', digests.join(','), '--dir', out]);
    expect(downloaded.files).toHaveLength(2);
    for (const d of digests) {
      const hash = d.split('/')[0]!;
      expect(sha256(await readFile(join(out, hash)))).toBe(hash);
    }

    const largeDigest = `${sha256(large)}/${large.length}`;
    const file = join(work, 'large-copy.bin');
    const single = await json<DownloadResult>(['download', cas, largeDigest, '-o', file]);
    expect(single.path).toBe(file);
    expect(sha256(await readFile(file))).toBe(sha256(large));

    // Without -o, to a pipe: the raw bytes on stdout.
    const piped = await bzutil(['download', cas, digests[uploaded.blobs.findIndex((b) => b.path === 'small.txt')]!]);
    expect(piped.exitCode).toBe(0);
    expect(piped.stdoutBytes.toString()).toBe('small blob');
  });

  it('moves blobs zstd-compressed with --compress, byte-identical to plain transfers', async () => {
    const blobs = join(work, 'compress-blobs');
    await mkdir(blobs);
    // Source-like text, compressible; large enough for ByteStream, plus a small one for the batch path.
    const lines = Array.from({ length: 60_000 }, (_, i) => `export const item${i} = lookup(table, ${(i * 7919) % 1000});\n`);
    const large = Buffer.from(lines.join(''));
    await writeFile(join(blobs, 'large.ts'), large);
    await writeFile(join(blobs, 'small.ts'), lines.slice(0, 200).join(''));
    const uploaded = await json<BatchUploadResult>(['batch_upload', cas, '--compress', '--dir', blobs]);
    const digests = uploaded.blobs.map((b) => b.digest);
    const largeDigest = `${sha256(large)}/${large.length}`;
    expect(digests).toContain(largeDigest);

    const out = join(work, 'compress-out');
    await json<BatchDownloadResult>(['batch_download', cas, '--compress', '--digests', digests.join(','), '--dir', out]);
    for (const d of digests) {
      const hash = d.split('/')[0]!;
      expect(sha256(await readFile(join(out, hash)))).toBe(hash);
    }
    const piped = await bzutil(['download', cas, '--compress', largeDigest]);
    expect(piped.exitCode).toBe(0);
    expect(piped.stdoutBytes.equals(large)).toBe(true);
    // The same blob read plain is the same bytes.
    const plain = await bzutil(['download', cas, largeDigest]);
    expect(plain.stdoutBytes.equals(large)).toBe(true);
  });

  it('uploads large blobs as spliced chunks (--no-split_splice: plainly) and downloads them through --chunk_cache', async () => {
    const blobs = join(work, 'splice-blobs');
    await mkdir(blobs);
    const chunked = randomBytes(10 * 1024 * 1024);
    await writeFile(join(blobs, 'chunked.bin'), chunked);
    await json<BatchUploadResult>(['batch_upload', cas, '--dir', blobs]);
    const plainDir = join(work, 'plain-blobs');
    await mkdir(plainDir);
    const plain = randomBytes(10 * 1024 * 1024);
    await writeFile(join(plainDir, 'plain.bin'), plain);
    await json<BatchUploadResult>(['batch_upload', cas, '--no-split_splice', '--dir', plainDir]);

    // The chunks (cut with the server's 512 KiB FastCDC parameters) are in the CAS only for the spliced upload.
    const connection = new RemoteConnection(`127.0.0.1:${server.port}`);
    try {
      const client = new CasClient(connection);
      const chunksOf = (data: Buffer) => chunkBytes(data, { avgChunkSizeBytes: 512 * 1024 }).map((c) => client.digestOf(c));
      expect(await client.findMissingBlobs(chunksOf(chunked))).toEqual([]);
      expect((await client.findMissingBlobs(chunksOf(plain))).length).toBeGreaterThan(5);
      expect(await client.findMissingBlobs([client.digestOf(chunked), client.digestOf(plain)])).toEqual([]);
    } finally {
      connection.close();
    }

    const cacheDir = join(work, 'chunk-cache');
    const file = join(work, 'spliced-out.bin');
    await json<DownloadResult>(['download', cas, '--chunk_cache', cacheDir, `${sha256(chunked)}/${chunked.length}`, '-o', file]);
    expect((await readFile(file)).equals(chunked)).toBe(true);
    expect((await readdir(join(cacheDir, 'sha256'))).length).toBeGreaterThan(5);
  });

  it('works with every --digest_function: a tree uploaded and downloaded under BLAKE3 and SHA-512', async () => {
    const src = join(work, 'fn-tree-src');
    await mkdir(join(src, 'sub'), { recursive: true });
    await writeFile(join(src, 'sub/file.txt'), 'hashed with another function');
    for (const fn of ['blake3', 'sha512']) {
      const dir = await json<UploadDirResult>(['upload_dir', cas, `--digest_function=${fn}`, src]);
      expect(dir.digest.split('/')[0]).toHaveLength(fn === 'blake3' ? 64 : 128);
      const dest = join(work, `fn-tree-${fn}`);
      await json<DownloadResult>(['download', cas, `--digest_function=${fn}`, '--tree', dir.digest, '-o', dest]);
      expect((await readFile(join(dest, 'sub/file.txt'))).toString()).toBe('hashed with another function');
      const rebuilt = await json<UploadDirResult>(['upload_dir', cas, `--digest_function=${fn}`, dest]);
      expect(rebuilt.digest).toBe(dir.digest);
    }
    // The BLAKE3 root is unknown as SHA-256 (same length, other function): NOT_FOUND, exit 4.
    const b3 = await json<UploadDirResult>(['upload_dir', cas, '--digest_function=blake3', src]);
    const asSha256 = await bzutil(['download', cas, '--tree', b3.digest, '-o', join(work, 'fn-tree-wrong')]);
    expect(asSha256.exitCode).toBe(4);
  });

  it('downloads a whole tree that builds back to the same root digest', async () => {
    const src = join(work, 'tree-src');
    await mkdir(join(src, 'a/b'), { recursive: true });
    await writeFile(join(src, 'a/b/deep.txt'), 'deep');
    await writeFile(join(src, 'tool'), '#!/bin/sh\n');
    await chmod(join(src, 'tool'), 0o755);
    const dir = await json<UploadDirResult>(['upload_dir', cas, src]);
    const dest = join(work, 'tree-dest');
    const result = await json<DownloadResult>(['download', cas, '--tree', dir.digest, '-o', dest]);
    expect(result).toMatchObject({ files: 2, symlinks: 0 });
    expect((await readFile(join(dest, 'a/b/deep.txt'))).toString()).toBe('deep');
    expect((await stat(join(dest, 'tool'))).mode & 0o100).toBe(0o100);
    const rebuilt = await json<UploadDirResult>(['upload_dir', cas, dest]);
    expect(rebuilt.digest).toBe(dir.digest);
  });

  it('fails with exit code 5 and a clear message when the server cannot be reached', async () => {
    const run = await bzutil(['upload_dir', '--cas_addr=127.0.0.1:1', work]);
    expect(run.exitCode).toBe(5);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(/^Error: Failed to reach the CAS at 127\.0\.0\.1:1: /);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);

    const asJson = await bzutil(['find_missing_blobs', '--cas_addr=127.0.0.1:1', `--digests=${sha256('x')}/1`, '--json']);
    expect(asJson.exitCode).toBe(5);
    expect(JSON.parse(asJson.stdout)).toMatchObject({ status: 5, code: 'UNAVAILABLE' });
  });

  it('treats a malformed digest as a usage error (exit 2) and an absent blob as NOT_FOUND (exit 4)', async () => {
    const malformed = await bzutil(['download', cas, 'not-a-digest', '-o', join(work, 'x'), '--json']);
    expect(malformed.exitCode).toBe(2);
    expect(JSON.parse(malformed.stdout)).toMatchObject({ status: 2, code: 'INVALID_ARGUMENT' });

    const absentOut = join(work, 'absent-out');
    const absent = await bzutil(['download', cas, `${sha256('never stored')}/12`, '-o', absentOut]);
    expect(absent.exitCode).toBe(4);
    expect(absent.stderr).toMatch(/^Error: Failed to read blob [0-9a-f]{64}\/12/);
    expect((await readdir(work)).filter((n) => n.startsWith('absent-out'))).toEqual([]);
  });

  it('treats unknown flags and a bad address as usage errors (exit 2)', async () => {
    expect((await bzutil(['upload_dir', '--no_such_flag', work])).exitCode).toBe(2);
    const badAddress = await bzutil(['upload_dir', '--cas_addr=http://x:1', work]);
    expect(badAddress.exitCode).toBe(2);
    expect(badAddress.stderr).toContain('scheme "http" is not supported');
  });
});
