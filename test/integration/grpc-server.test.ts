/**
 * The HTTP/2 settings every bzutil server applies through grpc-js internals (see
 * src/server/grpc/server.ts): if a grpc-js upgrade moves them, these tests fail instead of uploads
 * silently slowing down to the default 64 KiB window.
 */
import * as http2 from 'node:http2';
import type * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import {
  SERVER_FLOW_CONTROL_WINDOW_BYTES,
  bindGrpcServer,
  createGrpcServer,
  shutdownGrpcServer,
} from '../../src/server/grpc/server.js';

const DEFAULT_WINDOW_BYTES = 65_535;

let server: grpc.Server | undefined;
let session: http2.ClientHttp2Session | undefined;

afterEach(async () => {
  session?.destroy();
  session = undefined;
  if (server) await shutdownGrpcServer(server, 100);
  server = undefined;
});

/** Connects a plain HTTP/2 client and resolves once the server's SETTINGS and a PING round trip arrived. */
async function connect(port: number): Promise<http2.ClientHttp2Session> {
  const s = http2.connect(`http://127.0.0.1:${port}`);
  session = s;
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.once('remoteSettings', () => resolve());
  });
  // Frames arrive in order: once the PING is answered, a WINDOW_UPDATE the server sent on accepting
  // the connection has been applied.
  await new Promise<void>((resolve, reject) => s.ping((err) => (err ? reject(err) : resolve())));
  return s;
}

describe('grpc server transport settings', () => {
  it('advertises the wide per-stream receive window in its SETTINGS', async () => {
    server = createGrpcServer();
    const port = await bindGrpcServer(server, '127.0.0.1:0');
    const s = await connect(port);
    expect(SERVER_FLOW_CONTROL_WINDOW_BYTES).toBeGreaterThan(DEFAULT_WINDOW_BYTES);
    expect(s.remoteSettings.initialWindowSize).toBe(SERVER_FLOW_CONTROL_WINDOW_BYTES);
  });

  it('opens the connection-level window of every accepted connection', async () => {
    server = createGrpcServer();
    const port = await bindGrpcServer(server, '127.0.0.1:0');
    for (let i = 0; i < 2; i++) {
      const s = await connect(port);
      // What the client may send before the server acknowledges anything.
      expect(s.state.remoteWindowSize).toBe(SERVER_FLOW_CONTROL_WINDOW_BYTES);
      s.destroy();
    }
  });
});
