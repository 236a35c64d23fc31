import { Flags } from '@oclif/core';
import { GrpcActionCache } from '../../lib/actioncache/grpc-action-cache.js';
import { GrpcBlobStore } from '../../lib/blobstore/grpc-blob-store.js';
import { BzutilCommand, usageError } from '../../lib/cli/base-command.js';
import { logLevelFlag, parseDurationMs, schedulerFlags, waitForShutdownSignal } from '../../lib/cli/serve-flags.js';
import { createLogger, type LogLevel } from '../../lib/util/logger.js';
import { DEFAULT_SCHEDULER_LISTEN_ADDRESS, startScheduler } from '../../server/scheduler.js';

export default class ServeScheduler extends BzutilCommand<void> {
  static override enableJsonFlag = false;
  static override summary = 'Run the scheduler: Execution and Operations, with workers dialling in.';
  static override description = `Queues actions and hands them to workers started with "bzutil serve worker". It
checks the action cache and that every input is in the CAS before queueing, and it also serves
Capabilities, CAS, ByteStream and ActionCache (forwarded to the apiserver given by --cas) so that Bazel
needs only --remote_executor=grpc://host:9099. Prints "scheduler listening on <host:port>" when ready.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %> --cas=localhost:12100',
    '<%= config.bin %> <%= command.id %> --listen=0.0.0.0:9099 --cas=cas.internal:12100',
  ];
  static override flags = {
    listen: Flags.string({ summary: 'host:port to listen on (port 0 picks a free port).', default: DEFAULT_SCHEDULER_LISTEN_ADDRESS }),
    cas: Flags.string({ summary: 'Address of the apiserver holding the CAS and action cache.', default: 'localhost:12100', aliases: ['cas_addr', 'cas-addr'] }),
    ...schedulerFlags,
    log_level: logLevelFlag,
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(ServeScheduler);
    const logger = createLogger({ level: flags.log_level as LogLevel, component: 'scheduler' });
    let workerLeaseMs: number;
    try {
      workerLeaseMs = parseDurationMs(flags.worker_lease);
    } catch (err) {
      throw usageError((err as Error).message, err);
    }
    const cas = await this.connectCas({ cas_addr: flags.cas, instance_name: '', digest_function: 'sha256' });
    const scheduler = await startScheduler({
      listenAddress: flags.listen,
      contentAddressableStorage: new GrpcBlobStore(cas),
      actionCache: new GrpcActionCache(cas.connection),
      workerLeaseMs,
      logger,
    });
    process.stdout.write(`scheduler listening on ${scheduler.address}\n`);
    const signal = await waitForShutdownSignal();
    logger.info(`Received ${signal}, shutting down`);
    await scheduler.close();
  }
}
