/**
 * The base of every bzutil command. Commands stay thin: parse flags, call the library, print the
 * human form with `this.log` and return a typed result, which oclif prints under `--json`.
 *
 * Errors are handled here, once: one clear `Error: <message>` line on stderr (or a JSON object on
 * stdout under `--json`) and an exit code a script can branch on (see exit-codes.ts: 0 ok, 1 the
 * action failed, 2 usage or bad local input, 3 server error, 4 not found, 5 unreachable).
 */
import { Command } from '@oclif/core';
import { chalkStderr } from 'chalk';
import { CasClient } from '../client/cas-client.js';
import type { RemoteConnection } from '../client/connection.js';
import { Digest } from '../digest/digest.js';
import type { DigestFunction } from '../digest/digest-function.js';
import { StatusError, toStatusError } from '../errors/status-error.js';
import type { reapi } from '../proto/index.js';
import { connectChecked } from './connect.js';
import { authMetadataFrom, clientTlsFrom } from './flags.js';
import { EXIT_USAGE, exitCodeFor, isUsage, usageError } from './exit-codes.js';
import { applyColorEnvironment } from './terminal.js';

export { exitCodeFor, usageError };

applyColorEnvironment();

/** The JSON printed on failure under `--json`. */
export interface ErrorJson {
  status: number;
  name: string;
  code: string;
  message: string;
  details: { typeUrl: string; value: string }[];
}

export interface RemoteFlagValues {
  /** The CAS address (`--cas`, alias `--cas_addr`). */
  cas: string;
  instance_name: string;
  digest_function: DigestFunction;
  /** `--rpc_timeout` in ms (Infinity: none). */
  rpc_timeout: number;
  /** `--compress`: zstd transfers where the server offers them. */
  compress?: boolean;
  /** `--split_splice` (default on) and `--chunk_cache DIR`: chunked transfers of large blobs. */
  split_splice?: boolean;
  chunk_cache?: string;
  tls_ca?: string;
  tls_cert?: string;
  tls_key?: string;
  /** `--token` or BZUTIL_TOKEN. */
  token?: string;
}

export abstract class BzutilCommand<T> extends Command {
  static override enableJsonFlag = true;

  private readonly connections: RemoteConnection[] = [];

  abstract override run(): Promise<T>;

  /**
   * Opens the CAS at `--cas` and checks it with a first call under the connect deadline, so that an
   * unreachable server is reported as such (exit 5) instead of hanging or looking like success.
   */
  protected async connectCas(flags: RemoteFlagValues): Promise<CasClient> {
    const opts = {
      what: 'the CAS',
      flag: '--cas',
      instanceName: flags.instance_name,
      digestFunction: flags.digest_function,
      rpcTimeoutMs: flags.rpc_timeout,
      tls: clientTlsFrom(flags),
      metadata: authMetadataFrom(flags),
    };
    const { connection } = await this.connect(flags.cas, opts);
    return new CasClient(connection, {
      instanceName: flags.instance_name,
      digestFunction: flags.digest_function,
      ...(flags.compress ? { compressor: 'zstd' as const } : {}),
      ...(flags.split_splice === false ? { chunkedThresholdBytes: Infinity } : {}),
      ...(flags.chunk_cache ? { chunkCacheDir: flags.chunk_cache } : {}),
    });
  }

  /** Opens and checks a connection that this command closes when it finishes. */
  protected connect(address: string, opts: Parameters<typeof connectChecked>[1]): Promise<{ connection: RemoteConnection; capabilities?: reapi.IServerCapabilities }> {
    return connectChecked(address, opts, (c) => this.connections.push(c));
  }

  /** Parses a digest given on the command line; a malformed one is a usage error. */
  protected parseDigest(text: string, what: string, flags: Pick<RemoteFlagValues, 'instance_name' | 'digest_function'>): Digest {
    try {
      return Digest.parse(text, { instanceName: flags.instance_name, digestFunction: flags.digest_function });
    } catch (err) {
      throw usageError(`Invalid ${what}: ${toStatusError(err).message}`, err);
    }
  }

  protected override async catch(err: Error & { oclif?: { exit?: number } }): Promise<void> {
    const code = exitCodeFor(err);
    process.exitCode = code;
    if (this.jsonEnabled()) {
      this.logJson(this.toErrorJson(err));
      return;
    }
    const message = cleanMessage(err instanceof Error ? err.message : String(err));
    process.stderr.write(`${chalkStderr.red('Error:')} ${message}\n`);
    if (code === EXIT_USAGE && this.id) process.stderr.write(`See: ${this.config.bin} ${this.id.replaceAll(':', ' ')} --help\n`);
  }

  protected override toErrorJson(err: unknown): ErrorJson {
    const isStatus = err instanceof StatusError;
    const s = toStatusError(err);
    return {
      status: exitCodeFor(err),
      name: isStatus ? 'StatusError' : err instanceof Error ? err.name : 'Error',
      code: isUsage(err) && !isStatus ? 'INVALID_ARGUMENT' : s.codeName,
      message: cleanMessage(err instanceof Error ? err.message : String(err)),
      details: s.details.map((d) => ({ typeUrl: d.typeUrl, value: Buffer.from(d.value).toString('base64') })),
    };
  }

  protected override async finally(err: Error | undefined): Promise<void> {
    for (const c of this.connections.splice(0)) c.close();
    await super.finally(err);
  }
}

/**
 * The error text once, without oclif's decorations: flag-parse errors ("Parsing --x \n\t<why>") become
 * "Invalid --x: <why>", "The following error occurred:" headers and oclif's own "See more help with
 * --help" go (the See: line follows once, from `catch`).
 */
export function cleanMessage(message: string): string {
  let text = message.replace(/\n?See more help with --help\s*$/, '');
  const parsing = /^Parsing (--\S+)\s*\n\t([\s\S]*)$/.exec(text);
  if (parsing) text = `Invalid ${parsing[1]}: ${parsing[2]}`;
  const listed = /^The following errors? occurred:\n([\s\S]*)$/.exec(text);
  if (listed) text = listed[1]!.split('\n').map((l) => l.trim()).filter(Boolean).join('; ');
  return dedupeSteps(text).replace(/\s+$/, '');
}

/** Digests, quoted names and operation names: what a step of an error message is about. */
function subjectsOf(step: string): string[] {
  return step.match(/[0-9a-f]{32,}\/\d+|"[^"]*"|operations\/[\w-]+/g) ?? [];
}

/**
 * Error messages grow a prefix at each layer ("Failed to X: Failed to Y: <server text>"). When the
 * client and the server both say "Failed to ..." about the same subject, the inner step repeats the
 * outer one and is dropped; "Blob <d> not found" about a digest already named becomes "not found".
 */
export function dedupeSteps(message: string): string {
  const out: string[] = [];
  for (const step of message.split(': ')) {
    const prev = out[out.length - 1];
    if (prev !== undefined) {
      const subjects = subjectsOf(step);
      const prevSubjects = subjectsOf(prev);
      if (/^Failed to /.test(step) && /^Failed to /.test(prev) && subjects.length > 0 && subjects.every((x) => prevSubjects.includes(x))) continue;
      const blob = /^Blob (\S+) not found$/.exec(step);
      if (blob && out.some((s) => s.includes(blob[1]!))) {
        out.push('not found');
        continue;
      }
    }
    out.push(step);
  }
  return out.join(': ');
}
