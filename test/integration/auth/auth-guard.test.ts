/**
 * The auth guard over real gRPC, method by method: a scheduler (which serves every client-facing
 * method on one port) with a token file, called without a token, with a wrong one, with one that
 * lacks the permission, with one for another instance, and with the right one.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Permission } from '../../../src/lib/auth/principal.js';
import { createTokenEntry, type TokenEntry } from '../../../src/lib/auth/token-file.js';
import { TokenFileAuthenticator } from '../../../src/lib/auth/token-file.js';
import {
  actionCacheService,
  byteStreamService,
  capabilitiesService,
  contentAddressableStorageService,
  executionService,
  operationsService,
} from '../../../src/lib/proto/services.js';
import { silentLogger } from '../../../src/lib/util/logger.js';
import { METHOD_RULES } from '../../../src/server/grpc/auth-guard.js';
import { type Scheduler, startScheduler } from '../../../src/server/scheduler.js';
import { createStores } from '../../unit/scheduler/scheduler-fixtures.js';

const EMPTY_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';
const SOME_DIGEST = { hash: 'a'.repeat(64), sizeBytes: 3 };

/** One request per guarded method, for `instance`. */
function requestFor(method: string, instance: string): unknown {
  const prefix = instance === '' ? '' : `${instance}/`;
  const operation = `${prefix}operations/${randomUUID()}`;
  switch (method) {
    case 'Capabilities.GetCapabilities':
      return { instanceName: instance };
    case 'ContentAddressableStorage.FindMissingBlobs':
      return { instanceName: instance, blobDigests: [SOME_DIGEST] };
    case 'ContentAddressableStorage.BatchReadBlobs':
      return { instanceName: instance, digests: [SOME_DIGEST] };
    case 'ContentAddressableStorage.GetTree':
      return { instanceName: instance, rootDigest: SOME_DIGEST };
    case 'ContentAddressableStorage.SplitBlob':
      return { instanceName: instance, blobDigest: SOME_DIGEST };
    case 'ContentAddressableStorage.SpliceBlob':
      return { instanceName: instance, blobDigest: SOME_DIGEST, chunkDigests: [SOME_DIGEST] };
    case 'ContentAddressableStorage.BatchUpdateBlobs':
      return { instanceName: instance, requests: [{ digest: { hash: EMPTY_SHA256, sizeBytes: 0 }, data: Buffer.alloc(0) }] };
    case 'ByteStream.Read':
      return { resourceName: `${prefix}blobs/${EMPTY_SHA256}/0` };
    case 'ByteStream.Write':
      return { resourceName: `${prefix}uploads/${randomUUID()}/blobs/${EMPTY_SHA256}/0`, finishWrite: true, data: Buffer.alloc(0) };
    case 'ByteStream.QueryWriteStatus':
      return { resourceName: `${prefix}uploads/${randomUUID()}/blobs/${EMPTY_SHA256}/0` };
    case 'ActionCache.GetActionResult':
      return { instanceName: instance, actionDigest: SOME_DIGEST };
    case 'ActionCache.UpdateActionResult':
      return { instanceName: instance, actionDigest: SOME_DIGEST, actionResult: { exitCode: 0 } };
    case 'Execution.Execute':
      return { instanceName: instance, actionDigest: SOME_DIGEST };
    case 'Execution.WaitExecution':
    case 'Operations.GetOperation':
    case 'Operations.WaitOperation':
    case 'Operations.CancelOperation':
    case 'Operations.DeleteOperation':
      return { name: operation };
    case 'Operations.ListOperations':
      return { name: `${prefix}operations` };
    default:
      throw new Error(`no request for ${method}`);
  }
}

const SERVICES: Record<string, Record<string, grpc.MethodDefinition<unknown, unknown>>> = {
  Capabilities: capabilitiesService,
  ContentAddressableStorage: contentAddressableStorageService,
  ByteStream: byteStreamService,
  ActionCache: actionCacheService,
  Execution: executionService,
  Operations: operationsService,
};

function definitionOf(method: string): grpc.MethodDefinition<unknown, unknown> {
  const [service, name] = method.split('.') as [string, string];
  const key = name[0]!.toLowerCase() + name.slice(1);
  const def = SERVICES[service]?.[key];
  if (!def) throw new Error(`no definition for ${method}`);
  return def;
}

let dir: string;
let scheduler: Scheduler;
let client: grpc.Client;
const tokens: Record<string, string> = {};
let authenticator: TokenFileAuthenticator;
let tokenFile: string;

const ALL_BUT_ADMIN: Permission[] = ['cas.read', 'cas.write', 'ac.read', 'ac.write', 'execute', 'operations.read'];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'bzutil-auth-guard-'));
  const entries: TokenEntry[] = [];
  const add = (name: string, instances: string[], permissions: Permission[]) => {
    const { token, entry } = createTokenEntry({ name, instances, permissions });
    tokens[name] = token;
    entries.push(entry);
  };
  add('full', ['main'], ALL_BUT_ADMIN);
  add('reader', ['main'], ['cas.read']);
  add('glob', ['team/*'], ALL_BUT_ADMIN);
  tokenFile = join(dir, 'tokens.json');
  await writeFile(tokenFile, JSON.stringify({ tokens: entries }));
  authenticator = await TokenFileAuthenticator.open({ file: tokenFile, logger: silentLogger });
  const stores = createStores();
  scheduler = await startScheduler({
    listenAddress: '127.0.0.1:0',
    contentAddressableStorage: stores.cas,
    actionCache: stores.actionCache,
    capabilities: { actionCacheUpdateEnabled: true },
    authenticator,
    logger: silentLogger,
  });
  client = new grpc.Client(scheduler.address, grpc.credentials.createInsecure());
});

afterAll(async () => {
  client?.close();
  await scheduler?.close();
  await rm(dir, { recursive: true, force: true });
});

/** Calls `method` with `token` (none when undefined) and resolves to the status code and message. */
function call(method: string, instance: string, token: string | undefined, fields: Record<string, unknown> = {}): Promise<{ code: grpc.status; details: string }> {
  const def = definitionOf(method);
  const metadata = new grpc.Metadata();
  if (token !== undefined) metadata.set('authorization', `Bearer ${token}`);
  const request = { ...(requestFor(method, instance) as object), ...fields };
  const options = { deadline: Date.now() + 10_000 };
  return new Promise((resolve) => {
    const done = (err: grpc.ServiceError | null) => resolve({ code: err ? err.code : grpc.status.OK, details: err?.details ?? '' });
    if (def.requestStream) {
      const stream = client.makeClientStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, metadata, options, (err) => done(err));
      stream.write(request);
      stream.end();
    } else if (def.responseStream) {
      const stream = client.makeServerStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, request, metadata, options);
      stream.on('data', () => {});
      stream.on('error', (err: grpc.ServiceError) => done(err));
      stream.on('end', () => done(null));
    } else {
      client.makeUnaryRequest(def.path, def.requestSerialize, def.responseDeserialize, request, metadata, options, (err) => done(err));
    }
  });
}

/** Every guarded method this scheduler serves (Remote Asset is served only when configured). */
const GUARDED = Object.entries(METHOD_RULES).filter(([method, r]) => r.permissions !== 'public' && method.split('.')[0]! in SERVICES);
const AUTH_CODES = [grpc.status.UNAUTHENTICATED, grpc.status.PERMISSION_DENIED];

describe('the auth guard on a client port', () => {
  it('answers GetCapabilities without a credential', async () => {
    expect((await call('Capabilities.GetCapabilities', 'main', undefined)).code).toBe(grpc.status.OK);
  });

  it.each(GUARDED)('%s: UNAUTHENTICATED without a token and with a wrong one, the token never echoed', async (method) => {
    expect((await call(method, 'main', undefined)).code).toBe(grpc.status.UNAUTHENTICATED);
    const wrong = await call(method, 'main', 'not-a-real-token-3f9a');
    expect(wrong.code).toBe(grpc.status.UNAUTHENTICATED);
    expect(wrong.details).not.toContain('not-a-real-token-3f9a');
  });

  it.each(GUARDED)('%s: PERMISSION_DENIED for another instance, runs for its own', async (method) => {
    const other = await call(method, 'other', tokens.full);
    expect(other.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(other.details).toContain('"other"');
    const own = await call(method, 'main', tokens.full);
    expect(AUTH_CODES).not.toContain(own.code);
  });

  it.each(GUARDED)('%s: a read-only CAS token is refused unless the method only reads the CAS', async (method, rule) => {
    const result = await call(method, 'main', tokens.reader);
    if ((rule.permissions as readonly string[]).includes('cas.read')) {
      expect(AUTH_CODES).not.toContain(result.code);
    } else {
      expect(result.code).toBe(grpc.status.PERMISSION_DENIED);
      expect(result.details).toContain((rule.permissions as readonly string[])[0]);
    }
  });

  it('checks the instance a ListOperations collection names, in either form', async () => {
    expect((await call('Operations.ListOperations', 'main', tokens.full, { name: 'other' })).code).toBe(grpc.status.PERMISSION_DENIED);
    expect((await call('Operations.ListOperations', 'main', tokens.full, { name: 'main' })).code).toBe(grpc.status.OK);
    expect((await call('Operations.ListOperations', 'main', tokens.full, { name: '' })).code).toBe(grpc.status.PERMISSION_DENIED);
  });

  it('reads live log streams with operations.read in their instance, not with cas.read alone', async () => {
    const logName = (instance: string) => ({ resourceName: `${instance}/operations/${randomUUID()}/logs/stdout` });
    // Authorized, then NOT_FOUND: no such operation.
    expect((await call('ByteStream.Read', 'main', tokens.full, logName('main'))).code).toBe(grpc.status.NOT_FOUND);
    const reader = await call('ByteStream.Read', 'main', tokens.reader, logName('main'));
    expect(reader.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(reader.details).toContain('operations.read');
    expect((await call('ByteStream.Read', 'main', tokens.full, logName('other'))).code).toBe(grpc.status.PERMISSION_DENIED);
    expect((await call('ByteStream.Read', 'main', undefined, logName('main'))).code).toBe(grpc.status.UNAUTHENTICATED);
  });

  it('matches instance globs', async () => {
    expect((await call('ContentAddressableStorage.FindMissingBlobs', 'team/a', tokens.glob)).code).toBe(grpc.status.OK);
    expect((await call('ContentAddressableStorage.FindMissingBlobs', 'team', tokens.glob)).code).toBe(grpc.status.PERMISSION_DENIED);
  });

  it('needs ac.write for UpdateActionResult and stores nothing when refused', async () => {
    const fresh = { actionDigest: { hash: 'b'.repeat(64), sizeBytes: 7 } };
    const denied = await call('ActionCache.UpdateActionResult', 'main', tokens.reader, fresh);
    expect(denied.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(denied.details).toContain('ac.write');
    expect((await call('ActionCache.GetActionResult', 'main', tokens.full, fresh)).code).toBe(grpc.status.NOT_FOUND);
    expect((await call('ActionCache.UpdateActionResult', 'main', tokens.full, fresh)).code).toBe(grpc.status.OK);
    expect((await call('ActionCache.GetActionResult', 'main', tokens.full, fresh)).code).toBe(grpc.status.OK);
  });

  it('a reloaded token file grants new tokens and revokes removed ones', async () => {
    const { token, entry } = createTokenEntry({ name: 'late', instances: ['main'], permissions: ['cas.read'] });
    expect((await call('ContentAddressableStorage.FindMissingBlobs', 'main', token)).code).toBe(grpc.status.UNAUTHENTICATED);
    await writeFile(tokenFile, JSON.stringify({ tokens: [entry] }));
    expect(await authenticator.reload()).toBe(true);
    expect((await call('ContentAddressableStorage.FindMissingBlobs', 'main', token)).code).toBe(grpc.status.OK);
    expect((await call('ContentAddressableStorage.FindMissingBlobs', 'main', tokens.full)).code).toBe(grpc.status.UNAUTHENTICATED);
  });
});
