/**
 * Flags shared by the client commands. One convention for addresses: `--cas` (the CAS: apiserver
 * or scheduler) and `--scheduler` (Execution and Operations), with the seed's `--cas_addr` and
 * `--grpc_addr` kept as aliases so that the seed's walkthrough runs as written. Other names keep the
 * seed's snake_case spelling and accept kebab-case aliases; defaults can come from the environment
 * so that scripts set the endpoints once.
 */
import { Flags } from '@oclif/core';
import { parseDurationMs } from '../util/units.js';
import { DIGEST_FUNCTIONS, type DigestFunction } from '../digest/digest-function.js';

export const DEFAULT_CAS_ADDRESS = 'localhost:12100';
/** Where `bzutil serve all` (and `serve scheduler`) listen by default. */
export const DEFAULT_SCHEDULER_ADDRESS = 'localhost:9099';
/** `--rpc_timeout`'s default, like Bazel's `--remote_timeout`. */
export const DEFAULT_RPC_TIMEOUT = '60s';

export const casFlag = Flags.string({
  summary: 'Address of the CAS (apiserver or scheduler): host:port, grpc://host:port or grpcs://host:port. Alias: --cas_addr (the seed\'s name).',
  default: DEFAULT_CAS_ADDRESS,
  aliases: ['cas_addr', 'cas-addr'],
  env: 'BZUTIL_CAS_ADDR',
  helpGroup: 'REMOTE',
});

export const schedulerFlag = Flags.string({
  summary: 'Address of the scheduler (Execution and Operations): host:port or grpc://host:port. Alias: --grpc_addr (the seed\'s name).',
  default: DEFAULT_SCHEDULER_ADDRESS,
  aliases: ['grpc_addr', 'grpc-addr', 'scheduler_addr', 'scheduler-addr'],
  env: 'BZUTIL_SCHEDULER_ADDR',
  helpGroup: 'REMOTE',
});

export const instanceNameFlag = Flags.string({
  summary: 'REAPI instance name, e.g. "main"; empty for the default instance.',
  default: '',
  aliases: ['instance-name'],
  env: 'BZUTIL_INSTANCE_NAME',
  helpGroup: 'REMOTE',
});

export const digestFunctionFlag = Flags.option({
  summary: 'Hash function of digests. Checked against what the server advertises (bzutil servers: all six by default) before anything is sent.',
  options: DIGEST_FUNCTIONS as DigestFunction[],
  default: 'sha256' as DigestFunction,
  aliases: ['digest-function'],
  helpGroup: 'REMOTE',
})();

/**
 * `--rpc_timeout`: the deadline of each remote call (Execute and WaitExecution streams excepted:
 * they last as long as the action). A duration (`30s`, `2m`, `500ms`); a bare number is seconds;
 * 0 means no deadline. The first call (the connect check) gets at most 10 s of it.
 */
export const rpcTimeoutFlag = Flags.custom<number>({
  summary: 'Deadline of each remote call: 30s, 2m, 500ms; a bare number is seconds; 0 = none.',
  default: async () => parseRpcTimeout(DEFAULT_RPC_TIMEOUT),
  defaultHelp: async () => DEFAULT_RPC_TIMEOUT,
  aliases: ['rpc-timeout'],
  env: 'BZUTIL_RPC_TIMEOUT',
  helpGroup: 'REMOTE',
  parse: async (text) => parseRpcTimeout(text),
})();

/** Milliseconds of an `--rpc_timeout` value; Infinity for 0 (no deadline). Throws on bad input. */
export function parseRpcTimeout(text: string): number {
  const ms = parseDurationMs(text, { allowZero: true });
  return ms === 0 ? Infinity : ms;
}

/** Client-side TLS and the bearer token, on every command that talks to a server. */
export const clientCredentialFlags = {
  token: Flags.string({
    summary: 'Bearer token sent as "authorization: Bearer <token>" to servers with authentication on.',
    description: 'Prefer the BZUTIL_TOKEN environment variable: a flag is visible to other users in the process list.',
    env: 'BZUTIL_TOKEN',
    helpValue: 'TOKEN',
  }),
  tls_ca: Flags.string({ summary: 'Trust this CA (PEM) for the server certificate instead of the system roots; turns TLS on.', helpValue: 'FILE', aliases: ['tls-ca'] }),
  tls_cert: Flags.string({ summary: 'Client certificate (PEM) for servers that require one (mTLS); needs --tls_key.', helpValue: 'FILE', aliases: ['tls-cert'] }),
  tls_key: Flags.string({ summary: 'Private key (PEM) of --tls_cert.', helpValue: 'FILE', aliases: ['tls-key'] }),
};

/** The TLS flag values as connection options. */
export function clientTlsFrom(flags: { tls_ca?: string; tls_cert?: string; tls_key?: string }): { caFile?: string; certFile?: string; keyFile?: string } {
  return { caFile: flags.tls_ca, certFile: flags.tls_cert, keyFile: flags.tls_key };
}

/**
 * `--compress`: move blobs zstd-compressed (ByteStream `compressed-blobs/zstd/...` and the batch
 * calls' compressor fields) where the server advertises zstd; plain where it does not.
 */
export const compressFlag = Flags.boolean({
  summary: 'Send and receive blobs zstd-compressed where the server supports it (digests stay those of the plain bytes).',
  allowNo: true,
  default: false,
  env: 'BZUTIL_COMPRESS',
  helpGroup: 'REMOTE',
});

/** `--split_splice`: large blobs move as content-defined chunks where the server splits/splices them. */
export const splitSpliceFlag = Flags.boolean({
  summary: 'Upload large blobs (8 MiB and up) as content-defined chunks, sending only the chunks the server lacks, where it supports SplitBlob/SpliceBlob.',
  allowNo: true,
  default: true,
  env: 'BZUTIL_SPLIT_SPLICE',
  aliases: ['split-splice'],
  helpGroup: 'REMOTE',
});

/** `--chunk_cache DIR`: chunks kept between downloads, so that a changed large blob fetches only its new chunks. */
export const chunkCacheFlag = Flags.string({
  summary: 'Directory of chunks kept between downloads: large blobs are fetched with SplitBlob, only the chunks missing here travel.',
  env: 'BZUTIL_CHUNK_CACHE',
  helpGroup: 'REMOTE',
  helpValue: 'DIR',
  aliases: ['chunk-cache'],
});

/** The metadata `--token` (or BZUTIL_TOKEN) adds to every call; none without a token. */
export function authMetadataFrom(flags: { token?: string }): Record<string, string> | undefined {
  return flags.token === undefined || flags.token === '' ? undefined : { authorization: `Bearer ${flags.token}` };
}

/** The flags every command talking to the CAS takes. */
export const remoteFlags = {
  ...clientCredentialFlags,
  cas: casFlag,
  instance_name: instanceNameFlag,
  digest_function: digestFunctionFlag,
  rpc_timeout: rpcTimeoutFlag,
  compress: compressFlag,
  split_splice: splitSpliceFlag,
  chunk_cache: chunkCacheFlag,
};

/** A comma-separated (or repeated) list flag, e.g. `--output_files a,b --output_files c`. */
export function listFlag(summary: string, aliases: string[]) {
  return Flags.string({ summary, multiple: true, delimiter: ',', aliases });
}

/**
 * A repeatable `KEY=VALUE` flag, one pair per occurrence: `--env A=1 --env B=x,y` keeps the comma
 * in B's value (environment values and platform properties may contain commas).
 */
export function keyValueFlag(summary: string, aliases: string[]) {
  return Flags.string({ summary: `${summary} Repeat the flag for each; a value may contain commas.`, multiple: true, aliases, helpValue: 'KEY=VALUE' });
}

/** Parses `name=value` entries; a malformed one throws a KeyValueError (a usage error). */
export function parseKeyValues(entries: readonly string[] | undefined, flag: string): { name: string; value: string }[] {
  return (entries ?? []).map((entry) => {
    const eq = entry.indexOf('=');
    if (eq <= 0) throw new KeyValueError(`Failed to parse --${flag} entry ${JSON.stringify(entry)}: expected name=value`);
    return { name: entry.slice(0, eq), value: entry.slice(eq + 1) };
  });
}

/** A malformed `k=v` entry: a usage error (exit code 2). */
export class KeyValueError extends Error {
  override readonly name = 'KeyValueError';
  readonly usage = true;
}
