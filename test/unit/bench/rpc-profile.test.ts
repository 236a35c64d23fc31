import { describe, expect, it } from 'vitest';
import { decodeRemoteGrpcLog, encodeRemoteGrpcLogEntry, shortMethodName } from '../../../bench/bazel/remote-grpc-log.js';
import { formatRpcProfile, parseServerRpcLines, profileRpcs } from '../../../bench/bazel/rpc-profile.js';

const GET = 'build.bazel.remote.execution.v2.ActionCache/GetActionResult';
const READ = 'google.bytestream.ByteStream/Read';

/** A log the way Bazel writes it: length-delimited entries, one after another. */
function log(entries: Parameters<typeof encodeRemoteGrpcLogEntry>[0][]): Uint8Array {
  return Buffer.concat(entries.map((e) => encodeRemoteGrpcLogEntry(e)));
}

describe('decodeRemoteGrpcLog', () => {
  it('reads every length-delimited entry with its method, times, status and action id', () => {
    const t0 = 1_765_000_000_123.5;
    const rpcs = decodeRemoteGrpcLog(
      log([
        { fullMethodName: GET, startMs: t0, endMs: t0 + 4.25, actionId: 'a1' },
        { fullMethodName: GET, startMs: t0 + 10, endMs: t0 + 11, code: 5, actionId: 'a2' },
        { fullMethodName: READ, startMs: t0 + 5, endMs: t0 + 7.5, actionId: 'a1' },
      ]),
    );
    expect(rpcs.map((r) => [r.method, r.code, r.actionId])).toEqual([
      ['ActionCache.GetActionResult', 0, 'a1'],
      ['ActionCache.GetActionResult', 5, 'a2'],
      ['ByteStream.Read', 0, 'a1'],
    ]);
    expect(rpcs[0]!.endMs - rpcs[0]!.startMs).toBeCloseTo(4.25, 3);
    expect(rpcs[2]!.startMs).toBeCloseTo(t0 + 5, 3);
  });

  it('reads an empty log as no calls', () => {
    expect(decodeRemoteGrpcLog(new Uint8Array())).toEqual([]);
  });

  it('names methods as the server does', () => {
    expect(shortMethodName('build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs')).toBe('ContentAddressableStorage.FindMissingBlobs');
  });
});

describe('profileRpcs', () => {
  it('puts both ends of each method side by side, per cached action', () => {
    const rpcs = decodeRemoteGrpcLog(
      log([
        // The build starts with GetCapabilities, which Bazel tags "capabilities"; then two hits and a
        // miss; the first hit downloads two outputs, the second one.
        { fullMethodName: 'build.bazel.remote.execution.v2.Capabilities/GetCapabilities', startMs: -10, endMs: -9, actionId: 'capabilities' },
        { fullMethodName: GET, startMs: 0, endMs: 4, actionId: 'a' },
        { fullMethodName: READ, startMs: 4, endMs: 10, actionId: 'a' },
        { fullMethodName: READ, startMs: 4, endMs: 8, actionId: 'a' },
        { fullMethodName: GET, startMs: 20, endMs: 26, actionId: 'b' },
        { fullMethodName: READ, startMs: 26, endMs: 30, actionId: 'b' },
        { fullMethodName: GET, startMs: 40, endMs: 42, code: 5, actionId: 'c' },
      ]),
    );
    const server = parseServerRpcLines([
      '{"level":"debug","msg":"RPC","method":"ActionCache.GetActionResult","code":"OK","durationMs":1}',
      '{"level":"debug","msg":"RPC","method":"ActionCache.GetActionResult","code":"OK","durationMs":1}',
      '{"level":"debug","msg":"RPC","method":"ActionCache.GetActionResult","code":"NOT_FOUND","durationMs":0.5}',
      '{"level":"info","msg":"something else"}',
      '{"level":"debug","msg":"RPC","method":"ByteStream.Read","code":"OK","durationMs":2}',
      '{"level":"debug","msg":"RPC","method":"ByteStream.Read","code":"OK","durationMs":2}',
      '{"level":"debug","msg":"RPC","method":"ByteStream.Read","code":"OK","durat', // cut by the pipe
    ]);
    const profile = profileRpcs(rpcs, server);
    expect(profile.cachedActions).toBe(2);
    const read = profile.methods.find((m) => m.method === 'ByteStream.Read')!;
    expect(read).toMatchObject({ calls: 3, callsPerCachedAction: 1.5, bazelP50Ms: 4, bazelTotalMs: 14, serverCalls: 2, serverP50Ms: 2, gapP50Ms: 2 });
    const get = profile.methods.find((m) => m.method === 'ActionCache.GetActionResult')!;
    expect(get).toMatchObject({ calls: 3, bazelP50Ms: 4, bazelP99Ms: 6, serverP50Ms: 1, gapP50Ms: 3 });
    // Action a: 0 to 10 ms, b: 20 to 30, c: 40 to 42.
    expect(profile.actions).toEqual({ actions: 3, spanP50Ms: 10, spanP99Ms: 10, callsP50: 2 });
    // Calls in flight over -10..42 ms: none in -9..0, 10..20, 30..40.
    expect(profile.timeline).toEqual({ windowMs: 52, noCallInFlightMs: 29, firstActionCallAfterMs: 10 });
    expect(formatRpcProfile(profile)).toContain('| ByteStream.Read | 3 (server 2) | 1.5 | 4 / 6 | 2 / 2 | 2 | 14 | 4 |');
  });
});
