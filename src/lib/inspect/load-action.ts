/**
 * Reading an Action and what it references back from the CAS, for the commands that explain or
 * replay an action (`diff_actions`, `reproduce`). A blob the CAS lacks is NOT_FOUND naming what it
 * was ("the Command of action ..."); a blob that does not decode is INVALID_ARGUMENT.
 */
import type { CasClient } from '../client/cas-client.js';
import { Digest } from '../digest/digest.js';
import { Code, StatusError, hasCode, wrapStatus } from '../errors/status-error.js';
import { reapi } from '../proto/index.js';

export interface LoadedAction {
  digest: Digest;
  action: reapi.IAction;
  command: reapi.ICommand;
  commandDigest: Digest;
  inputRootDigest: Digest;
}

/** Reads and decodes the message stored under `digest`; `what` names it in errors. */
export async function readMessage<T>(cas: CasClient, digest: Digest, decoder: { decode(b: Uint8Array): T }, what: string): Promise<T> {
  let bytes: Uint8Array;
  try {
    bytes = await cas.readBlob(digest);
  } catch (err) {
    if (hasCode(err, Code.NOT_FOUND)) throw new StatusError(Code.NOT_FOUND, `Failed to read ${what} ${digest}: the CAS does not have it`, [], { cause: err });
    throw wrapStatus(err, `Failed to read ${what} ${digest}`);
  }
  try {
    return decoder.decode(bytes);
  } catch (err) {
    throw StatusError.invalidArgument(`Failed to decode ${what} ${digest}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** A proto Digest field as a Digest of the same instance and function as `like`. */
export function digestField(d: reapi.IDigest | null | undefined, like: Digest, what: string): Digest {
  if (!d?.hash) throw StatusError.invalidArgument(`Failed to read ${what}: the digest is missing`);
  return Digest.create(like.instanceName, like.digestFunction, d.hash, Number(d.sizeBytes ?? 0));
}

/** The Action at `digest` and its Command. */
export async function loadAction(cas: CasClient, digest: Digest): Promise<LoadedAction> {
  const action = await readMessage(cas, digest, reapi.Action, 'the Action');
  const commandDigest = digestField(action.commandDigest, digest, `the command digest of action ${digest}`);
  const command = await readMessage(cas, commandDigest, reapi.Command, `the Command of action ${digest}`);
  const inputRootDigest = action.inputRootDigest?.hash ? digestField(action.inputRootDigest, digest, 'the input root') : Digest.empty({ instanceName: digest.instanceName, digestFunction: digest.digestFunction });
  return { digest, action, command, commandDigest, inputRootDigest };
}

/** Environment variables as a name → value map (the Command keeps them sorted by name). */
export function environmentOf(command: reapi.ICommand): Map<string, string> {
  return new Map((command.environmentVariables ?? []).map((v) => [v.name ?? '', v.value ?? '']));
}

/**
 * Platform properties as `name=value` strings, sorted: the Action's (REAPI 2.2) and the Command's
 * (older clients), both of which a scheduler may match on.
 */
export function platformOf(loaded: Pick<LoadedAction, 'action' | 'command'>): string[] {
  const props = [...(loaded.action.platform?.properties ?? []), ...(loaded.command.platform?.properties ?? [])];
  return [...new Set(props.map((p) => `${p.name ?? ''}=${p.value ?? ''}`))].sort();
}

/** The action's timeout in milliseconds; undefined when it has none. */
export function timeoutMsOf(action: reapi.IAction): number | undefined {
  const t = action.timeout;
  if (!t) return undefined;
  const ms = Number(t.seconds ?? 0) * 1000 + (t.nanos ?? 0) / 1e6;
  return ms > 0 ? ms : undefined;
}

/** Output paths declared by the Command, in either style (output_paths, or output_files + output_directories). */
export function outputPathsOf(command: reapi.ICommand): string[] {
  return command.outputPaths?.length ? [...command.outputPaths] : [...(command.outputFiles ?? []), ...(command.outputDirectories ?? [])];
}
