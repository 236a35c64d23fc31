/**
 * A TCP failover proxy for tests, standing in for the load balancer a fleet puts in front of its
 * schedulers (Bazel takes one `--remote_executor` address): each accepted connection is piped to
 * the first upstream of the list that accepts a connection, and when either side closes, so does
 * the other. Once an upstream dies, the client's reconnection lands on the next one.
 */
import { createConnection, createServer, type Server, type Socket } from 'node:net';

export interface FailoverProxy {
  /** `host:port` the proxy listens on. */
  address: string;
  /** Connections piped to each upstream so far, by upstream address. */
  connections: Record<string, number>;
  close(): Promise<void>;
}

/** Connects to `address` (`host:port`); resolves with the socket, or undefined when refused. */
function tryConnect(address: string, timeoutMs: number): Promise<Socket | undefined> {
  const i = address.lastIndexOf(':');
  return new Promise((resolve) => {
    const socket = createConnection({ host: address.slice(0, i), port: Number(address.slice(i + 1)) });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(undefined);
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve(socket);
    });
    socket.once('error', () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(undefined);
    });
  });
}

/** Listens on `host:0` and forwards every connection to the first live upstream of `upstreams`. */
export async function startFailoverProxy(host: string, upstreams: string[]): Promise<FailoverProxy> {
  const open = new Set<Socket>();
  const connections: Record<string, number> = Object.fromEntries(upstreams.map((u) => [u, 0]));
  const server: Server = createServer((client) => {
    open.add(client);
    client.once('close', () => open.delete(client));
    client.on('error', () => client.destroy());
    // Hold the client's bytes until an upstream is chosen.
    client.pause();
    void (async () => {
      for (const upstream of upstreams) {
        const socket = await tryConnect(upstream, 2_000);
        if (!socket) continue;
        if (client.destroyed) return socket.destroy();
        connections[upstream]! += 1;
        open.add(socket);
        socket.once('close', () => {
          open.delete(socket);
          client.destroy();
        });
        socket.on('error', () => socket.destroy());
        client.once('close', () => socket.destroy());
        client.pipe(socket);
        socket.pipe(client);
        client.resume();
        return;
      }
      client.destroy();
    })();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve());
  });
  const { port } = server.address() as { port: number };
  return {
    address: `${host}:${port}`,
    connections,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of open) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
