/**
 * Canonical Command and Action messages. Two tools describing the same action must produce the
 * same bytes, or the action cache never hits: environment variables are sorted by name, platform
 * properties by name then value, output paths sorted and deduplicated, and the messages encoded
 * with default values omitted (as Bazel's Java protobuf does).
 */
import { Digest } from '../digest/digest.js';
import type { DigestFunction } from '../digest/digest-function.js';
import { StatusError } from '../errors/status-error.js';
import { encodeWithDigest } from '../digest/encode-with-digest.js';
import { reapi } from '../proto/index.js';
import { compareUtf8 } from './tree-paths.js';

export interface EncodedMessage<T> {
  message: T;
  bytes: Uint8Array;
  digest: Digest;
}

export interface DigestOptions {
  instanceName?: string;
  digestFunction?: DigestFunction;
}

export interface CommandSpec {
  /** argv; the first element is the program. */
  arguments: readonly string[];
  environmentVariables?: Readonly<Record<string, string>>;
  outputFiles?: readonly string[];
  outputDirectories?: readonly string[];
  /** REAPI v2.1+ form of outputs; may be combined with the older fields for old servers. */
  outputPaths?: readonly string[];
  platformProperties?: readonly { name: string; value: string }[];
  workingDirectory?: string;
}

export interface ActionSpec {
  commandDigest: Digest;
  inputRootDigest: Digest;
  /** Whole seconds plus nanos are derived from milliseconds. Unset: the server's default. */
  timeoutMs?: number;
  doNotCache?: boolean;
  salt?: Uint8Array;
  platformProperties?: readonly { name: string; value: string }[];
}

/** Builds and canonically encodes a Command. INVALID_ARGUMENT for an empty argv or bad paths. */
export function buildCommand(spec: CommandSpec, opts: DigestOptions = {}): EncodedMessage<reapi.ICommand> {
  if (spec.arguments.length === 0 || !spec.arguments[0]) {
    throw StatusError.invalidArgument('Failed to build command: the argument list is empty', [{ field: 'arguments', description: 'at least the program is required' }]);
  }
  const env = Object.entries(spec.environmentVariables ?? {})
    .map(([name, value]) => ({ name, value }))
    .sort((a, b) => compareUtf8(a.name, b.name));
  for (const p of [...(spec.outputFiles ?? []), ...(spec.outputDirectories ?? []), ...(spec.outputPaths ?? [])]) validateOutputPath(p);
  if (spec.workingDirectory) validateOutputPath(spec.workingDirectory, 'working_directory');
  const message: reapi.ICommand = {
    arguments: [...spec.arguments],
    environmentVariables: env,
    outputFiles: sortedUnique(spec.outputFiles),
    outputDirectories: sortedUnique(spec.outputDirectories),
    outputPaths: sortedUnique(spec.outputPaths),
    workingDirectory: spec.workingDirectory ?? '',
  };
  const platform = canonicalPlatform(spec.platformProperties);
  if (platform) message.platform = platform;
  return { message, ...encodeWithDigest(reapi.Command, message, opts) };
}

/** Builds and canonically encodes an Action. */
export function buildAction(spec: ActionSpec, opts: DigestOptions = {}): EncodedMessage<reapi.IAction> {
  const message: reapi.IAction = {
    commandDigest: spec.commandDigest.toProto(),
    inputRootDigest: spec.inputRootDigest.toProto(),
    doNotCache: spec.doNotCache ?? false,
  };
  if (spec.timeoutMs !== undefined) {
    if (!Number.isFinite(spec.timeoutMs) || spec.timeoutMs <= 0) {
      throw StatusError.invalidArgument(`Failed to build action: timeout ${spec.timeoutMs} ms is not positive`, [{ field: 'timeout', description: 'must be positive' }]);
    }
    message.timeout = { seconds: Math.floor(spec.timeoutMs / 1000), nanos: Math.round((spec.timeoutMs % 1000) * 1e6) };
  }
  if (spec.salt && spec.salt.length > 0) message.salt = spec.salt;
  const platform = canonicalPlatform(spec.platformProperties);
  if (platform) message.platform = platform;
  return { message, ...encodeWithDigest(reapi.Action, message, opts) };
}

/** Platform properties sorted by name then value (REAPI requires it); undefined when empty. */
export function canonicalPlatform(properties: readonly { name: string; value: string }[] | undefined): reapi.IPlatform | undefined {
  if (!properties || properties.length === 0) return undefined;
  const sorted = [...properties].sort((a, b) => compareUtf8(a.name, b.name) || compareUtf8(a.value, b.value));
  return { properties: sorted.map((p) => ({ name: p.name, value: p.value })) };
}

function sortedUnique(values: readonly string[] | undefined): string[] {
  return [...new Set(values ?? [])].sort(compareUtf8);
}

/** Output paths and the working directory are relative, without `.`/`..` segments. */
function validateOutputPath(path: string, field = 'output_paths'): void {
  const segments = path.split('/');
  if (!path || path.startsWith('/') || segments.some((s) => s === '..' || s === '.' || s === '')) {
    throw StatusError.invalidArgument(`Failed to build command: path ${JSON.stringify(path)} must be relative, without "." or ".." segments`, [
      { field, description: `${JSON.stringify(path)} is not a normalised relative path` },
    ]);
  }
}
