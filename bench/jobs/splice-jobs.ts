/**
 * Driver job for SP (split/splice): one CasClient uploads a random (incompressible) blob, then the
 * same blob with 1 MiB in the middle replaced, through a counting TCP proxy on loopback. The second
 * upload goes as content-defined chunks (FindMissingBlobs over the chunk digests, the new chunks,
 * SpliceBlob); the proxy's count is every byte it put on the wire, framing included. The server
 * verifies the spliced blob's digest before it becomes visible; the job checks it is there.
 */
import { randomBytes } from 'node:crypto';
import { CasClient } from '../../src/lib/client/cas-client.js';
import { RemoteConnection } from '../../src/lib/client/connection.js';
import { MiB } from '../lib/stats.js';
import { startCountingProxy } from './compression-jobs.js';

export interface SpliceReuploadResult {
  /** Client->server bytes on the wire for the first (whole) upload and for the changed re-upload. */
  firstWireBytes: number;
  reuploadWireBytes: number;
  /** Chunk bytes the client sent for the re-upload (what FindMissingBlobs said the server lacked). */
  reuploadChunkBytes: number;
  reuploadSeconds: number;
}

export async function spliceReuploadJob(p: { address: string; sizeBytes: number; changeBytes: number }): Promise<SpliceReuploadResult> {
  const data = randomBytes(p.sizeBytes);
  const proxy = await startCountingProxy(p.address);
  const connection = new RemoteConnection(proxy.address);
  try {
    const cas = new CasClient(connection);
    const caps = await cas.getCapabilities({ deadlineMs: 30_000 });
    if (!caps.cacheCapabilities?.spliceBlobSupport) throw new Error('The server does not advertise splice_blob_support');
    let sent = proxy.clientBytes;
    const first = await cas.uploadBlobs([{ digest: cas.digestOf(data), data }]);
    if (first.splicedBlobs !== 1) throw new Error('The first upload was not spliced');
    const firstWireBytes = proxy.clientBytes - sent;

    // 1 MiB in the middle replaced by other random bytes.
    const at = Math.floor((p.sizeBytes - p.changeBytes) / 2);
    randomBytes(p.changeBytes).copy(data, at);
    const digest = cas.digestOf(data);
    sent = proxy.clientBytes;
    const start = performance.now();
    const second = await cas.uploadBlobs([{ digest, data }]);
    const reuploadSeconds = (performance.now() - start) / 1000;
    const reuploadWireBytes = proxy.clientBytes - sent;
    if (second.splicedBlobs !== 1) throw new Error('The re-upload was not spliced');
    if ((await cas.findMissingBlobs([digest])).length) throw new Error(`Splice of ${digest} finished but FindMissingBlobs still lists it`);
    return { firstWireBytes, reuploadWireBytes, reuploadChunkBytes: second.splicedBytesSent ?? 0, reuploadSeconds };
  } finally {
    connection.close();
    await proxy.close();
  }
}

export const SPLICE_CHANGE_BYTES = MiB;
