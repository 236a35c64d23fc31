import { Flags } from '@oclif/core';
import { join } from 'node:path';
import { GrpcBlobStore } from '../../lib/blobstore/grpc-blob-store.js';
import { BzutilCommand, usageError } from '../../lib/cli/base-command.js';
import {
  defaultCacheDir,
  logLevelFlag,
  parseRunAs,
  parseSizeBytes,
  resolvePlatform,
  resolveSlots,
  runnerFlags,
  waitForShutdownSignal,
  workerFlags,
} from '../../lib/cli/serve-flags.js';
import { createLogger, type LogLevel } from '../../lib/util/logger.js';
import { startWorker } from '../../server/worker.js';

export default class ServeWorker extends BzutilCommand<void> {
  static override enableJsonFlag = false;
  static override summary = 'Run a worker that dials the scheduler and executes actions.';
  static override description = `The worker connects to the scheduler (so it may run on another host or behind NAT),
fetches each action's inputs from the CAS into a hard-linked local file cache, runs the command with
exactly the environment the action specifies, uploads the outputs and reports the result. It
reconnects with backoff when the scheduler goes away. Give each worker its own --work_dir.
Actions run in a bubblewrap sandbox as an unprivileged uid when bwrap is installed (see the README's
"Security model" for what each --runner protects).`;
  static override examples = [
    '<%= config.bin %> <%= command.id %> --scheduler=localhost:9099 --cas=localhost:12100 --slots=4',
    '<%= config.bin %> <%= command.id %> --scheduler=sched:9099 --cas=cas:12100 --platform=OSFamily=Linux,container-image=none --work_dir=/tmp/w1',
  ];
  static override flags = {
    scheduler: Flags.string({ summary: 'Address of the scheduler.', default: 'localhost:9099', aliases: ['scheduler_addr', 'scheduler-addr'] }),
    cas: Flags.string({ summary: 'Address of the CAS (the apiserver, or the scheduler which forwards to it).', default: 'localhost:12100', aliases: ['cas_addr', 'cas-addr'] }),
    ...workerFlags,
    ...runnerFlags,
    log_level: logLevelFlag,
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(ServeWorker);
    const logger = createLogger({ level: flags.log_level as LogLevel, component: 'worker' });
    let platform: { name: string; value: string }[];
    let runAs: { uid: number; gid: number } | undefined;
    let limits: { memoryBytes: number; processes: number; fileSizeBytes: number; outputBytes: number };
    try {
      platform = resolvePlatform(flags.platform);
      runAs = flags.run_as === undefined ? undefined : parseRunAs(flags.run_as);
      limits = {
        memoryBytes: parseSizeBytes(flags.action_memory),
        processes: flags.action_processes,
        fileSizeBytes: parseSizeBytes(flags.action_file_size),
        outputBytes: parseSizeBytes(flags.action_output_size),
      };
    } catch (err) {
      throw usageError((err as Error).message, err);
    }
    const slots = resolveSlots(flags.slots);
    if (slots < 1) throw usageError('--slots must be at least 1 for a worker');
    const cas = await this.connectCas({ cas_addr: flags.cas, instance_name: '', digest_function: 'sha256' });
    const worker = await startWorker({
      schedulerAddress: flags.scheduler,
      contentAddressableStorage: new GrpcBlobStore(cas),
      slots,
      workDir: flags.work_dir ?? join(defaultCacheDir(), 'worker'),
      platform,
      logger,
      ...(flags.runner ? { runner: flags.runner } : {}),
      ...(runAs ? { runAs } : {}),
      allowRootActions: flags.allow_root_actions,
      chroot: flags.chroot,
      limits,
    });
    process.stdout.write(`worker polling ${flags.scheduler} with ${slots} slot(s) as ${worker.workerId}\n`);
    const signal = await waitForShutdownSignal();
    logger.info(`Received ${signal}, shutting down`);
    await worker.close();
  }
}
