import { Flags } from '@oclif/core';
import { join } from 'node:path';
import { BzutilCommand, usageError } from '../../lib/cli/base-command.js';
import { defaultCacheDir, logLevelFlag, parseSizeBytes, storageFlags, waitForShutdownSignal } from '../../lib/cli/serve-flags.js';
import { createLogger, type LogLevel } from '../../lib/util/logger.js';
import { DEFAULT_APISERVER_LISTEN_ADDRESS, startApiServer } from '../../server/apiserver.js';

export default class ServeApiserver extends BzutilCommand<void> {
  static override enableJsonFlag = false;
  static override summary = 'Run the apiserver: Capabilities, CAS, ByteStream and ActionCache (a Bazel remote cache).';
  static override description = `Serves the storage half of the Remote Execution API. Point Bazel at it with
--remote_cache=grpc://host:12100, or point a separate scheduler and its workers at it with --cas.
Every upload is verified against its digest before it becomes visible; the least recently used blobs
are evicted beyond --max_size. Prints "apiserver listening on <host:port>" on stdout when ready.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --listen=0.0.0.0:12100 --storage_dir=/var/cache/bzutil --max_size=100G',
    'bazel build --remote_cache=grpc://localhost:12100 //...',
  ];
  static override flags = {
    listen: Flags.string({ summary: 'host:port to listen on (port 0 picks a free port).', default: DEFAULT_APISERVER_LISTEN_ADDRESS }),
    ...storageFlags,
    log_level: logLevelFlag,
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(ServeApiserver);
    const logger = createLogger({ level: flags.log_level as LogLevel, component: 'apiserver' });
    let maxSizeBytes: number;
    let memoryCacheSizeBytes: number;
    try {
      maxSizeBytes = parseSizeBytes(flags.max_size);
      memoryCacheSizeBytes = parseSizeBytes(flags.memory_cache, { allowZero: true });
    } catch (err) {
      throw usageError((err as Error).message, err);
    }
    const server = await startApiServer({
      listenAddress: flags.listen,
      storageDir: flags.storage_dir ?? join(defaultCacheDir(), 'storage'),
      maxSizeBytes,
      memoryCacheSizeBytes,
      inMemory: flags.in_memory,
      logger,
    });
    process.stdout.write(`apiserver listening on ${server.address}\n`);
    const signal = await waitForShutdownSignal();
    logger.info(`Received ${signal}, shutting down`);
    await server.close();
  }
}
