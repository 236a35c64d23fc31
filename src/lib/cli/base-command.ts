/**
 * The base of every bzutil command. Commands stay thin: parse flags, call the library, print the
 * human form with `this.log` and return a typed result, which oclif prints under `--json`.
 *
 * Errors are handled here, once: one clear `Error: <message>` line on stderr (or a JSON object on
 * stdout under `--json`) and an exit code a script can branch on:
 *
 * | exit | meaning |
 * | --- | --- |
 * | 0 | success |
 * | 1 | any other failure (INTERNAL, DATA_LOSS, RESOURCE_EXHAUSTED, ...) |
 * | 2 | usage: unknown or malformed flags and arguments, a malformed digest or address |
 * | 3 | the request was refused: INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION |
 * | 4 | the server could not be reached or did not answer in time: UNAVAILABLE, DEADLINE_EXCEEDED |
 */
import { Command } from '@oclif/core';
import { chalkStderr } from 'chalk';
import { CasClient } from '../client/cas-client.js';
import { RemoteConnection } from '../client/connection.js';
import { Digest } from '../digest/digest.js';
import type { DigestFunction } from '../digest/digest-function.js';
import { Code, StatusError, hasCode, toStatusError, wrapStatus } from '../errors/status-error.js';

/** How long the first call may take before the server counts as unreachable. */
export const FIRST_CALL_DEADLINE_MS = 10_000;

export const EXIT_USAGE = 2;
export const EXIT_REFUSED = 3;
export const EXIT_UNREACHABLE = 4;

/** The JSON printed on failure under `--json`. */
export interface ErrorJson {
  status: number;
  name: string;
  code: string;
  message: string;
  details: { typeUrl: string; value: string }[];
}

/** Marks an error as a usage error (exit code 2): bad input detected before any remote call. */
export function usageError(message: string, cause?: unknown): StatusError {
  const err = new StatusError(Code.INVALID_ARGUMENT, message, [], { cause });
  Object.defineProperty(err, 'usage', { value: true });
  return err;
}

function isUsage(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  if ((err as { usage?: unknown }).usage === true) return true;
  // oclif's parse errors (unknown flag, missing argument, bad option) carry an exit code of 2.
  const oclif = (err as { oclif?: { exit?: unknown } }).oclif;
  return oclif !== undefined && oclif.exit === 2;
}

/** The exit code for an error, following the table above. */
export function exitCodeFor(err: unknown): number {
  if (isUsage(err)) return EXIT_USAGE;
  const oclif = (err as { oclif?: { exit?: unknown } } | undefined)?.oclif;
  if (!(err instanceof StatusError) && typeof oclif?.exit === 'number') return oclif.exit;
  const s = toStatusError(err);
  switch (s.code) {
    case Code.INVALID_ARGUMENT:
    case Code.NOT_FOUND:
    case Code.FAILED_PRECONDITION:
      return EXIT_REFUSED;
    case Code.UNAVAILABLE:
    case Code.DEADLINE_EXCEEDED:
      return EXIT_UNREACHABLE;
    default:
      return 1;
  }
}

export interface RemoteFlagValues {
  cas_addr: string;
  instance_name: string;
  digest_function: DigestFunction;
}

export abstract class BzutilCommand<T> extends Command {
  static override enableJsonFlag = true;

  private readonly connections: RemoteConnection[] = [];

  abstract override run(): Promise<T>;

  /**
   * Opens the CAS at `flags.cas_addr` and makes the first call (GetCapabilities) under a deadline,
   * so that an unreachable server is reported as such instead of hanging or looking like success.
   */
  protected async connectCas(flags: RemoteFlagValues): Promise<CasClient> {
    let connection: RemoteConnection;
    try {
      connection = new RemoteConnection(flags.cas_addr);
    } catch (err) {
      throw usageError(`Invalid --cas_addr: ${toStatusError(err).message}`, err);
    }
    this.connections.push(connection);
    const cas = new CasClient(connection, { instanceName: flags.instance_name, digestFunction: flags.digest_function });
    try {
      await cas.getCapabilities({ deadlineMs: FIRST_CALL_DEADLINE_MS });
    } catch (err) {
      // A server without the Capabilities service is still a server.
      if (hasCode(err, Code.UNIMPLEMENTED)) return cas;
      throw wrapStatus(err, `Failed to reach the CAS at ${flags.cas_addr}`);
    }
    return cas;
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
    const message = err instanceof Error ? err.message : String(err);
    process.stderr.write(`${chalkStderr.red('Error:')} ${message.replace(/\s+$/, '')}\n`);
    if ((err as { usage?: boolean }).usage === true && this.id) process.stderr.write(`See: ${this.config.bin} ${this.id} --help\n`);
  }

  protected override toErrorJson(err: unknown): ErrorJson {
    const isStatus = err instanceof StatusError;
    const s = toStatusError(err);
    return {
      status: exitCodeFor(err),
      name: isStatus ? 'StatusError' : err instanceof Error ? err.name : 'Error',
      code: isUsage(err) && !isStatus ? 'INVALID_ARGUMENT' : s.codeName,
      message: err instanceof Error ? err.message : String(err),
      details: s.details.map((d) => ({ typeUrl: d.typeUrl, value: Buffer.from(d.value).toString('base64') })),
    };
  }

  protected override async finally(err: Error | undefined): Promise<void> {
    for (const c of this.connections.splice(0)) c.close();
    await super.finally(err);
  }
}
