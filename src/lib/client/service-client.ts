/**
 * What every typed REAPI service client shares: the connection, the instance name and digest
 * function its requests name, and the retry policy of its idempotent calls.
 */
import type { DigestFunction } from '../digest/digest-function.js';
import { type RemoteConnection, instanceRequestFields } from './connection.js';
import { type ResolvedRetryOptions, type RetryOptions, resolveRetryOptions } from './retry.js';

export interface ServiceClientOptions {
  /** @default '' */
  instanceName?: string;
  /** @default 'sha256' */
  digestFunction?: DigestFunction;
  retry?: RetryOptions;
}

export abstract class ServiceClient {
  readonly instanceName: string;
  readonly digestFunction: DigestFunction;
  protected readonly retry: ResolvedRetryOptions;

  constructor(
    readonly connection: RemoteConnection,
    opts: ServiceClientOptions = {},
  ) {
    this.instanceName = opts.instanceName ?? '';
    this.digestFunction = opts.digestFunction ?? 'sha256';
    this.retry = resolveRetryOptions(opts.retry);
  }

  /** The instance_name and digest_function fields of this client's requests. */
  protected requestFields(): { instanceName: string; digestFunction?: number } {
    return instanceRequestFields(this.instanceName, this.digestFunction);
  }
}
