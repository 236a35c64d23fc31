/**
 * Operation names, in one module: `[<instance>/]operations/<id>`. The instance name comes first so
 * that an operation belongs to exactly one instance, and every Operations and WaitExecution call is
 * answered within the instance its name (or collection) names: instance names cannot contain the
 * reserved segment `operations`, so the split is unambiguous. A permission check (which instances
 * may a caller see) needs only `parseOperationName(...).instanceName`.
 */
import { quoteInstanceName, validateInstanceName } from '../digest/instance-name.js';
import { StatusError } from '../errors/status-error.js';

export interface OperationName {
  instanceName: string;
  id: string;
  /** The canonical form, `[<instance>/]operations/<id>`. */
  name: string;
}

const SEGMENT = 'operations';
const BARE_UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Operation ids are ours (UUIDs); anything printable without a slash is accepted when looking up. */
const ID = /^[A-Za-z0-9._~-]{1,128}$/;

/** `[<instance>/]operations/<id>`. */
export function formatOperationName(instanceName: string, id: string): string {
  return instanceName ? `${instanceName}/${SEGMENT}/${id}` : `${SEGMENT}/${id}`;
}

/**
 * Parses the name of one operation; INVALID_ARGUMENT (BadRequest on `field`) when it is empty or not
 * of the form `[<instance>/]operations/<id>` with a valid instance name. A bare UUID (the seed's
 * `--name=b53b5e99-...`) names the empty instance's `operations/<uuid>`.
 */
export function parseOperationName(name: string | null | undefined, field = 'name'): OperationName {
  if (!name) throw bad(field, 'Failed to find operation: the operation name is empty', 'Must name an operation');
  if (BARE_UUID.test(name)) {
    const id = name.toLowerCase();
    return { instanceName: '', id, name: formatOperationName('', id) };
  }
  const at = name === SEGMENT || name.startsWith(`${SEGMENT}/`) ? 0 : name.lastIndexOf(`/${SEGMENT}/`) + 1;
  const id = at > 0 || name.startsWith(`${SEGMENT}/`) ? name.slice(at + SEGMENT.length + 1) : '';
  if (!ID.test(id)) {
    throw bad(field, `Failed to find operation ${quoteInstanceName(name)}: not of the form [<instance>/]operations/<id>`, 'Must be [<instance>/]operations/<id>');
  }
  const instanceName = at > 0 ? name.slice(0, at - 1) : '';
  validateInstanceName(instanceName, field);
  return { instanceName, id, name: formatOperationName(instanceName, id) };
}

/**
 * The instance a ListOperations collection name lists: `''` and `operations` are the empty instance
 * (never "every instance"), `<instance>/operations` or `<instance>` that instance.
 */
export function parseOperationsCollection(name: string | null | undefined, field = 'name'): string {
  if (!name || name === SEGMENT) return '';
  const instanceName = name.endsWith(`/${SEGMENT}`) ? name.slice(0, -SEGMENT.length - 1) : name;
  validateInstanceName(instanceName, field);
  return instanceName;
}

function bad(field: string, message: string, description: string): StatusError {
  return StatusError.invalidArgument(message, [{ field, description }]);
}
