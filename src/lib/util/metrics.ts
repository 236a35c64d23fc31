/**
 * Prometheus metrics (prom-client) without a global registry: every process builds one Registry
 * (`createMetricsRegistry`) and hands it to what it starts. Two servers in one process (`serve all`)
 * share it, so each metric family is created once per registry and looked up afterwards: the
 * get-or-create helpers below make that safe, and the servers tell their series apart by label.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type CounterConfiguration, type GaugeConfiguration, type HistogramConfiguration, type Metric } from 'prom-client';

export type { Registry } from 'prom-client';

/**
 * A registry with Node's process metrics (CPU, memory, event loop lag, handles). The event loop lag
 * is sampled every 100 ms, not prom-client's default 10 ms: a 10 ms timer woke an idle server 100
 * times a second (seen with strace), and lag worth alerting on is far longer than 100 ms anyway.
 */
export function createMetricsRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 100 });
  return registry;
}

/** Latency buckets in seconds, from a cached small blob (~100 µs) to a long action (~10 min). */
export const LATENCY_BUCKETS_SECONDS = [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 600];

function getOrCreate<M extends Metric>(registry: Registry, name: string, create: () => M, kind: abstract new (...args: never[]) => M): M {
  const existing = registry.getSingleMetric(name);
  if (existing === undefined) return create();
  if (!(existing instanceof kind)) throw new TypeError(`Metric ${name} is already registered with another type`);
  return existing as M;
}

export function counter<L extends string>(registry: Registry, config: Omit<CounterConfiguration<L>, 'registers'>): Counter<L> {
  return getOrCreate(registry, config.name, () => new Counter({ ...config, registers: [registry] }), Counter);
}

export function gauge<L extends string>(registry: Registry, config: Omit<GaugeConfiguration<L>, 'registers'>): Gauge<L> {
  return getOrCreate(registry, config.name, () => new Gauge({ ...config, registers: [registry] }), Gauge);
}

export function histogram<L extends string>(registry: Registry, config: Omit<HistogramConfiguration<L>, 'registers'>): Histogram<L> {
  return getOrCreate(registry, config.name, () => new Histogram({ buckets: LATENCY_BUCKETS_SECONDS, ...config, registers: [registry] }), Histogram);
}

/** Seconds elapsed since `start` (a `performance.now()` value). */
export function secondsSince(start: number): number {
  return (performance.now() - start) / 1000;
}

/** Sets the gauge's values; may be async (a shared build queue is read over the network). */
type GaugeSource<L extends string> = (set: (labels: Partial<Record<L, string>>, value: number) => void) => void | Promise<void>;
const gaugeSources = new WeakMap<Gauge<string>, Set<GaugeSource<string>>>();

/**
 * A gauge computed at scrape time from any number of sources (one per store or queue that has
 * such a value); each source sets its labelled values. Returns the function that removes the source
 * (call it when the object it reads is closed).
 */
export function collectedGauge<L extends string>(registry: Registry, config: Omit<GaugeConfiguration<L>, 'registers' | 'collect'>, source: GaugeSource<L>): () => void {
  const g = getOrCreate(
    registry,
    config.name,
    () => {
      const created: Gauge<L> = new Gauge<L>({
        ...config,
        registers: [registry],
        async collect() {
          // Values are gathered first and set together: a scrape never sees a half-reset gauge.
          const values: [Partial<Record<L, string>>, number][] = [];
          await Promise.all([...(gaugeSources.get(created as Gauge<string>) ?? [])].map((s) => s((labels, value) => values.push([labels, value]))));
          created.reset();
          for (const [labels, value] of values) created.set(labels, value);
        },
      });
      return created;
    },
    Gauge,
  ) as Gauge<L>;
  let sources = gaugeSources.get(g as Gauge<string>);
  if (!sources) gaugeSources.set(g as Gauge<string>, (sources = new Set()));
  sources.add(source as GaugeSource<string>);
  return () => sources.delete(source as GaugeSource<string>);
}
