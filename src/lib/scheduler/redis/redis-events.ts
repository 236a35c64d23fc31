/**
 * Wake-ups across schedulers: every state change the scripts make is published on one channel
 * (`op <name>`, `work`, `worker <id>`), and each scheduler's subscriber wakes the local callers
 * watching that topic (followers of an operation, held worker polls). A topic carries no state: a
 * woken caller reads the state again from Redis, so a lost message only delays it until its
 * keep-alive or long-poll timeout.
 *
 * Watchers use versions so that a change between reading the state and starting to wait is not
 * missed: `version()` before the read, `waitPast(version)` after it.
 */
import { abortStatus } from '../../errors/status-error.js';
import type { Clock } from '../../util/clock.js';

interface Topic {
  version: number;
  watchers: number;
  readonly wakers: Set<() => void>;
}

export class RedisEvents {
  private readonly topics = new Map<string, Topic>();

  constructor(private readonly clock: Clock) {}

  /** Called for every message on the channel. */
  deliver(message: string): void {
    const topic = this.topics.get(message);
    if (!topic) return;
    topic.version++;
    for (const wake of [...topic.wakers]) wake();
  }

  /** Whether someone here watches `topic`. */
  isWatched(topic: string): boolean {
    return this.topics.has(topic);
  }

  /** Wakes every waiter (on close: they see the queue closing). */
  wakeAll(): void {
    for (const topic of this.topics.values()) {
      topic.version++;
      for (const wake of [...topic.wakers]) wake();
    }
  }

  /** Starts watching `names`; call `close()` when done. */
  watch(...names: string[]): Watch {
    const topics = names.map((name) => {
      let topic = this.topics.get(name);
      if (!topic) this.topics.set(name, (topic = { version: 0, watchers: 0, wakers: new Set() }));
      topic.watchers++;
      return topic;
    });
    const version = () => topics.reduce((sum, t) => sum + t.version, 0);
    return {
      version,
      waitPast: (seen, timeoutMs, signal) =>
        new Promise<void>((resolve, reject) => {
          if (version() !== seen || timeoutMs <= 0) return resolve();
          if (signal?.aborted) return reject(abortStatus(signal));
          const timer = new AbortController();
          let settled = false;
          const finish = (err?: unknown) => {
            if (settled) return;
            settled = true;
            for (const t of topics) t.wakers.delete(wake);
            timer.abort();
            signal?.removeEventListener('abort', onAbort);
            if (err === undefined) resolve();
            else reject(err);
          };
          const wake = () => finish();
          const onAbort = () => finish(abortStatus(signal!));
          for (const t of topics) t.wakers.add(wake);
          signal?.addEventListener('abort', onAbort, { once: true });
          this.clock.sleep(timeoutMs, timer.signal).then(
            () => finish(),
            () => {},
          );
        }),
      close: () => {
        names.forEach((name, i) => {
          const topic = topics[i]!;
          if (--topic.watchers === 0 && this.topics.get(name) === topic) this.topics.delete(name);
        });
      },
    };
  }
}

export interface Watch {
  /** Changes seen so far on the watched topics. */
  version(): number;
  /** Resolves once a change past `seen` arrives, or after `timeoutMs`; rejects on abort. */
  waitPast(seen: number, timeoutMs: number, signal?: AbortSignal): Promise<void>;
  close(): void;
}
