/**
 * Runs actions on this machine: a fresh directory per task, inputs hard-linked from the FileCache,
 * the command started by a Runner, outputs collected and uploaded, everything timed into
 * ExecutedActionMetadata, and the directory removed afterwards whatever happened. This is the
 * worker's core; scheduling and reporting live in src/server/worker.ts.
 */
import { promises as fsp } from 'node:fs';
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import type { BlobStore } from '../blobstore/blob-store.js';
import { Digest } from '../digest/digest.js';
import { StatusError, wrapStatus } from '../errors/status-error.js';
import type { protobuf, reapi } from '../proto/index.js';
import { msToTimestamp } from '../proto/proto-time.js';
import { type Clock, systemClock } from '../util/clock.js';
import { type Logger, silentLogger } from '../util/logger.js';
import { abortStatus, attachError, type BuildExecutor, type ExecuteOptions, type ExecutionTask } from './build-executor.js';
import type { FileCache } from './file-cache.js';
import { createOutputParents, InputMaterializer } from './input-materializer.js';
import { OutputUploader } from './output-uploader.js';
import { resolveRelativePath, toAbsolute } from './paths.js';
import { removeTree } from './remove-tree.js';
import type { ExceededLimit, Runner, RunnerSandbox } from './runner.js';
import type { ActionLimits, RunAs } from './sandbox-command.js';

/** Below `<workDir>/actions`: where the runner keeps its persistent sandboxes. */
const SANDBOXES_DIRECTORY = '.sandboxes';

export interface LocalBuildExecutorOptions {
  contentAddressableStorage: BlobStore;
  runner: Runner;
  /** Root of the worker's scratch space; actions run in `<workDir>/actions/<task id>`. */
  workDir: string;
  /** Reported in ExecutedActionMetadata.worker. */
  workerName: string;
  fileCache: FileCache;
  clock?: Clock;
  logger?: Logger;
  /**
   * Action directories still being removed after their result was returned; a new task waits while
   * this many are. @default 4
   */
  maxPendingCleanups?: number;
  /** Run every action chrooted into its input root (else only those whose platform has `chroot=true`). */
  chroot?: boolean;
}

export class LocalBuildExecutor implements BuildExecutor {
  private readonly runner: Runner;
  private readonly actionsDirectory: string;
  private readonly workerName: string;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private readonly materializer: InputMaterializer;
  private readonly uploader: OutputUploader;
  /** Removals of finished tasks' directories, by directory. */
  private readonly cleanups = new Map<string, Promise<void>>();
  private readonly maxPendingCleanups: number;
  private readonly chroot: boolean;
  private readonly owner: RunAs | undefined;
  private readonly maxOutputBytes: number | undefined;

  constructor(opts: LocalBuildExecutorOptions) {
    this.chroot = opts.chroot ?? false;
    const isolation = opts.runner.isolation;
    this.owner = isolation?.actionUser;
    this.maxOutputBytes = isolation?.limits?.outputBytes;
    this.maxPendingCleanups = opts.maxPendingCleanups ?? 4;
    this.runner = opts.runner;
    this.actionsDirectory = path.join(opts.workDir, 'actions');
    this.workerName = opts.workerName;
    this.clock = opts.clock ?? systemClock;
    this.logger = opts.logger ?? silentLogger;
    this.materializer = new InputMaterializer({
      contentAddressableStorage: opts.contentAddressableStorage,
      fileCache: opts.fileCache,
      ...(this.owner ? { owner: this.owner } : {}),
      copyInputs: isolation?.copyInputs ?? true,
    });
    this.uploader = new OutputUploader({ contentAddressableStorage: opts.contentAddressableStorage });
  }

  /** The directory a task runs in (exists only while it runs). */
  actionDirectoryOf(taskId: string): string {
    return path.join(this.actionsDirectory, actionDirectoryName(taskId));
  }

  /** Resolves once every finished task's directory is removed (for shutdown and tests). */
  async settled(): Promise<void> {
    while (this.cleanups.size > 0) await Promise.all([...this.cleanups.values()]);
  }

  async execute(task: ExecutionTask, opts: ExecuteOptions = {}): Promise<reapi.IExecuteResponse> {
    const { signal } = opts;
    const actionDirectory = this.actionDirectoryOf(task.taskId);
    // An earlier attempt of the same task may still be removing this directory; and removals must
    // not pile up faster than the disk does them.
    await this.cleanups.get(actionDirectory);
    while (this.cleanups.size >= this.maxPendingCleanups) await Promise.race(this.cleanups.values());
    const metadata: reapi.IExecutedActionMetadata = {
      worker: this.workerName,
      ...(task.queuedTimestamp ? { queuedTimestamp: task.queuedTimestamp } : {}),
      workerStartTimestamp: this.now(),
    };
    const result: reapi.IActionResult = { executionMetadata: metadata };
    const response: reapi.IExecuteResponse = { result };
    let inputRoot = path.join(actionDirectory, 'root');
    let stdoutPath = path.join(actionDirectory, 'stdout');
    let stderrPath = path.join(actionDirectory, 'stderr');
    const { instanceName, digestFunction } = task.actionDigest;
    const platform = platformOf(task);
    const chroot = this.chroot || platform.get('chroot') === 'true';
    const network = platform.get('network') !== 'off';
    // A persistent sandbox of the runner when it has one (chroot mode always gets its own).
    let sandbox: RunnerSandbox | undefined;
    try {
      sandbox = chroot ? undefined : await this.runner.acquireSandbox?.({ directory: path.join(this.actionsDirectory, SANDBOXES_DIRECTORY), network }, { signal });
      if (sandbox) ({ inputRoot, stdoutPath, stderrPath } = sandbox);
      else await createActionDirectory(actionDirectory, inputRoot);

      opts.onStage?.('FETCHING_INPUTS');
      metadata.inputFetchStartTimestamp = this.now();
      try {
        const input = task.action.inputRootDigest;
        if (!input) throw StatusError.invalidArgument('Action has no input_root_digest', [{ field: 'action.input_root_digest', description: 'Required' }]);
        const inputRootDigest = Digest.create(instanceName, digestFunction, input.hash ?? '', Number(input.sizeBytes ?? 0), 'action.input_root_digest');
        await this.materializer.materialize(inputRootDigest, inputRoot, { signal, resolved: task.inputDirectories });
        await createOutputParents(inputRoot, task.command, this.owner, chroot);
      } catch (err) {
        throw wrapStatus(err, 'Failed to prepare input root');
      }
      metadata.inputFetchCompletedTimestamp = this.now();

      opts.onStage?.('RUNNING');
      const workingDirectory = resolveRelativePath('', task.command.workingDirectory ?? '', 'working_directory', { allowEmpty: true });
      metadata.executionStartTimestamp = this.now();
      // A fresh action directory has no output files yet, and a sandbox's are empty when acquired
      // (RunnerSandbox): live output never shows another action's.
      const following = opts.followOutput?.({ stdoutPath, stderrPath });
      const run = await (sandbox ?? this.runner).run(
        {
          argv: task.command.arguments ?? [],
          env: environmentOf(task.command),
          cwd: chroot ? `/${workingDirectory}` : toAbsolute(inputRoot, workingDirectory),
          inputRoot,
          stdoutPath,
          stderrPath,
          timeoutMs: task.timeoutMs,
          network,
          chroot,
        },
        { signal },
      ).finally(() => following?.stop());
      metadata.executionCompletedTimestamp = this.now();
      result.exitCode = run.exitCode;
      if (run.cancelled) {
        // Nobody will use the outputs of a cancelled task; skip the upload.
        attachError(response, abortStatus(signal!));
        return response;
      }
      if (run.limitExceeded) {
        const limits = this.runner.isolation?.limits;
        this.logger.warn('Action reached a limit', { taskId: task.taskId, limit: run.limitExceeded, limits, exitCode: run.exitCode });
        // A command that met a limit but still succeeded (a `make -j` whose fork was refused once) keeps its result.
        if (run.exitCode !== 0 || run.timedOut) {
          attachError(response, StatusError.resourceExhausted(`Failed to run command: it exceeded its ${describeLimit(run.limitExceeded, limits)}`));
        }
      }
      if (run.timedOut) {
        // Stdout, stderr and whatever outputs exist are still uploaded, for the user to debug with.
        attachError(response, StatusError.deadlineExceeded(`Failed to run command: it exceeded its timeout of ${task.timeoutMs} ms`));
      }

      opts.onStage?.('UPLOADING_OUTPUTS');
      metadata.outputUploadStartTimestamp = this.now();
      const outputs = await this.uploader.uploadOutputs(
        {
          inputRoot,
          command: task.command,
          instanceName,
          digestFunction,
          stdoutPath,
          stderrPath,
          allowRootOutput: chroot,
          ...(this.maxOutputBytes !== undefined ? { maxOutputBytes: this.maxOutputBytes } : {}),
        },
        { signal },
      );
      Object.assign(result, outputs);
      metadata.outputUploadCompletedTimestamp = this.now();
    } catch (err) {
      if (signal?.aborted) attachError(response, abortStatus(signal));
      attachError(response, err);
    } finally {
      // The result does not wait for the removal (tens of unlinks for a compile's inputs): it goes
      // to the scheduler at once and the directory is removed meanwhile.
      if (sandbox) this.release(task.taskId, sandbox);
      else this.cleanUp(task.taskId, actionDirectory, inputRoot, [stdoutPath, stderrPath]);
      metadata.workerCompletedTimestamp = this.now();
    }
    return response;
  }

  /** Hands a sandbox back (it is emptied meanwhile), counted with the pending removals. */
  private release(taskId: string, sandbox: RunnerSandbox): void {
    this.track(taskId, sandbox.inputRoot, sandbox.release());
  }

  private cleanUp(taskId: string, actionDirectory: string, inputRoot: string, files: readonly string[]): void {
    this.track(taskId, actionDirectory, removeActionDirectory(actionDirectory, inputRoot, files));
  }

  private track(taskId: string, actionDirectory: string, work: Promise<void>): void {
    const removal = work
      .catch((err: unknown) => {
        this.logger.warn('Failed to remove action directory', { taskId, directory: actionDirectory, error: err });
      })
      .finally(() => {
        if (this.cleanups.get(actionDirectory) === removal) this.cleanups.delete(actionDirectory);
      });
    this.cleanups.set(actionDirectory, removal);
  }

  private now(): protobuf.ITimestamp {
    return msToTimestamp(this.clock.now());
  }
}

/** The action's platform properties (Action.platform, else Command.platform), first value per name. */
function platformOf(task: ExecutionTask): Map<string, string> {
  const properties = task.action.platform?.properties?.length ? task.action.platform.properties : (task.command.platform?.properties ?? []);
  const map = new Map<string, string>();
  for (const p of properties) if (!map.has(p.name ?? '')) map.set(p.name ?? '', p.value ?? '');
  return map;
}

function describeLimit(limit: ExceededLimit, limits: ActionLimits | undefined): string {
  if (limit === 'memory') return `memory limit${limits ? ` of ${limits.memoryBytes} bytes` : ''}`;
  if (limit === 'processes') return `process limit${limits ? ` of ${limits.processes} processes` : ''}`;
  return `file size limit${limits ? ` of ${limits.fileSizeBytes} bytes` : ''}`;
}

/** Exactly the Command's variables: nothing from the worker's environment leaks into an action. */
function environmentOf(command: reapi.ICommand): Record<string, string> {
  const env: Record<string, string> = {};
  for (const v of command.environmentVariables ?? []) env[v.name ?? ''] = v.value ?? '';
  return env;
}

/**
 * Task ids come from the scheduler and may hold any character; ids that are not plain file names are
 * made safe, with a hash suffix so that two ids never share a directory.
 */
function actionDirectoryName(taskId: string): string {
  // Never a name starting with "." (so never ".", ".." or SANDBOXES_DIRECTORY).
  if (/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/.test(taskId)) return taskId;
  const safe = taskId.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 64);
  return `${safe}-${createHash('sha256').update(taskId).digest('hex').slice(0, 16)}`;
}

/**
 * Creates `<actionDirectory>/root` in one call. Task ids are unique, so the directory is almost always
 * new; only when mkdir reports that `actionDirectory` already existed (a leftover of an earlier
 * attempt with the same id) is it removed and created afresh. This saves the removal's file system
 * round trips on every task.
 */
async function createActionDirectory(actionDirectory: string, inputRoot: string): Promise<void> {
  // Resolves with the first directory it created; anything at or above actionDirectory means fresh.
  const created = await fsp.mkdir(inputRoot, { recursive: true });
  if (created !== undefined && created !== inputRoot) return;
  await removeTree(actionDirectory);
  await fsp.mkdir(inputRoot, { recursive: true });
}

/**
 * Removes an action directory. Most actions leave only what the executor created (stdout, stderr and
 * an input root they emptied or never filled), which a few concurrent unlink/rmdir calls remove;
 * anything else (inputs, outputs, read-only directories) falls back to removeTree.
 */
async function removeActionDirectory(actionDirectory: string, inputRoot: string, files: readonly string[]): Promise<void> {
  const attempts = await Promise.allSettled([...files.map((f) => fsp.unlink(f)), fsp.rmdir(inputRoot)]);
  const clean = attempts.every((a) => a.status === 'fulfilled' || (a.reason as NodeJS.ErrnoException).code === 'ENOENT');
  if (clean) {
    try {
      await fsp.rmdir(actionDirectory);
      return;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      // Something else appeared in the directory: remove it the thorough way.
    }
  }
  await removeTree(actionDirectory);
}
