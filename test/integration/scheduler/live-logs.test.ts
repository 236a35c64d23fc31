/**
 * Live logs end to end on serve all (real worker, real runner): ExecuteOperationMetadata names the
 * streams; ByteStream Read of stdout on the scheduler's port returns the first line while the action
 * still runs and ends when it ends; stderr likewise; a read after the end gets the final output; a
 * name that never existed is NOT_FOUND; a blob name still reads a blob; a large output keeps the
 * scheduler's memory bounded (the tail) while the final stream holds all of it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CasClient } from '../../../src/lib/client/cas-client.js';
import { RemoteConnection } from '../../../src/lib/client/connection.js';
import { type DecodedOperation, decodeOperation, ExecutionClient } from '../../../src/lib/client/execution-client.js';
import { Code, toStatusError } from '../../../src/lib/errors/status-error.js';
import { encodeWithDigest } from '../../../src/lib/digest/encode-with-digest.js';
import { reapi } from '../../../src/lib/proto/index.js';
import type { HttpServer } from '../../../src/server/http/http-server.js';
import type { ServeAll } from '../../../src/server/serve-all.js';
import { startServeAllInProcess } from '../../helpers/serve-all-in-process.js';

describe('live logs', () => {
  let work: string;
  let all: ServeAll;
  let stop: (() => Promise<void>) | undefined;
  let http: HttpServer;
  let connection: RemoteConnection;
  let client: ExecutionClient;

  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'bzutil-live-logs-'));
    ({ all, http, close: stop } = await startServeAllInProcess(work));
    connection = new RemoteConnection(all.scheduler.address);
    client = new ExecutionClient(connection, {});
  });
  afterAll(async () => {
    connection?.close();
    await stop?.();
    rmSync(work, { recursive: true, force: true });
  });

  /** Uploads `sh -c script` and starts it; resolves with the first Operation and the rest of the stream. */
  const start = async (script: string) => {
    const cas = new CasClient(connection);
    const command = encodeWithDigest(reapi.Command, { arguments: ['sh', '-c', script], environmentVariables: [{ name: 'PATH', value: '/usr/bin:/bin' }] });
    const root = encodeWithDigest(reapi.Directory, {});
    const action = encodeWithDigest(reapi.Action, { commandDigest: command.digest.toProto(), inputRootDigest: root.digest.toProto(), doNotCache: true });
    for (const blob of [command, root, action]) await cas.putBlob(blob.digest, blob.bytes);
    const stream = client.execute(action.digest, { skipCacheLookup: true })[Symbol.asyncIterator]();
    const first = decodeOperation((await stream.next()).value!);
    const done = (async () => {
      let last = first;
      for (let r = await stream.next(); !r.done; r = await stream.next()) last = decodeOperation(r.value);
      return { op: last, at: Date.now() };
    })();
    return { first, done };
  };

  /** Reads a stream to its end, noting when each piece arrived. */
  const readAll = async (name: string) => {
    const pieces: { text: string; at: number }[] = [];
    for await (const data of client.readLogStream(name)) pieces.push({ text: Buffer.from(data).toString(), at: Date.now() });
    return { text: pieces.map((p) => p.text).join(''), pieces, endedAt: Date.now() };
  };

  it('streams stdout and stderr while the action runs and ends with it', async () => {
    const { first, done } = await start('echo first; sleep 1.5; echo second >&2; sleep 1.5; echo third');
    const meta = first.metadata!;
    expect(meta.stdoutStreamName).toBe(`${first.name}/logs/stdout`);
    expect(meta.stderrStreamName).toBe(`${first.name}/logs/stderr`);
    const [stdout, stderr, finished] = await Promise.all([readAll(meta.stdoutStreamName!), readAll(meta.stderrStreamName!), done]);
    expect(finished.op.response?.result?.exitCode ?? 0).toBe(0);
    expect(stdout.text).toBe('first\nthird\n');
    expect(stderr.text).toBe('second\n');
    // "first" arrived live: well before the action ended (it sleeps 3 s after printing it).
    expect(finished.at - stdout.pieces[0]!.at).toBeGreaterThan(1500);
    // And the reads ended with the action, not long after.
    expect(stdout.endedAt - finished.at).toBeLessThan(3000);

    // After the end: the same names give the final output.
    expect((await readAll(meta.stdoutStreamName!)).text).toBe('first\nthird\n');
    expect((await readAll(meta.stderrStreamName!)).text).toBe('second\n');
  });

  it('answers NOT_FOUND for a stream name that never existed, and still reads blobs', async () => {
    const read = async (name: string) => {
      try {
        await readAll(name);
        return Code.OK;
      } catch (err) {
        return toStatusError(err).code;
      }
    };
    expect(await read(`operations/${randomUUID()}/logs/stdout`)).toBe(Code.NOT_FOUND);
    expect(await read(`operations/${randomUUID()}/logs/stderr`)).toBe(Code.NOT_FOUND);
    expect(await read('not-an-operation/logs/stdout')).toBe(Code.INVALID_ARGUMENT);
    const empty = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
    expect(await read(`blobs/${empty}/0`)).toBe(Code.OK);
  });

  it('keeps a bounded tail of a large output live; the final stream has all of it', async () => {
    // 8 MiB of stdout, then a pause so that the live tail can be read before the end.
    const { first, done } = await start('head -c 8388608 /dev/zero | tr "\\0" "a"; echo; echo END; sleep 1');
    const live = await readAll(first.metadata!.stdoutStreamName!);
    const finished: { op: DecodedOperation } = await done;
    expect(finished.op.response?.result?.exitCode ?? 0).toBe(0);
    // The reader may start late: it gets at most the scheduler's tail (1 MiB) plus what followed.
    expect(live.text.endsWith('a\nEND\n')).toBe(true);
    expect(live.text.length).toBeLessThanOrEqual(8 * 1024 * 1024 + 5);
    const digest = finished.op.response!.result!.stdoutDigest!;
    expect(Number(digest.sizeBytes)).toBe(8 * 1024 * 1024 + 5);
  });

  it('shows the output in the web UI: /logs streams it live, the operation page links it', async () => {
    const { first, done } = await start('echo web-first; sleep 1.5; echo web-second');
    const base = `http://${http.address}`;
    const page = await (await fetch(`${base}/operation?name=${encodeURIComponent(first.name)}`)).text();
    expect(page).toContain('Live output');
    expect(page).toContain(`data-logs="/logs?name=${encodeURIComponent(first.name)}&#38;stream=stdout"`);
    const res = await fetch(`${base}/logs?name=${encodeURIComponent(first.name)}&stream=stdout`);
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    const firstChunk = Buffer.from((await reader.read()).value!).toString();
    const finished = await Promise.race([done.then(() => true), Promise.resolve(false)]);
    expect(firstChunk).toBe('web-first\n');
    expect(finished).toBe(false); // it arrived while the action still ran
    let rest = '';
    for (let r = await reader.read(); !r.done; r = await reader.read()) rest += Buffer.from(r.value).toString();
    expect(rest).toBe('web-second\n');
    await done;
    const after = await (await fetch(`${base}/operation?name=${encodeURIComponent(first.name)}`)).text();
    expect(after).toContain('<h2>Output</h2>');
    expect(await (await fetch(`${base}/logs?name=${encodeURIComponent(first.name)}&stream=stdout`)).text()).toBe('web-first\nweb-second\n');
    expect((await fetch(`${base}/logs?name=operations/${randomUUID()}`)).status).toBe(404);
  });
});
