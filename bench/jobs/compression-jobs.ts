/**
 * Driver jobs for CZ (compressed transfers) and H1 (hashing throughput).
 *
 * CZ: one CasClient uploads, then downloads, a source-like (or incompressible) blob through a counting TCP proxy on
 * loopback, plain or zstd-compressed (`--compress`); the proxy's byte counts are the bytes on the
 * wire (gRPC framing and all), and the time is the wall time of each transfer. The download is
 * compared byte for byte with what was uploaded before any figure is reported.
 *
 * H1: SHA-256 (node:crypto) and BLAKE3 (hash-wasm) over the same in-memory bytes in 1 MiB updates.
 */
import * as net from 'node:net';
import { CasClient } from '../../src/lib/client/cas-client.js';
import { RemoteConnection } from '../../src/lib/client/connection.js';
import { type DigestFunction, newHasher } from '../../src/lib/digest/digest-function.js';
import { Digest } from '../../src/lib/digest/digest.js';
import { blobChunks, makePool, POOL_BYTES } from '../lib/data.js';
import { MiB } from '../lib/stats.js';

export interface CompressedTransferResult {
  uploadSeconds: number;
  downloadSeconds: number;
  /** Client->server bytes on the wire during the upload (FindMissingBlobs included). */
  uploadWireBytes: number;
  /** Server->client bytes on the wire during the download. */
  downloadWireBytes: number;
}

/**
 * Source-like bytes: lines of TypeScript-looking text whose identifiers and numbers vary with the
 * line and the seed. zstd makes about 1/5 to 1/10 of such text, depending on its repetitiveness.
 */
export function sourceLikeBlob(seed: string, sizeBytes: number): Buffer {
  const parts: string[] = [];
  let total = 0;
  let x = 0;
  for (const c of seed) x = (x * 31 + c.charCodeAt(0)) % 1_000_003;
  for (let i = 0; total < sizeBytes; i++) {
    x = (x * 48271) % 2147483647;
    const line =
      i % 9 === 0
        ? `export async function handle${x % 5000}(request: Request${x % 37}, ctx: Context): Promise<Response${x % 11}> {\n`
        : `  const value${x % 997} = await ctx.store.get(${JSON.stringify(`key-${seed}-${x % 4096}`)}, { timeoutMs: ${x % 3000} }); // ${i % 13}\n`;
    parts.push(line);
    total += line.length;
  }
  return Buffer.from(parts.join('')).subarray(0, sizeBytes);
}

/** What CZ moves: source-like text (compressible) or keystream bytes (incompressible). */
export type CompressedTransferData = 'source' | 'random';

/** Keystream for `seed`, its 64 MiB pool repeated: beyond zstd's window, so no match is found. */
function incompressibleBlob(seed: string, sizeBytes: number): Buffer {
  const pool = makePool(seed, Math.min(sizeBytes, POOL_BYTES));
  return Buffer.concat([...blobChunks(pool, sizeBytes, pool.length)]);
}

export async function compressedTransferJob(p: { address: string; seed: string; sizeBytes: number; compress: boolean; data?: CompressedTransferData }): Promise<CompressedTransferResult> {
  const data = p.data === 'random' ? incompressibleBlob(p.seed, p.sizeBytes) : sourceLikeBlob(p.seed, p.sizeBytes);
  const digest = Digest.ofBytes(data);
  const proxy = await startCountingProxy(p.address);
  const connection = new RemoteConnection(proxy.address);
  try {
    // Plain ByteStream both ways: CZ measures compression, not chunking (SP measures that).
    const cas = new CasClient(connection, { chunkedThresholdBytes: Infinity, ...(p.compress ? { compressor: 'zstd' as const } : {}) });
    await cas.getCapabilities({ deadlineMs: 30_000 });
    let sent = proxy.clientBytes;
    let start = performance.now();
    await cas.uploadBlobs([{ digest, data }]);
    const uploadSeconds = (performance.now() - start) / 1000;
    const uploadWireBytes = proxy.clientBytes - sent;
    if ((await cas.findMissingBlobs([digest])).length) throw new Error(`Upload of ${digest} finished but FindMissingBlobs still lists it`);

    sent = proxy.serverBytes;
    start = performance.now();
    const back = await cas.readBlob(digest);
    const downloadSeconds = (performance.now() - start) / 1000;
    const downloadWireBytes = proxy.serverBytes - sent;
    if (!Buffer.from(back).equals(data)) throw new Error(`Download of ${digest} differs from what was uploaded`);
    return { uploadSeconds, downloadSeconds, uploadWireBytes, downloadWireBytes };
  } finally {
    connection.close();
    await proxy.close();
  }
}

export interface HashRateResult {
  /** MiB/s per function. */
  mibPerSecond: Record<string, number>;
}

export async function hashRateJob(p: { sizeBytes: number; functions: DigestFunction[] }): Promise<HashRateResult> {
  const data = sourceLikeBlob('hash-rate', 64 * MiB);
  const mibPerSecond: Record<string, number> = {};
  for (const fn of p.functions) {
    const hasher = newHasher(fn);
    const start = performance.now();
    for (let done = 0; done < p.sizeBytes; done += MiB) {
      const at = done % data.length;
      hasher.update(data.subarray(at, at + MiB));
    }
    hasher.digest('hex');
    mibPerSecond[fn] = p.sizeBytes / MiB / ((performance.now() - start) / 1000);
  }
  return { mibPerSecond };
}

/** A loopback TCP proxy to `upstream` that counts the bytes it forwards each way. */
export async function startCountingProxy(upstream: string): Promise<{ address: string; readonly clientBytes: number; readonly serverBytes: number; close(): Promise<void> }> {
  const [host, portText] = upstream.split(':');
  const sockets = new Set<net.Socket>();
  let clientBytes = 0;
  let serverBytes = 0;
  const server = net.createServer((client) => {
    const target = net.connect(Number(portText), host!);
    sockets.add(client).add(target);
    client.on('data', (d: Buffer) => {
      clientBytes += d.length;
      if (!target.write(d)) client.pause();
    });
    target.on('drain', () => client.resume());
    target.on('data', (d: Buffer) => {
      serverBytes += d.length;
      if (!client.write(d)) target.pause();
    });
    client.on('drain', () => target.resume());
    const end = () => {
      client.destroy();
      target.destroy();
      sockets.delete(client);
      sockets.delete(target);
    };
    client.on('close', end).on('error', end);
    target.on('close', end).on('error', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    get clientBytes() {
      return clientBytes;
    },
    get serverBytes() {
      return serverBytes;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
