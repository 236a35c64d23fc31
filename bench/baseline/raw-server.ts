/**
 * The raw grpc-js baseline server, run as its own process by the benchmark (`node raw-server.js`).
 * Listens on 127.0.0.1 (port 0), prints `raw listening on <address>`, stops on SIGTERM/SIGINT.
 */
import * as grpc from '@grpc/grpc-js';
import {
  SERVER_FLOW_CONTROL_WINDOW_BYTES,
  setConnectionReceiveWindow,
  setStreamReceiveWindow,
} from '../../src/server/grpc/server.js';
import { RAW_SERVER_OPTIONS, decodeDownloadRequest, rawService } from './raw-service.js';

const MAX_CHUNK_BYTES = 4 * 1024 * 1024;

const server = new grpc.Server(RAW_SERVER_OPTIONS);
// The same HTTP/2 receive windows as bzutil's servers (createGrpcServer/bindGrpcServer).
setStreamReceiveWindow(server, SERVER_FLOW_CONTROL_WINDOW_BYTES);
server.addService(rawService, {
  upload: (call: grpc.ServerReadableStream<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => {
    let total = 0;
    call.on('data', (chunk: Buffer) => (total += chunk.length));
    call.on('end', () => {
      const answer = Buffer.alloc(8);
      answer.writeBigUInt64BE(BigInt(total));
      callback(null, answer);
    });
    call.on('error', () => {});
  },
  download: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
    void (async () => {
      const { totalBytes, chunkBytes } = decodeDownloadRequest(call.request);
      if (chunkBytes <= 0 || chunkBytes > MAX_CHUNK_BYTES) {
        call.destroy(Object.assign(new Error(`chunkBytes ${chunkBytes} out of range`), { code: grpc.status.INVALID_ARGUMENT }));
        return;
      }
      const chunk = Buffer.alloc(chunkBytes, 0x5a);
      let cancelled = false;
      call.on('cancelled', () => (cancelled = true));
      for (let sent = 0; sent < totalBytes && !cancelled; ) {
        const n = Math.min(chunkBytes, totalBytes - sent);
        sent += n;
        if (!call.write(n === chunkBytes ? chunk : chunk.subarray(0, n))) {
          // Resume on drain, or stop if the client went away while we waited.
          await new Promise<void>((resolve) => {
            const done = () => {
              call.off('drain', done);
              call.off('cancelled', done);
              resolve();
            };
            call.on('drain', done);
            call.on('cancelled', done);
          });
        }
      }
      call.end();
    })();
  },
  noop: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => callback(null, Buffer.alloc(0)),
});

server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) {
    process.stderr.write(`Failed to listen on 127.0.0.1:0: ${err.message}\n`);
    process.exit(1);
  }
  setConnectionReceiveWindow(server, SERVER_FLOW_CONTROL_WINDOW_BYTES);
  process.stdout.write(`raw listening on 127.0.0.1:${port}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => server.tryShutdown(() => process.exit(0)));
}
