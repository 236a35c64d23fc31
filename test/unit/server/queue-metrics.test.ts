/**
 * The queue-length gauge by instance and required platform: actions queued on an in-memory build
 * queue without workers show up under their platform's `name=value` label; past
 * MAX_PLATFORM_LABELS distinct platforms the least-queued are summed under "other", so a client
 * cannot grow the series count without bound.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { PlatformProperties } from '../../../src/lib/scheduler/platform-properties.js';
import { silentLogger } from '../../../src/lib/util/logger.js';
import { createMetricsRegistry } from '../../../src/lib/util/metrics.js';
import { type ActionObserver, createActionObserver, MAX_PLATFORM_LABELS, platformLabel } from '../../../src/server/observability/action-observer.js';
import { createQueue, createStores, flush, uploadAction } from '../scheduler/scheduler-fixtures.js';

/** Values of `name` by label set, from Prometheus text. */
function series(text: string, name: string): { labels: Record<string, string>; value: number }[] {
  const out: { labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    out.push({ labels: Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1]!, l[2]!])), value: Number(m[3]) });
  }
  return out;
}

describe('bzutil_scheduler_queue_length', () => {
  let observer: ActionObserver | undefined;
  let close: (() => void) | undefined;
  afterEach(() => {
    observer?.close();
    close?.();
  });

  async function queueWith(specs: { platform?: [string, string][]; instanceName?: string; args?: string[] }[]) {
    const stores = createStores();
    const { queue, clock } = createQueue(stores);
    close = () => queue.close();
    const metrics = createMetricsRegistry();
    observer = createActionObserver({ buildQueue: queue, logger: silentLogger, clock, workerLeaseMs: 10_000, metrics });
    for (const spec of specs) {
      const action = await uploadAction(stores.cas, spec);
      const it = queue.execute({ actionDigest: action.actionDigest, skipCacheLookup: false, priority: 0 })[Symbol.asyncIterator]();
      await it.next(); // QUEUED: no worker is connected
    }
    await flush();
    return metrics;
  }

  it('counts queued actions per instance and platform, beside the per-stage gauge', async () => {
    const metrics = await queueWith([
      { platform: [['OSFamily', 'linux'], ['ISA', 'x86-64']], args: ['a'] },
      { platform: [['ISA', 'x86-64'], ['OSFamily', 'linux']], args: ['b'] },
      { platform: [['OSFamily', 'windows']], args: ['c'] },
      { args: ['d'] },
      { platform: [['OSFamily', 'linux'], ['ISA', 'x86-64']], instanceName: 'team', args: ['e'] },
    ]);
    const text = await metrics.metrics();
    const got = series(text, 'bzutil_scheduler_queue_length').map(({ labels, value }) => `${labels.instance}|${labels.platform}=${value}`).sort();
    expect(got).toEqual(['team|ISA=x86-64,OSFamily=linux=1', '|ISA=x86-64,OSFamily=linux=2', '|OSFamily=windows=1', '|none=1'].sort());
    const queued = series(text, 'bzutil_scheduler_operations').filter((s) => s.labels.stage === 'QUEUED');
    expect(queued.map((s) => `${s.labels.instance}=${s.value}`).sort()).toEqual(['=4', 'team=1']);
  });

  it(`keeps at most ${MAX_PLATFORM_LABELS} platform labels, the rest summed as "other"`, async () => {
    const specs = Array.from({ length: MAX_PLATFORM_LABELS + 8 }, (_, i) => ({ platform: [['pool', `p${i}`]] as [string, string][], args: [`x${i}`] }));
    // p0 is queued twice, so it is among the kept ones whatever the order of the rest.
    specs.push({ platform: [['pool', 'p0']], args: ['again'] });
    const metrics = await queueWith(specs);
    const got = series(await metrics.metrics(), 'bzutil_scheduler_queue_length');
    expect(got.length).toBe(MAX_PLATFORM_LABELS + 1);
    expect(got.find((s) => s.labels.platform === 'pool=p0')?.value).toBe(2);
    expect(got.find((s) => s.labels.platform === 'other')?.value).toBe(8);
    expect(got.reduce((n, s) => n + s.value, 0)).toBe(MAX_PLATFORM_LABELS + 9);
  });

  it('labels an empty platform "none" and cuts very long ones', () => {
    expect(platformLabel(PlatformProperties.empty())).toBe('none');
    expect(platformLabel(undefined)).toBe('unknown');
    const long = platformLabel(PlatformProperties.fromProto({ properties: [{ name: 'image', value: 'x'.repeat(500) }] }));
    expect(long.length).toBe(200);
    expect(long.endsWith('…')).toBe(true);
  });
});
