/**
 * `serve all` in the test process, the way `bzutil serve all` builds it, on loopback port 0 with
 * in-memory stores, one worker slot, a metrics registry and the HTTP port (with the web UI).
 */
import { join } from 'node:path';
import type { BzutilConfig } from '../../src/lib/config/config.js';
import { resolveConfig } from '../../src/lib/config/resolve-config.js';
import { silentLogger } from '../../src/lib/util/logger.js';
import { createMetricsRegistry } from '../../src/lib/util/metrics.js';
import { createHttpServer } from '../../src/server/create-servers.js';
import type { HttpServer } from '../../src/server/http/http-server.js';
import { type ServeAll, startAll, uiOfServeAll } from '../../src/server/serve-all.js';

/** `extra` is merged into the config's overrides (e.g. `{ auth: { tokens_file } }`). */
export async function startServeAllInProcess(workDir: string, extra: Partial<BzutilConfig> = {}): Promise<{ all: ServeAll; http: HttpServer; close(): Promise<void> }> {
  const config = resolveConfig({
    role: 'all',
    overrides: {
      http: { listen_address: '127.0.0.1:0' },
      apiserver: { listen_address: '127.0.0.1:0' },
      // Memory state: a test never touches the user's ~/.cache.
      scheduler: { listen_address: '127.0.0.1:0', state: 'memory' },
      worker: { slots: 1, work_dir: join(workDir, 'work') },
      storage: { cas: { memory: { max_size_bytes: '64MiB' } }, action_cache: { memory: { max_size_bytes: '16MiB' } } },
      ...extra,
    },
  });
  const metrics = createMetricsRegistry();
  const all = await startAll(config, { logger: silentLogger, metrics });
  const http = await createHttpServer(config, { logger: silentLogger, metrics, ui: uiOfServeAll(all) }).catch(async (err: unknown) => {
    await all.close();
    throw err;
  });
  return {
    all,
    http: http!,
    close: async () => {
      await http?.close();
      await all.close();
    },
  };
}
