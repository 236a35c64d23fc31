/**
 * Everything the scheduler checks before it queues an action, so that a worker never receives a task
 * that cannot run: the Action and Command decode, the timeout is within bounds, and every blob the
 * action references (Command, every Directory of the input root, every file) is in the CAS. Absent
 * blobs are reported all at once as FAILED_PRECONDITION with one PreconditionFailure MISSING
 * violation each, which is what makes Bazel re-upload its inputs and retry.
 *
 * This is the only pass over an action's inputs: the Directory messages fetched here travel to the
 * worker in the task (Task.input_directories, when they fit `maxHandOverBytes`), so the worker
 * fetches neither them nor asks FindMissingBlobs again.
 */
import type { BlobStore, CallOptions } from '../blobstore/blob-store.js';
import { Digest } from '../digest/digest.js';
import { digestFunctionToProto } from '../digest/digest-function.js';
import { abortStatus, Code, hasCode, StatusError, wrapStatus } from '../errors/status-error.js';
import { reapi, type workerapi } from '../proto/index.js';
import { mapConcurrent } from '../util/concurrency.js';
import { PlatformProperties } from './platform-properties.js';
import { FIND_MISSING_BATCH_DIGESTS, MAX_MESSAGE_BYTES } from '../proto/message-limits.js';
import { durationToMs } from '../proto/proto-time.js';

export interface LoadActionOptions extends CallOptions {
  /** Timeout applied when the Action sets none. */
  defaultTimeoutMs: number;
  /** Actions asking for longer are rejected with INVALID_ARGUMENT. */
  maxTimeoutMs: number;
  /** Largest Action or Command accepted; both travel to the worker in one task message. @default 4 MiB */
  maxMessageBytes?: number;
  /** Largest Directory accepted (directories stay here, so this only bounds memory). @default 16 MiB */
  maxDirectoryBytes?: number;
  /** Directory fetches in flight at once. */
  concurrency?: number;
  /** Input trees whose Directory messages total at most this are kept for the worker. @default 256 KiB */
  maxHandOverBytes?: number;
}

export interface LoadedAction {
  action: reapi.Action;
  command: reapi.Command;
  /** The effective timeout: the Action's, or the default when it sets none. */
  timeoutMs: number;
  /** Action.platform, or the deprecated Command.platform when the Action has none. */
  platform: PlatformProperties;
  /** Every Directory of the input root, root first; absent when the tree exceeded `maxHandOverBytes`. */
  inputDirectories?: workerapi.IResolvedDirectory[];
  /**
   * Encoded size of what a queued execution keeps (Action, Command and handed-over Directories):
   * what counts against a queue's byte limit.
   */
  sizeBytes: number;
}

/** Largest Action or Command a scheduler accepts, so that a task (both, plus framing) fits a 4 MiB message. */
export const MAX_ACTION_MESSAGE_BYTES = 1536 * 1024;

const DEFAULT_MAX_DIRECTORY_BYTES = 16 * 1024 * 1024;
const DEFAULT_MAX_HAND_OVER_BYTES = 256 * 1024;

/** `loadAction` with a build queue's limits, for an action about to be queued; aborts throw. */
export async function loadActionToQueue(
  contentAddressableStorage: BlobStore,
  actionDigest: Digest,
  limits: { defaultTimeoutMs: number; maxTimeoutMs: number; maxHandOverBytes: number },
  signal?: AbortSignal,
): Promise<LoadedAction> {
  const loaded = await loadAction(contentAddressableStorage, actionDigest, {
    defaultTimeoutMs: limits.defaultTimeoutMs,
    maxTimeoutMs: limits.maxTimeoutMs,
    maxMessageBytes: MAX_ACTION_MESSAGE_BYTES,
    maxHandOverBytes: limits.maxHandOverBytes,
    signal,
  });
  if (signal?.aborted) throw abortStatus(signal);
  return loaded;
}

/** Fetches and validates an action and its inputs. See the module comment for what is checked. */
export async function loadAction(contentAddressableStorage: BlobStore, actionDigest: Digest, opts: LoadActionOptions): Promise<LoadedAction> {
  const maxBytes = opts.maxMessageBytes ?? MAX_MESSAGE_BYTES;
  const { instanceName } = actionDigest;
  const fnValue = digestFunctionToProto(actionDigest.digestFunction);
  const cas = contentAddressableStorage;

  const actionBytes = await fetchBlob(cas, actionDigest, 'Action', maxBytes, opts);
  if (!actionBytes) throw missing([actionDigest]);
  const action = decode(reapi.Action, actionBytes, 'Action', actionDigest);

  const commandDigest = Digest.fromProto(instanceName, fnValue, action.commandDigest, 'action.command_digest');
  const inputRootDigest = Digest.fromProto(instanceName, fnValue, action.inputRootDigest, 'action.input_root_digest');

  const requestedTimeoutMs = durationToMs(action.timeout);
  if (requestedTimeoutMs < 0) {
    throw StatusError.invalidArgument(`Failed to validate Action ${actionDigest}: timeout is negative`, [
      { field: 'action.timeout', description: 'Must not be negative' },
    ]);
  }
  if (requestedTimeoutMs > opts.maxTimeoutMs) {
    const description = `Timeout of ${requestedTimeoutMs} ms exceeds the maximum of ${opts.maxTimeoutMs} ms`;
    throw StatusError.invalidArgument(`Failed to validate Action ${actionDigest}: ${description}`, [{ field: 'action.timeout', description }]);
  }
  const timeoutMs = requestedTimeoutMs === 0 ? opts.defaultTimeoutMs : requestedTimeoutMs;

  const [commandBytes, tree] = await Promise.all([
    fetchBlob(cas, commandDigest, 'Command', maxBytes, opts),
    walkInputRoot(cas, inputRootDigest, opts.maxDirectoryBytes ?? DEFAULT_MAX_DIRECTORY_BYTES, opts),
  ]);
  const absentFiles: Digest[] = [];
  for (let i = 0; i < tree.files.length; i += FIND_MISSING_BATCH_DIGESTS) {
    const batch = tree.files.slice(i, i + FIND_MISSING_BATCH_DIGESTS);
    try {
      absentFiles.push(...(await cas.findMissing(batch, { signal: opts.signal })));
    } catch (err) {
      throw wrapStatus(err, `Failed to check the input files of Action ${actionDigest}`);
    }
  }
  const absent = [...(commandBytes ? [] : [commandDigest]), ...tree.missingDirectories, ...absentFiles];
  if (absent.length) throw missing(absent);

  const command = decode(reapi.Command, commandBytes!, 'Command', commandDigest);
  if (command.arguments.length === 0) {
    throw StatusError.invalidArgument(`Failed to validate Command ${commandDigest}: it has no arguments`, [
      { field: 'command.arguments', description: 'Must name the program to run' },
    ]);
  }
  const actionPlatform = PlatformProperties.fromProto(action.platform);
  const platform = actionPlatform.isEmpty ? PlatformProperties.fromProto(command.platform) : actionPlatform;
  const handOver = tree.directoryBytes <= (opts.maxHandOverBytes ?? DEFAULT_MAX_HAND_OVER_BYTES);
  const sizeBytes = actionBytes.length + commandBytes!.length + (handOver ? tree.directoryBytes : 0);
  return { action, command, timeoutMs, platform, sizeBytes, ...(handOver ? { inputDirectories: tree.directories } : {}) };
}

interface InputTree {
  /** Every distinct file digest in the tree. */
  files: Digest[];
  /** Directories that are absent (their subtrees could not be walked). */
  missingDirectories: Digest[];
  /** Every present Directory, breadth first from the root, each distinct one once. */
  directories: workerapi.IResolvedDirectory[];
  /** Their encoded size. */
  directoryBytes: number;
}

/** Fetches every Directory of the tree breadth-first, level by level, each distinct one once. */
async function walkInputRoot(cas: BlobStore, root: Digest, maxBytes: number, opts: LoadActionOptions): Promise<InputTree> {
  const files = new Map<string, Digest>();
  const missingDirectories: Digest[] = [];
  const directories: workerapi.IResolvedDirectory[] = [];
  let directoryBytes = 0;
  const seen = new Set<string>([root.key]);
  let level = [{ digest: root, path: '' }];
  while (level.length) {
    const fetched = await mapConcurrent(level, opts.concurrency ?? 16, (d) => fetchBlob(cas, d.digest, 'Directory', maxBytes, opts));
    const next: typeof level = [];
    level.forEach(({ digest, path }, i) => {
      const bytes = fetched[i];
      if (!bytes) {
        missingDirectories.push(digest);
        return;
      }
      const dir = decode(reapi.Directory, bytes, 'Directory', digest);
      directories.push({ digest: digest.toProto(), directory: dir });
      directoryBytes += bytes.length;
      const fnValue = digestFunctionToProto(digest.digestFunction);
      for (const f of dir.files) {
        const d = Digest.fromProto(digest.instanceName, fnValue, f.digest, `directory ${JSON.stringify(path + f.name)} digest`);
        if (!d.isEmpty) files.set(d.key, d);
      }
      for (const child of dir.directories) {
        const childPath = `${path}${child.name}/`;
        const d = Digest.fromProto(digest.instanceName, fnValue, child.digest, `directory ${JSON.stringify(childPath)} digest`);
        if (!seen.has(d.key)) {
          seen.add(d.key);
          next.push({ digest: d, path: childPath });
        }
      }
    });
    level = next;
  }
  return { files: [...files.values()], missingDirectories, directories, directoryBytes };
}

/** The blob's bytes, or undefined when it is absent. Other failures are wrapped with the step. */
async function fetchBlob(cas: BlobStore, digest: Digest, what: string, maxBytes: number, opts: CallOptions): Promise<Uint8Array | undefined> {
  try {
    return await cas.get(digest, { maxBytes, signal: opts.signal });
  } catch (err) {
    if (hasCode(err, Code.NOT_FOUND)) return undefined;
    throw wrapStatus(err, `Failed to fetch ${what} ${digest}`);
  }
}

function decode<T>(cls: { decode(b: Uint8Array): T }, bytes: Uint8Array, what: string, digest: Digest): T {
  try {
    return cls.decode(bytes);
  } catch (err) {
    const description = `Not a valid ${what} message: ${(err as Error).message}`;
    throw StatusError.invalidArgument(`Failed to decode ${what} ${digest}: ${description}`, [{ field: what.toLowerCase(), description }]);
  }
}

function missing(digests: readonly Digest[]): StatusError {
  const listed = digests.slice(0, 3).map((d) => d.toString()).join(', ');
  return StatusError.missingBlobs(
    digests,
    `Failed to execute action: ${digests.length} blob(s) missing from the CAS: ${listed}${digests.length > 3 ? ', ...' : ''}`,
  );
}
