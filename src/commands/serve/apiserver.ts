import { Flags } from '@oclif/core';
import { BzutilCommand } from '../../lib/cli/base-command.js';
import { assetAllowFlag, actionCacheFlag, allowAcUpdatesFlag, authFlags, configFlags, logLevelFlag, operatorFlags, processesFlag, serverTlsFlags, storageFlags } from '../../lib/cli/serve-flags.js';
import { configToServe } from '../../lib/cli/serve-overrides.js';
import { createLogger } from '../../lib/util/logger.js';
import { createApiServer } from '../../server/create-servers.js';
import { runServersUntilSignal } from '../../server/run-servers.js';

export default class ServeApiserver extends BzutilCommand<void> {
  static override enableJsonFlag = false;
  static override summary = 'Run the apiserver: Capabilities, CAS, ByteStream and ActionCache (a Bazel remote cache).';
  static override description = `Serves the storage half of the Remote Execution API. Point Bazel at it with
--remote_cache=grpc://host:12100, or point a separate scheduler and its workers at it with --cas.
Every upload is verified against its digest before it becomes visible; the least recently used blobs
are evicted beyond --max_size. Clients may write the action cache only with --allow_ac_updates: a
Bazel using it as --remote_cache alone needs that, and so does a separate "serve scheduler" that
stores its results here (keep such an apiserver on a network only the scheduler and workers reach).
Prints "apiserver listening on <host:port>" on stdout when ready.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %> --allow_ac_updates',
    '<%= config.bin %> <%= command.id %> --listen=0.0.0.0:12100 --storage_dir=/var/cache/bzutil --max_size=100G',
    '<%= config.bin %> <%= command.id %> --listen=0.0.0.0:12100 --ac=redis://redis:6379',
    'bazel build --remote_cache=grpc://localhost:12100 //...',
  ];
  static override flags = {
    ...configFlags,
    listen: Flags.string({ summary: 'host:port to listen on, port 0 picks a free port (apiserver.listen_address; default 127.0.0.1:12100).' }),
    ...processesFlag,
    ...storageFlags,
    ...actionCacheFlag,
    ...allowAcUpdatesFlag,
    ...assetAllowFlag,
    ...serverTlsFlags,
    ...authFlags,
    ...operatorFlags,
    log_level: logLevelFlag,
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(ServeApiserver);
    const config = await configToServe('apiserver', flags);
    if (!config) return;
    const logger = createLogger({ level: config.log_level, component: 'apiserver' });
    if (config.apiserver!.processes > 1) {
      const { serveApiServerProcesses } = await import('../../server/apiserver-cluster.js');
      await serveApiServerProcesses(config, logger, (address) => process.stdout.write(`apiserver listening on ${address}\n`));
      return;
    }
    await runServersUntilSignal(
      config,
      logger,
      (deps) => createApiServer(config, deps),
      (server) => process.stdout.write(`apiserver listening on ${server.address}\n`),
      (server) => ({ contentAddressableStorage: server.contentAddressableStorage, actionCache: server.actionCache }),
    );
  }
}
