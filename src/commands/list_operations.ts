import { Flags } from '@oclif/core';
import { decodeOperation } from '../lib/client/execution-client.js';
import { ExecutionCommand, schedulerFlags } from '../lib/cli/execution-command.js';
import { type OperationView, formatOperationTable, toOperationView } from '../lib/cli/operation-format.js';
import { usageError } from '../lib/cli/base-command.js';
import { prose } from '../lib/cli/help-text.js';

export interface ListOperationsResult {
  operations: OperationView[];
  /** Pass it to --page_token for the next page; absent on the last page (and with --all). */
  nextPageToken?: string;
}

/** Pages fetched by --all at most: 10 000 pages of up to 1000 operations is more than any scheduler keeps. */
const MAX_PAGES = 10_000;

export default class ListOperations extends ExecutionCommand<ListOperationsResult> {
  static override summary = 'List the operations the scheduler knows, oldest first.';
  static override description = prose(`Pages through Operations.ListOperations. On a terminal the operations are a table (name, stage,
done, action digest); in a pipe each is one tab-separated line with the same columns, for cut and
awk. --json returns the operations as execute --json shows them, with the next page token.

The scheduler keeps operations in memory for a while after they are done, so the list is recent
history, not a complete log.`);
  static override examples = [
    '<%= config.bin %> <%= command.id %>',
    { description: 'Only what is still queued or running', command: '<%= config.bin %> <%= command.id %> --filter=done=false' },
    { description: 'Everything, as JSON', command: '<%= config.bin %> <%= command.id %> --all --json' },
  ];
  static override flags = {
    ...schedulerFlags,
    page_size: Flags.integer({ summary: 'Operations per page (the server caps it).', aliases: ['page-size'], min: 1, default: 100 }),
    page_token: Flags.string({ summary: 'Continue from the nextPageToken of an earlier page.', aliases: ['page-token'] }),
    filter: Flags.option({ summary: 'Only done, or only unfinished, operations.', options: ['done=true', 'done=false'] as const })(),
    all: Flags.boolean({ summary: 'Fetch every page, not just the first.', default: false }),
  };

  async run(): Promise<ListOperationsResult> {
    const { flags } = await this.parse(ListOperations);
    if (flags.all && flags.page_token) throw usageError('Failed to list operations: --all starts from the first page; drop --page_token');
    const client = await this.connectScheduler(flags);
    const operations: OperationView[] = [];
    let pageToken = flags.page_token ?? '';
    for (let page = 0; page < MAX_PAGES; page++) {
      const response = await client.listOperations({ name: flags.instance_name ? `${flags.instance_name}/operations` : '', filter: flags.filter ?? '', pageSize: flags.page_size, pageToken });
      for (const op of response.operations ?? []) operations.push(toOperationView(decodeOperation(op)));
      pageToken = response.nextPageToken ?? '';
      if (!flags.all || !pageToken) break;
    }
    this.log(formatOperationTable(operations, { terminal: process.stdout.isTTY === true }).trimEnd());
    return pageToken ? { operations, nextPageToken: pageToken } : { operations };
  }
}
