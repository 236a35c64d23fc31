import { Flags } from '@oclif/core';
import { join } from 'node:path';
import { BzutilCommand, usageError } from '../../lib/cli/base-command.js';
import { defaultCacheDir, logLevelFlag, parseDurationMs, parseSizeBytes, resolvePlatform, resolveSlots, schedulerFlags, storageFlags, waitForShutdownSignal, workerFlags } from '../../lib/cli/serve-flags.js';
import { createLogger, type LogLevel } from '../../lib/util/logger.js';
import { DEFAULT_APISERVER_LISTEN_ADDRESS } from '../../server/apiserver.js';
import { DEFAULT_SCHEDULER_LISTEN_ADDRESS } from '../../server/scheduler.js';
import { startAll } from '../../server/serve-all.js';

export default class ServeAll extends BzutilCommand<void> {
  static override enableJsonFlag = false;
  static override summary = 'Run the apiserver, the scheduler and a worker in one process.';
  static override description = `The embedded default: no configuration needed. The apiserver (CAS, ByteStream, ActionCache,
Capabilities) listens on 12100, the scheduler (Execution, Operations, and the same storage APIs) on 9099,
and a worker runs one action per CPU. Storage lives under ~/.cache/bzutil unless --storage_dir says
otherwise. Stop it with Ctrl-C.

Each server prints "<service> listening on <host:port>" on stdout once it accepts calls.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --storage_dir=/var/cache/bzutil --max_size=50G --slots=8',
    '<%= config.bin %> <%= command.id %> --apiserver_listen=127.0.0.1:0 --scheduler_listen=127.0.0.1:0 --in_memory',
    'bazel build --remote_executor=grpc://localhost:9099 //...',
  ];
  static override flags = {
    apiserver_listen: Flags.string({
      summary: 'host:port for the apiserver (port 0 picks a free port).',
      default: DEFAULT_APISERVER_LISTEN_ADDRESS,
      aliases: ['apiserver-listen'],
    }),
    scheduler_listen: Flags.string({
      summary: 'host:port for the scheduler, the endpoint Bazel uses as --remote_executor.',
      default: DEFAULT_SCHEDULER_LISTEN_ADDRESS,
      aliases: ['scheduler-listen'],
    }),
    ...schedulerFlags,
    ...storageFlags,
    ...workerFlags,
    log_level: logLevelFlag,
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(ServeAll);
    const logger = createLogger({ level: flags.log_level as LogLevel });
    let maxSizeBytes: number;
    let memoryCacheSizeBytes: number;
    let platform: { name: string; value: string }[];
    let workerLeaseMs: number;
    try {
      maxSizeBytes = parseSizeBytes(flags.max_size);
      memoryCacheSizeBytes = parseSizeBytes(flags.memory_cache, { allowZero: true });
      platform = resolvePlatform(flags.platform);
      workerLeaseMs = parseDurationMs(flags.worker_lease);
    } catch (err) {
      throw usageError((err as Error).message, err);
    }
    const cacheDir = defaultCacheDir();
    const all = await startAll({
      apiserverListenAddress: flags.apiserver_listen,
      schedulerListenAddress: flags.scheduler_listen,
      storageDir: flags.storage_dir ?? join(cacheDir, 'storage'),
      maxSizeBytes,
      memoryCacheSizeBytes,
      inMemory: flags.in_memory,
      workDir: flags.work_dir ?? join(cacheDir, 'work'),
      slots: resolveSlots(flags.slots),
      platform,
      workerLeaseMs,
      logger,
    });
    process.stdout.write(`apiserver listening on ${all.apiserver.address}\n`);
    process.stdout.write(`scheduler listening on ${all.scheduler.address}\n`);
    const schedulerPort = all.scheduler.port;
    process.stderr.write(
      `bzutil is ready: ${resolveSlots(flags.slots)} worker slot(s).\n` +
        `  Bazel, remote execution:  bazel build --remote_executor=grpc://localhost:${schedulerPort} //...\n` +
        `  Bazel, remote cache only: bazel build --remote_cache=grpc://localhost:${all.apiserver.port} //...\n` +
        `  CLI:                      bzutil upload_command --cas_addr=localhost:${all.apiserver.port} echo hello\n` +
        `Press Ctrl-C to stop.\n`,
    );
    const signal = await waitForShutdownSignal();
    logger.info(`Received ${signal}, shutting down`);
    await all.close();
  }
}
