/**
 * TLS and mTLS on a real apiserver port, with a throwaway CA made at test time: a client trusting the
 * CA is served, a plaintext client is not; with a client CA, only clients presenting a certificate
 * signed by it are; a reload picks up new files and a failed reload keeps the old ones.
 */
import { copyFileSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { capabilitiesService } from '../../src/lib/proto/services.js';
import { silentLogger } from '../../src/lib/util/logger.js';
import { type ApiServer, startApiServer } from '../../src/server/apiserver.js';
import { createServerTls } from '../../src/server/grpc/tls.js';
import { createThrowawayPki, type ThrowawayPki } from '../helpers/throwaway-ca.js';

let pki: ThrowawayPki;
const servers: ApiServer[] = [];

beforeAll(() => {
  pki = createThrowawayPki();
});

afterAll(async () => {
  for (const s of servers) await s.close();
  rmSync(pki.dir, { recursive: true, force: true });
});

async function start(clientCa: boolean): Promise<ApiServer> {
  const tls = createServerTls({ certFile: pki.serverCert, keyFile: pki.serverKey, clientCaFile: clientCa ? pki.caCert : undefined });
  const server = await startApiServer({ listenAddress: '127.0.0.1:0', inMemory: true, logger: silentLogger, tls });
  servers.push(server);
  return server;
}

/** GetCapabilities over `credentials`; resolves to the status code. */
function capabilities(port: number, credentials: grpc.ChannelCredentials): Promise<grpc.status> {
  const Ctor = grpc.makeGenericClientConstructor(capabilitiesService, 'Capabilities');
  const client = new Ctor(`localhost:${port}`, credentials) as unknown as grpc.Client & Record<string, (...a: unknown[]) => unknown>;
  return new Promise((resolve) => {
    client.getCapabilities!({}, new grpc.Metadata(), { deadline: Date.now() + 5_000 }, (err: grpc.ServiceError | null) => {
      client.close();
      resolve(err ? err.code : grpc.status.OK);
    });
  });
}

describe('TLS on a gRPC port', () => {
  it('serves a client that trusts the CA and refuses a plaintext one', async () => {
    const server = await start(false);
    expect(await capabilities(server.port, grpc.credentials.createSsl(readFileSync(pki.caCert)))).toBe(grpc.status.OK);
    expect(await capabilities(server.port, grpc.credentials.createInsecure())).toBe(grpc.status.UNAVAILABLE);
  });

  it('with a client CA, refuses clients without a certificate signed by it', async () => {
    const server = await start(true);
    const ca = readFileSync(pki.caCert);
    expect(await capabilities(server.port, grpc.credentials.createSsl(ca))).toBe(grpc.status.UNAVAILABLE);
    expect(await capabilities(server.port, grpc.credentials.createSsl(ca, readFileSync(pki.clientKey), readFileSync(pki.clientCert)))).toBe(grpc.status.OK);
  });

  it('reloads its files, and keeps serving the previous certificate when they cannot be read', async () => {
    const key = join(pki.dir, 'reloaded.key');
    copyFileSync(pki.serverKey, key);
    const tls = createServerTls({ certFile: pki.serverCert, keyFile: key });
    const server = await startApiServer({ listenAddress: '127.0.0.1:0', inMemory: true, logger: silentLogger, tls });
    servers.push(server);
    const trusting = () => grpc.credentials.createSsl(readFileSync(pki.caCert));
    expect(tls.reload(silentLogger)).toBe(true);
    expect(await capabilities(server.port, trusting())).toBe(grpc.status.OK);
    rmSync(key);
    expect(tls.reload(silentLogger)).toBe(false);
    expect(await capabilities(server.port, trusting())).toBe(grpc.status.OK);
    expect(() => createServerTls({ certFile: join(pki.dir, 'missing.pem'), keyFile: pki.serverKey })).toThrow();
  });
});
