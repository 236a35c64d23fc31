/**
 * Flags shared by the CAS-side commands. Names keep the seed's snake_case spelling
 * (`--cas_addr`) and accept kebab-case aliases (`--cas-addr`); defaults can come from the
 * environment so that scripts set the endpoint once.
 */
import { Flags } from '@oclif/core';
import { DIGEST_FUNCTIONS, type DigestFunction } from '../digest/digest-function.js';

export const DEFAULT_CAS_ADDRESS = 'localhost:12100';

export const casAddrFlag = Flags.string({
  summary: 'Address of the CAS (apiserver or scheduler): host:port or grpc://host:port.',
  default: DEFAULT_CAS_ADDRESS,
  aliases: ['cas-addr'],
  env: 'BZUTIL_CAS_ADDR',
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
  summary: 'Hash function of digests; must be one the server supports.',
  options: DIGEST_FUNCTIONS as DigestFunction[],
  default: 'sha256' as DigestFunction,
  aliases: ['digest-function'],
  helpGroup: 'REMOTE',
})();

/** The flags every command talking to the CAS takes. */
export const remoteFlags = {
  cas_addr: casAddrFlag,
  instance_name: instanceNameFlag,
  digest_function: digestFunctionFlag,
};

/** A comma-separated (or repeated) list flag, e.g. `--output_files a,b --output_files c`. */
export function listFlag(summary: string, aliases: string[]) {
  return Flags.string({ summary, multiple: true, delimiter: ',', aliases });
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
