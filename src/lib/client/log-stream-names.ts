/**
 * The live log stream names of an operation: those its ExecuteOperationMetadata gives, else
 * bzutil's own form `<operation name>/logs/stdout|stderr` (what bzutil's scheduler serves).
 */
import type { DecodedOperation } from './execution-client.js';

export function logStreamNamesOf(op: Pick<DecodedOperation, 'name' | 'metadata'>): { stdout: string; stderr: string } {
  return {
    stdout: op.metadata?.stdoutStreamName || `${op.name}/logs/stdout`,
    stderr: op.metadata?.stderrStreamName || `${op.name}/logs/stderr`,
  };
}
