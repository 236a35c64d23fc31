/**
 * The scheduler's private worker port: the WorkerQueue service on its own server, never on the
 * client-facing port, so that a client of the scheduler cannot pose as a worker (take queued actions,
 * whose argv and environment may carry secrets, or report results).
 *
 * Given an address (`scheduler.worker_listen_address`, `--worker_listen`), it listens there (`serve
 * scheduler` defaults to 127.0.0.1:9098). Without one it listens on a Unix socket in a fresh
 * directory only this user can enter (mode 0700): that is how `serve all`'s in-process worker
 * reaches its scheduler. No TCP port is opened, and the file system's permissions are the credential,
 * so the in-process worker needs none while other local users cannot connect; the worker code stays
 * the same gRPC client as on a remote host.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import type * as grpc from '@grpc/grpc-js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { workerQueueService } from '../lib/proto/services.js';
import type { HandlerFactory } from './grpc/handlers.js';
import { bindGrpcServer, createGrpcServer, shutdownGrpcServer } from './grpc/server.js';
import { createWorkerQueueService } from './services/worker-queue-service.js';
import { addIntrospection } from './grpc/introspection.js';

export interface WorkerPort {
  /** What a worker dials: `host:port` as bound, or `unix:/path` for the private socket. */
  address: string;
  close(): Promise<void>;
}

/**
 * `handlers` carry the worker guard (worker tokens) when workers must authenticate; `credentials`
 * are the port's TLS (with a client CA: worker certificates). Both are the caller's to decide.
 */
export async function openWorkerPort(
  handlers: HandlerFactory,
  deps: Parameters<typeof createWorkerQueueService>[1],
  listenAddress?: string,
  credentials?: grpc.ServerCredentials,
): Promise<WorkerPort> {
  const server = createGrpcServer();
  server.addService(workerQueueService, createWorkerQueueService(handlers, deps));
  // Health and reflection on this port too, listing the one service it serves.
  addIntrospection(server, [workerQueueService]);
  const socketDir = listenAddress === undefined ? await mkdtemp(join(tmpdir(), 'bzutil-worker-')) : undefined;
  const bindAddress = socketDir === undefined ? listenAddress! : `unix:${join(socketDir, 'worker.sock')}`;
  try {
    const port = await bindGrpcServer(server, bindAddress, socketDir === undefined ? credentials : undefined);
    const address = socketDir === undefined ? `${bindAddress.slice(0, bindAddress.lastIndexOf(':'))}:${port}` : bindAddress;
    return {
      address,
      close: async () => {
        await shutdownGrpcServer(server);
        if (socketDir) await rm(socketDir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    server.forceShutdown();
    if (socketDir) await rm(socketDir, { recursive: true, force: true });
    throw err;
  }
}
