/**
 * `bzutil serve apiserver --processes 2` as a real process tree: blobs uploaded over many
 * connections are found and read back through fresh connections whichever process they land on;
 * /metrics sums the processes; a hostile client does not take a process down; a killed process is
 * restarted, too many deaths make the primary give up; SIGTERM (or the primary's death) leaves no
 * process behind; a port already taken fails the start. Child processes are found by the
 * primary's pid (`ps --ppid`) and only ever signalled by pid.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CasClient } from '../../src/lib/client/cas-client.js';
import { RemoteConnection } from '../../src/lib/client/connection.js';
import { Digest } from '../../src/lib/digest/digest.js';
import type { TokenCreateResult } from '../../src/commands/token/create.js';
import { MAX_RESTARTS } from '../../src/server/apiserver-cluster.js';
import { runCli } from '../helpers/run-cli.js';
import { type ServeProcess, startServe, stopChild } from '../helpers/serve-process.js';

/** A connection of its own (grpc-js shares one TCP connection between channels to an address unless told not to). */
function freshConnection(address: string): RemoteConnection {
  return new RemoteConnection(address, { channelOptions: { 'grpc.use_local_subchannel_pool': 1 } });
}

function childPids(pid: number): number[] {
  try {
    return execFileSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' })
      .split('\n')
      .map((l) => Number(l.trim()))
      .filter((n) => n > 0);
  } catch {
    return []; // ps exits 1 when it lists nothing
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitFor<T>(probe: () => T | Promise<T>, what: string, timeoutMs = 20_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A metric's value in the primary's /metrics text (the first series of that name). */
async function metric(httpAddress: string, name: string): Promise<number | undefined> {
  const text = await (await fetch(`http://${httpAddress}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

function blobOf(i: number): { data: Uint8Array; digest: Digest } {
  // Small ones go through BatchUpdateBlobs, every tenth (3 MiB) through ByteStream.
  const size = i % 10 === 0 ? 3 * 1024 * 1024 + i : 1000 + i;
  const data = new Uint8Array(size);
  for (let j = 0; j < size; j++) data[j] = (j * 31 + i * 7) & 0xff;
  return { data, digest: Digest.ofBytes(data) };
}

const serveArgs = (dir: string, ...more: string[]) => ['apiserver', '--processes=2', '--listen=127.0.0.1:0', `--storage_dir=${dir}`, '--shutdown_grace_period=5s', ...more];

describe('serve apiserver --processes 2', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bzutil-procs-'));
  let serve: ServeProcess;
  let address: string;
  let workers: number[];
  beforeAll(async () => {
    serve = await startServe(serveArgs(join(dir, 'storage'), '--log_level=debug'), ['apiserver', 'http']);
    address = serve.addresses.apiserver!;
    workers = await waitFor(() => (childPids(serve.child.pid!).length === 2 ? childPids(serve.child.pid!) : undefined), 'two apiserver processes');
  }, 60_000);
  afterAll(async () => {
    await serve?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('stores blobs uploaded over 24 parallel connections, and every one is found and read back byte-identical through fresh connections', async () => {
    const blobs = Array.from({ length: 120 }, (_, i) => blobOf(i));
    await Promise.all(
      Array.from({ length: 24 }, async (_, c) => {
        const connection = freshConnection(address);
        try {
          const cas = new CasClient(connection);
          for (let i = c; i < blobs.length; i += 24) await cas.putBlob(blobs[i]!.digest, blobs[i]!.data);
        } finally {
          connection.close();
        }
      }),
    );
    for (let c = 0; c < 6; c++) {
      const connection = freshConnection(address);
      try {
        const cas = new CasClient(connection);
        await expect(cas.findMissingBlobs(blobs.map((b) => b.digest))).resolves.toEqual([]);
        for (let i = c; i < blobs.length; i += 6) expect(Buffer.compare(await cas.readBlob(blobs[i]!.digest), blobs[i]!.data)).toBe(0);
      } finally {
        connection.close();
      }
    }
    // Both processes served calls (each logs its RPCs under its own component at debug level).
    expect(serve.logs()).toContain('"component":"apiserver/process 0"');
    expect(serve.logs()).toContain('"component":"apiserver/process 1"');
    // /metrics is the sum over both processes, and says how many there are.
    expect(await metric(serve.addresses.http!, 'bzutil_apiserver_processes')).toBe(2);
    const stored = await metric(serve.addresses.http!, 'bzutil_disk_store_blobs');
    expect(stored).toBeGreaterThanOrEqual(blobs.length);
  }, 120_000);

  it('survives hostile clients: garbage bytes, a malformed protobuf message, a frame claiming 4 GiB; neither process dies', async () => {
    for (let round = 0; round < 4; round++) {
      // Not HTTP/2 at all.
      await new Promise<void>((resolve) => {
        const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.slice(address.lastIndexOf(':') + 1))];
        const socket = net.connect(port, host, () => socket.write(Buffer.from('GET / HTTP/1.1\r\n\r\n\x00\xff\xfe garbage'.repeat(50))));
        setTimeout(() => socket.destroy(), 1000);
        socket.on('error', () => resolve());
        socket.on('close', () => resolve());
      });
      // HTTP/2 and gRPC framing, with a message that is not a FindMissingBlobsRequest, then one that lies about its length.
      for (const body of [Buffer.from([0, 0, 0, 0, 6, 0x0a, 0xff, 0xff, 0xff, 0xff, 0xff]), Buffer.from([0, 0xff, 0xff, 0xff, 0xff, 1, 2, 3])]) {
        const session = http2.connect(`http://${address}`);
        session.on('error', () => {});
        const status = await new Promise<string | undefined>((resolve) => {
          const req = session.request({ ':method': 'POST', ':path': '/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs', 'content-type': 'application/grpc', te: 'trailers' });
          let grpcStatus: string | undefined;
          req.on('response', (headers) => (grpcStatus ??= headers['grpc-status'] as string | undefined));
          req.on('trailers', (trailers) => (grpcStatus = trailers['grpc-status'] as string | undefined));
          req.on('error', () => resolve(grpcStatus));
          req.on('close', () => resolve(grpcStatus));
          req.setTimeout(3000, () => req.close(http2.constants.NGHTTP2_CANCEL));
          req.resume();
          req.end(body);
        });
        session.close();
        if (status !== undefined) expect(status).not.toBe('0');
      }
    }
    expect(childPids(serve.child.pid!).sort()).toEqual([...workers].sort());
    for (let c = 0; c < 4; c++) {
      const connection = freshConnection(address);
      await expect(new CasClient(connection).findMissingBlobs([blobOf(1).digest])).resolves.toEqual([]);
      connection.close();
    }
  }, 60_000);

  it('restarts a process that is killed, and keeps serving', async () => {
    const victim = workers[0]!;
    process.kill(victim, 'SIGKILL');
    const replaced = await waitFor(() => {
      const now = childPids(serve.child.pid!);
      return now.length === 2 && !now.includes(victim) ? now : undefined;
    }, 'a new apiserver process');
    await waitFor(async () => (await metric(serve.addresses.http!, 'bzutil_apiserver_processes')) === 2, 'the new process listening');
    expect(await metric(serve.addresses.http!, 'bzutil_apiserver_process_restarts_total')).toBe(1);
    workers = replaced;
    for (let c = 0; c < 4; c++) {
      const connection = freshConnection(address);
      const cas = new CasClient(connection);
      await expect(cas.findMissingBlobs([blobOf(0).digest, blobOf(5).digest])).resolves.toEqual([]);
      expect(Buffer.compare(await cas.readBlob(blobOf(5).digest), blobOf(5).data)).toBe(0);
      connection.close();
    }
  }, 60_000);

  it('stops every process on SIGTERM and exits 0', async () => {
    const pids = childPids(serve.child.pid!);
    expect(pids).toHaveLength(2);
    const exit = new Promise<number | null>((resolve) => serve.child.once('exit', (code) => resolve(code)));
    serve.child.kill('SIGTERM');
    expect(await exit).toBe(0);
    for (const pid of pids) await waitFor(() => !isAlive(pid), `process ${pid} gone`, 5_000);
  }, 60_000);
});

describe('serve apiserver --processes 2 with a token file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bzutil-procs-auth-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('passes SIGHUP on to every process: a token added to the file works through both, and no process restarts', async () => {
    const token = async (name: string) => {
      const run = await runCli(['token', 'create', '--json', `--name=${name}`, '--instances=', '--permissions=cas.read']);
      expect(run.exitCode, run.stderr).toBe(0);
      return JSON.parse(run.stdout) as TokenCreateResult;
    };
    const [first, second] = [await token('first'), await token('second')];
    const tokenFile = join(dir, 'tokens.json');
    writeFileSync(tokenFile, JSON.stringify({ tokens: [first.entry] }));
    const serve = await startServe(serveArgs(join(dir, 'storage'), `--auth_tokens=${tokenFile}`), ['apiserver', 'http']);
    try {
      const pids = await waitFor(() => (childPids(serve.child.pid!).length === 2 ? childPids(serve.child.pid!) : undefined), 'two apiserver processes');
      const findMissing = async (t: string) => {
        const connection = new RemoteConnection(serve.addresses.apiserver!, { metadata: { authorization: `Bearer ${t}` }, channelOptions: { 'grpc.use_local_subchannel_pool': 1 } });
        try {
          return await new CasClient(connection).findMissingBlobs([blobOf(1).digest]).then(
            () => 'ok',
            (err: Error) => err.message,
          );
        } finally {
          connection.close();
        }
      };
      expect(await findMissing(first.token)).toBe('ok');
      expect(await findMissing(second.token)).toMatch(/UNAUTHENTICATED|not known/);
      writeFileSync(tokenFile, JSON.stringify({ tokens: [first.entry, second.entry] }));
      serve.child.kill('SIGHUP');
      // Four fresh connections in a row: both processes (connections are handed out in turn) know it.
      await waitFor(async () => (await Promise.all([1, 2, 3, 4].map(() => findMissing(second.token)))).every((r) => r === 'ok'), 'the new token accepted');
      for (let c = 0; c < 4; c++) expect(await findMissing(second.token)).toBe('ok');
      expect(isAlive(serve.child.pid!)).toBe(true);
      expect(childPids(serve.child.pid!).sort()).toEqual([...pids].sort());
    } finally {
      await serve.stop();
    }
  }, 90_000);
});

describe('serve apiserver --processes 2, failing', () => {
  const dir = mkdtempSync(join(tmpdir(), 'bzutil-procs-fail-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('leaves no process behind when the primary is killed outright', async () => {
    const serve = await startServe(serveArgs(join(dir, 'killed')), ['apiserver']);
    const pids = await waitFor(() => (childPids(serve.child.pid!).length === 2 ? childPids(serve.child.pid!) : undefined), 'two apiserver processes');
    serve.child.kill('SIGKILL');
    for (const pid of pids) await waitFor(() => !isAlive(pid), `process ${pid} gone`, 10_000);
  }, 60_000);

  it(`gives up, stopping the others and exiting non-zero, when processes die more than ${MAX_RESTARTS} times in a minute`, async () => {
    const serve = await startServe(serveArgs(join(dir, 'crashing')), ['apiserver', 'http']);
    const exit = new Promise<number | null>((resolve) => serve.child.once('exit', (code) => resolve(code)));
    let all: number[] = [];
    const killed = new Set<number>();
    for (let death = 0; death <= MAX_RESTARTS; death++) {
      // Two processes, none of them one already killed, both listening (the primary counts them).
      const pids = await waitFor(async () => {
        const now = childPids(serve.child.pid!);
        if (now.length !== 2 || now.some((pid) => killed.has(pid))) return undefined;
        const listening = await metric(serve.addresses.http!, 'bzutil_apiserver_processes').catch(() => undefined);
        return listening === 2 ? now : undefined;
      }, 'two processes listening');
      all = [...new Set([...all, ...pids])];
      const victim = pids[death % 2]!;
      killed.add(victim);
      process.kill(victim, 'SIGKILL');
    }
    expect(await exit).not.toBe(0);
    expect(serve.logs()).toMatch(/died 6 times within 60s .*giving up/);
    for (const pid of all) await waitFor(() => !isAlive(pid), `process ${pid} gone`, 10_000);
    await stopChild(serve.child);
  }, 90_000);

  it('exits non-zero with the reason when the port is taken', async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as net.AddressInfo).port;
    try {
      const args = ['apiserver', '--processes=2', `--listen=127.0.0.1:${port}`, `--storage_dir=${join(dir, 'taken')}`];
      const failure = await startServe(args, ['apiserver']).then(
        () => undefined,
        (err: Error) => err.message,
      );
      expect(failure).toMatch(/exited early \([1-9]\d*\)/);
      expect(failure).toMatch(/Failed to start apiserver process \d/);
    } finally {
      taken.close();
    }
  }, 60_000);
});
