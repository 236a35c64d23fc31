import { Flags } from '@oclif/core';
import { BzutilCommand } from '../../lib/cli/base-command.js';
import { assetAllowFlag, actionCacheFlag, allowAcUpdatesFlag, authFlags, configFlags, logLevelFlag, operatorFlags, schedulerFlags, serverTlsFlags, workerPortAuthFlags } from '../../lib/cli/serve-flags.js';
import { configToServe } from '../../lib/cli/serve-overrides.js';
import { createLogger } from '../../lib/util/logger.js';
import { createScheduler } from '../../server/create-servers.js';
import { runServersUntilSignal } from '../../server/run-servers.js';

export default class ServeScheduler extends BzutilCommand<void> {
  static override enableJsonFlag = false;
  static override summary = 'Run the scheduler: Execution and Operations, with workers dialling in.';
  static override description = `Queues actions and hands them to workers started with "bzutil serve worker". It
checks the action cache and that every input is in the CAS before queueing, and it also serves
Capabilities, CAS, ByteStream and ActionCache (forwarded to the apiserver given by --cas) so that Bazel
needs only --remote_executor=grpc://host:9099. Workers dial a separate, private worker port
(--worker_listen, default 127.0.0.1:9098), never the client port. Prints "scheduler listening on
<host:port>" and "workers listening on <host:port>" when ready.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %> --cas=localhost:12100',
    '<%= config.bin %> <%= command.id %> --listen=0.0.0.0:9099 --worker_listen=10.0.0.5:9098 --cas=cas.internal:12100',
    '<%= config.bin %> <%= command.id %> --cas=cas1:12100,cas2:12100 --ac=redis://redis:6379',
  ];
  static override flags = {
    ...configFlags,
    listen: Flags.string({ summary: 'host:port to listen on, port 0 picks a free port (scheduler.listen_address; default 127.0.0.1:9099).' }),
    cas: Flags.string({
      summary: 'Address of the apiserver holding the CAS and action cache (sets storage to grpc stores; default localhost:12100).',
      description:
        'Several comma-separated addresses shard the CAS over those apiservers (storage.cas.sharding, each blob on one of them, placed by digest); the action cache is then the first one\'s unless --ac names a shared one (redis://…).',
      aliases: ['cas_addr', 'cas-addr'],
    }),
    ...actionCacheFlag,
    ...schedulerFlags,
    ...allowAcUpdatesFlag,
    ...assetAllowFlag,
    ...serverTlsFlags,
    data_dir: Flags.string({
      summary: 'Directory for the scheduler state, scheduler.db (scheduler.state sqlite:<data_dir>/scheduler.db).',
      description: 'Defaults to $XDG_CACHE_HOME/bzutil/scheduler or ~/.cache/bzutil/scheduler. --state overrides it.',
      aliases: ['data-dir'],
    }),
    ...authFlags,
    ...workerPortAuthFlags,
    ...operatorFlags,
    log_level: logLevelFlag,
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(ServeScheduler);
    const config = await configToServe('scheduler', flags);
    if (!config) return;
    const logger = createLogger({ level: config.log_level, component: 'scheduler' });
    await runServersUntilSignal(
      config,
      logger,
      (deps) => createScheduler(config, deps),
      (scheduler) => {
        process.stdout.write(`scheduler listening on ${scheduler.address}\n`);
        process.stdout.write(`workers listening on ${scheduler.workerAddress}\n`);
      },
      (s) => ({ contentAddressableStorage: s.contentAddressableStorage, actionCache: s.actionCache, buildQueue: s.buildQueue, workers: () => s.workers(), readLogStream: s.readLogStream }),
    );
  }
}
