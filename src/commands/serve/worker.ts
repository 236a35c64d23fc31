import { Flags } from '@oclif/core';
import { BzutilCommand } from '../../lib/cli/base-command.js';
import { configFlags, logLevelFlag, operatorFlags, runnerFlags, workerCredentialFlags, workerFlags } from '../../lib/cli/serve-flags.js';
import { configToServe } from '../../lib/cli/serve-overrides.js';
import { createLogger } from '../../lib/util/logger.js';
import { createWorker } from '../../server/create-servers.js';
import { runServersUntilSignal } from '../../server/run-servers.js';

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
    '<%= config.bin %> <%= command.id %> --scheduler=localhost:9098 --cas=localhost:12100 --slots=4',
    '<%= config.bin %> <%= command.id %> --scheduler=sched:9098 --cas=cas:12100 --platform=OSFamily=Linux,container-image=none --work_dir=/tmp/w1',
    '<%= config.bin %> <%= command.id %> --scheduler=sched-a:9098,sched-b:9098 --cas=cas-a:12100,cas-b:12100',
  ];
  static override flags = {
    ...configFlags,
    scheduler: Flags.string({ summary: 'Address of the scheduler worker port, its --worker_listen, or several separated by commas (a fleet sharing Redis: the worker fails over between them) (worker.scheduler_address; default localhost:9098).', aliases: ['scheduler_addr', 'scheduler-addr'] }),
    cas: Flags.string({
      summary: 'Address of the CAS: the apiserver, or the scheduler which forwards to it (sets storage.cas to a grpc store; default localhost:12100).',
      description: 'Several comma-separated apiserver addresses shard the CAS over them (storage.cas.sharding); give the scheduler the same list.',
      aliases: ['cas_addr', 'cas-addr'],
    }),
    ...workerFlags,
    ...runnerFlags,
    ...workerCredentialFlags,
    ...operatorFlags,
    log_level: logLevelFlag,
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(ServeWorker);
    const config = await configToServe('worker', flags);
    if (!config) return;
    const logger = createLogger({ level: config.log_level, component: 'worker' });
    const { scheduler_address: schedulerAddress, slots } = config.worker!;
    await runServersUntilSignal(config, logger, (deps) => createWorker(config, deps), (worker) => {
      process.stdout.write(`worker polling ${schedulerAddress} with ${slots} slot(s) as ${worker.workerId}\n`);
    });
  }
}
