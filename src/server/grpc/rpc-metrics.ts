/**
 * Per-RPC counts, status codes and latency, in the names and labels of go-grpc-prometheus
 * (grpc_server_started_total, grpc_server_handled_total, grpc_server_handling_seconds) plus a
 * `server` label, because `serve all` runs the apiserver and the scheduler in one process with one
 * registry and both serve the storage APIs. Observed at the one handler boundary (handlers.ts).
 */
import { counter, histogram, type Registry, secondsSince } from '../../lib/util/metrics.js';

/** Called when a call starts; the function it returns when the call ends, with its status code name. */
export type RpcObserver = (method: string) => (codeName: string) => void;

/** `method` is the handler's name, `Service.Method` (e.g. `ContentAddressableStorage.FindMissingBlobs`). */
export function createRpcMetrics(registry: Registry, server: string): RpcObserver {
  const started = counter(registry, {
    name: 'grpc_server_started_total',
    help: 'RPCs started on the server.',
    labelNames: ['server', 'grpc_service', 'grpc_method'],
  });
  const handled = counter(registry, {
    name: 'grpc_server_handled_total',
    help: 'RPCs completed on the server, by gRPC status code.',
    labelNames: ['server', 'grpc_service', 'grpc_method', 'grpc_code'],
  });
  const seconds = histogram(registry, {
    name: 'grpc_server_handling_seconds',
    help: 'Time from the start of an RPC until its status was sent (streams: until the last message).',
    labelNames: ['server', 'grpc_service', 'grpc_method'],
  });
  return (method) => {
    const dot = method.indexOf('.');
    const labels = { server, grpc_service: method.slice(0, dot), grpc_method: method.slice(dot + 1) };
    started.inc(labels);
    const start = performance.now();
    return (codeName) => {
      handled.inc({ ...labels, grpc_code: codeName });
      seconds.observe(labels, secondsSince(start));
    };
  };
}
