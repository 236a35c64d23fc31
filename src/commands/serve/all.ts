import { Flags } from '@oclif/core';
import { BzutilCommand } from '../../lib/cli/base-command.js';
import { bazelHints } from '../../lib/cli/bazel-hints.js';
import { assetAllowFlag, allowAcUpdatesFlag, authFlags, configFlags, logLevelFlag, operatorFlags, runnerFlags, schedulerFlags, serverTlsFlags, storageFlags, workerFlags, workerPortAuthFlags } from '../../lib/cli/serve-flags.js';
import { configToServe } from '../../lib/cli/serve-overrides.js';
import { createLogger } from '../../lib/util/logger.js';
import type { ResolvedConfig } from '../../lib/config/config.js';
import { runServersUntilSignal } from '../../server/run-servers.js';
import { type ServeAll as AllServers, startAll, uiOfServeAll } from '../../server/serve-all.js';

export default class ServeAll extends BzutilCommand<void> {
  static override enableJsonFlag = false;
  static override summary = 'Run the apiserver, the scheduler and a worker in one process.';
  static override description = `The embedded default: no configuration needed. The apiserver (CAS, ByteStream, ActionCache,
Capabilities) listens on 12100, the scheduler (Execution, Operations, and the same storage APIs) on 9099,
and a worker runs one action per CPU. Storage lives under ~/.cache/bzutil unless --storage_dir says
otherwise. Stop it with Ctrl-C.

Everything can also be set in a YAML or JSON file given with --config (see examples/serve-all.yaml and
schema/bzutil-config.schema.json); each flag overrides one key of it, and --print_config shows the
result without starting anything.

Each server prints "<service> listening on <host:port>" on stdout once it accepts calls.`;
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    '<%= config.bin %> <%= command.id %> --storage_dir=/var/cache/bzutil --max_size=50G --slots=8',
    '<%= config.bin %> <%= command.id %> --apiserver_listen=127.0.0.1:0 --scheduler_listen=127.0.0.1:0 --in_memory',
    '<%= config.bin %> <%= command.id %> --config=examples/serve-all.yaml --print_config',
    'bazel build --remote_executor=grpc://localhost:9099 //...',
  ];
  static override flags = {
    ...configFlags,
    apiserver_listen: Flags.string({
      summary: 'host:port for the apiserver, port 0 picks a free port (apiserver.listen_address; default 127.0.0.1:12100).',
      aliases: ['apiserver-listen'],
    }),
    scheduler_listen: Flags.string({
      summary: 'host:port for the scheduler, the endpoint Bazel uses as --remote_executor (scheduler.listen_address; default 127.0.0.1:9099).',
      aliases: ['scheduler-listen'],
    }),
    ...schedulerFlags,
    ...storageFlags,
    ...workerFlags,
    ...allowAcUpdatesFlag,
    ...assetAllowFlag,
    ...serverTlsFlags,
    ...runnerFlags,
    ...authFlags,
    ...workerPortAuthFlags,
    ...operatorFlags,
    log_level: logLevelFlag,
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(ServeAll);
    const config = await configToServe('all', flags);
    if (!config) return;
    const logger = createLogger({ level: config.log_level });
    await runServersUntilSignal(config, logger, (deps) => startAll(config, deps), (all) => this.ready(config, all), uiOfServeAll);
  }

  private ready(config: ResolvedConfig, all: AllServers): void {
    process.stdout.write(`apiserver listening on ${all.apiserver.address}\n`);
    process.stdout.write(`scheduler listening on ${all.scheduler.address}\n`);
    if (config.scheduler?.worker_listen_address !== undefined) process.stdout.write(`workers listening on ${all.scheduler.workerAddress}\n`);
    const schedulerPort = all.scheduler.port;
    process.stderr.write(
      `bzutil is ready: ${config.worker?.slots ?? 0} worker slot(s).\n` +
        bazelHints({ schedulerPort, apiserverPort: all.apiserver.port, schedulerTls: config.scheduler?.tls, apiserverTls: config.apiserver?.tls, auth: config.auth })
          .map((line) => `${line}\n`)
          .join('') +
        `  CLI:                      bzutil upload_command --cas_addr=localhost:${all.apiserver.port} echo hello\n` +
        `Press Ctrl-C to stop.\n`,
    );
  }
}
