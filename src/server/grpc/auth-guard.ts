/**
 * Who may call which method: the table from every gRPC method of the client ports to the
 * permission it needs and where its instance name is, applied as the CallGuard of the handler
 * wrapper (handlers.ts) so that no service can forget it. A method missing from the table needs
 * `admin`: new methods are closed until someone decides.
 *
 * Credentials arrive as `authorization: Bearer <token>`. Missing or invalid: UNAUTHENTICATED. Valid
 * but lacking the permission, or the request's instance is not among the credential's instance
 * globs: PERMISSION_DENIED naming the permission. GetCapabilities answers without a credential, as
 * do health and reflection (which are not served through the handler wrapper), so that clients can
 * find out what the server offers before they authenticate.
 */
import type * as grpc from '@grpc/grpc-js';
import { type Authenticator, bearerToken } from '../../lib/auth/authenticator.js';
import { authorize, type Permission, type Principal } from '../../lib/auth/principal.js';
import { StatusError, toStatusError } from '../../lib/errors/status-error.js';
import { parseLogStreamName } from '../../lib/scheduler/log-streams.js';
import { parseOperationName, parseOperationsCollection } from '../../lib/scheduler/operation-names.js';
import type { Logger } from '../../lib/util/logger.js';
import type { CallGuard } from './handlers.js';

/** Where a request names its instance; undefined when it cannot be told (the handler then refuses it as malformed). */
type InstanceOf = (request: unknown) => string | undefined;

export interface MethodRule {
  /** The call runs when the credential has one of these; 'public' needs no credential at all. */
  permissions: readonly Permission[] | 'public';
  instance?: InstanceOf;
}

const instanceNameField: InstanceOf = (request) => {
  const value = (request as { instanceName?: unknown } | undefined)?.instanceName;
  return typeof value === 'string' ? value : '';
};

/** `{instance}/blobs/…`, `{instance}/compressed-blobs/…`, `{instance}/uploads/{uuid}/…`: the segments before the first marker. */
const resourceNameInstance: InstanceOf = (request) => {
  const name = (request as { resourceName?: unknown } | undefined)?.resourceName;
  if (typeof name !== 'string') return '';
  const segs = name.split('/');
  const idx = segs.findIndex((s) => s === 'blobs' || s === 'compressed-blobs' || s === 'uploads');
  return idx < 0 ? undefined : segs.slice(0, idx).join('/');
};

/** `[<instance>/]operations/<id>` (lib/scheduler/operation-names.ts); undefined when malformed (the handler refuses it). */
const operationNameInstance: InstanceOf = (request) => {
  try {
    return parseOperationName((request as { name?: string } | undefined)?.name).instanceName;
  } catch {
    return undefined;
  }
};

/** The instance a ListOperations collection name lists (`''`, `operations`, `<instance>[/operations]`). */
const operationsCollectionInstance: InstanceOf = (request) => {
  try {
    return parseOperationsCollection((request as { name?: string } | undefined)?.name);
  } catch {
    return undefined;
  }
};

const rule = (permissions: MethodRule['permissions'], instance?: InstanceOf): MethodRule => ({ permissions, instance });

/** Every method served through the handler wrapper on the client ports. */
export const METHOD_RULES: Readonly<Record<string, MethodRule>> = {
  'Capabilities.GetCapabilities': rule('public'),
  'ContentAddressableStorage.FindMissingBlobs': rule(['cas.read'], instanceNameField),
  'ContentAddressableStorage.BatchReadBlobs': rule(['cas.read'], instanceNameField),
  'ContentAddressableStorage.GetTree': rule(['cas.read'], instanceNameField),
  'ContentAddressableStorage.SplitBlob': rule(['cas.read'], instanceNameField),
  'ContentAddressableStorage.BatchUpdateBlobs': rule(['cas.write'], instanceNameField),
  'ContentAddressableStorage.SpliceBlob': rule(['cas.write'], instanceNameField),
  'ByteStream.Read': rule(['cas.read'], resourceNameInstance),
  'ByteStream.Write': rule(['cas.write'], resourceNameInstance),
  'ByteStream.QueryWriteStatus': rule(['cas.write'], resourceNameInstance),
  'ActionCache.GetActionResult': rule(['ac.read'], instanceNameField),
  'ActionCache.UpdateActionResult': rule(['ac.write'], instanceNameField),
  'Execution.Execute': rule(['execute'], instanceNameField),
  // Bazel reattaches to its own executions with WaitExecution: `execute` suffices, as does a read-only token.
  'Execution.WaitExecution': rule(['execute', 'operations.read'], operationNameInstance),
  'Operations.GetOperation': rule(['operations.read'], operationNameInstance),
  'Operations.ListOperations': rule(['operations.read'], operationsCollectionInstance),
  'Operations.WaitOperation': rule(['operations.read'], operationNameInstance),
  'Operations.CancelOperation': rule(['execute'], operationNameInstance),
  'Operations.DeleteOperation': rule(['execute'], operationNameInstance),
  // Remote Asset: Fetch may download into the CAS, Push records into the asset index.
  'Fetch.FetchBlob': rule(['cas.write'], instanceNameField),
  'Fetch.FetchDirectory': rule(['cas.write'], instanceNameField),
  'Push.PushBlob': rule(['cas.write'], instanceNameField),
  'Push.PushDirectory': rule(['cas.write'], instanceNameField),
};

const UNLISTED: MethodRule = rule(['admin']);

/** Live log streams (`<operation>/logs/stdout`) are read like operations: `operations.read` in the operation's instance. */
const LOG_STREAM_READ = rule(['operations.read'], (request) => {
  try {
    return parseLogStreamName((request as { resourceName?: string } | undefined)?.resourceName ?? '')?.operation.instanceName;
  } catch {
    return undefined;
  }
});

/** The rule of one call: METHOD_RULES, except where the request decides (a ByteStream Read of a log stream). */
export function ruleOf(method: string, request: unknown, rules: Readonly<Record<string, MethodRule>> = METHOD_RULES): MethodRule {
  if (method === 'ByteStream.Read' && /\/logs\/(stdout|stderr)$/.test((request as { resourceName?: unknown } | undefined)?.resourceName as string)) return LOG_STREAM_READ;
  return rules[method] ?? UNLISTED;
}

/** The credential of a call's metadata; UNAUTHENTICATED when missing or not accepted. */
export async function authenticateMetadata(authenticator: Authenticator, metadata: grpc.Metadata): Promise<Principal> {
  const values = metadata.get('authorization');
  if (values.length > 1) throw StatusError.unauthenticated('Invalid credentials: more than one authorization header');
  const header = values[0];
  return authenticator.authenticate(bearerToken(typeof header === 'string' ? header : header?.toString('utf8')));
}

/** The guard of a client port: every call per METHOD_RULES. */
export function createAuthGuard(authenticator: Authenticator, logger: Logger, rules: Readonly<Record<string, MethodRule>> = METHOD_RULES): CallGuard {
  return async (method, request, metadata) => {
    const r = ruleOf(method, request, rules);
    if (r.permissions === 'public') return;
    let principal: Principal;
    try {
      principal = await authenticateMetadata(authenticator, metadata);
      authorize(principal, r.permissions, r.instance?.(request));
    } catch (err) {
      // Refusals at debug: an attacker must not be able to fill the log. Never the token itself.
      logger.debug('Refused a call', { method, code: toStatusError(err).codeName });
      throw err;
    }
  };
}

/**
 * The guard of the worker port: any token of the worker token file may call WorkerQueue (workers
 * have no instances or permissions); UNAUTHENTICATED without one.
 */
export function createWorkerGuard(authenticator: Authenticator, logger: Logger): CallGuard {
  return async (method, _request, metadata) => {
    try {
      await authenticateMetadata(authenticator, metadata);
    } catch (err) {
      logger.debug('Refused a worker call', { method, code: toStatusError(err).codeName });
      throw err;
    }
  };
}
