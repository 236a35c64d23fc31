/**
 * The bwrap runner's persistent sandboxes (sandbox-slot.ts), kept per network setting: an action
 * takes an idle slot of its kind; when none is idle but one of its kind is being reset, it waits for
 * that reset (a few ms) rather than start a sandbox (bwrap, namespaces, a node helper: tens of ms);
 * only when every slot of its kind is running an action does it start a new one. When an action is
 * done its slot is reset and becomes idle again. A slot whose helper died, or whose reset failed, is
 * destroyed and replaced by a fresh one on demand. The pool grows to the number of actions run at
 * once (the worker's slots), plus slots whose reset takes long.
 */
import * as path from 'node:path';
import { SandboxSlot, type SandboxSlotOptions } from './sandbox-slot.js';

/** Longest an action waits for a slot's reset before it starts a sandbox of its own (about what a start costs). */
const MAX_RESET_WAIT_MS = 50;

export type SandboxPoolOptions = Omit<SandboxSlotOptions, 'directory' | 'network'>;

export class SandboxPool {
  private readonly idle = new Map<string, SandboxSlot[]>();
  /** Resets in progress by kind, each resolving once its slot is idle (or discarded). */
  private readonly resetting = new Map<string, Set<Promise<void>>>();
  private readonly slots = new Set<SandboxSlot>();
  private next = 0;
  private closed = false;

  constructor(private readonly opts: SandboxPoolOptions) {}

  /** Number of live sandboxes (idle or in use), for tests and metrics. */
  get size(): number {
    return this.slots.size;
  }

  /** An idle sandbox with `network` under `directory` (the worker's `actions/.sandboxes`), else a new one. */
  async acquire(directory: string, network: boolean): Promise<SandboxSlot> {
    if (this.closed) throw new Error('Failed to start the sandbox: the runner is closed');
    const key = `${network}\0${directory}`;
    for (;;) {
      const idle = this.idle.get(key) ?? [];
      for (let slot = idle.pop(); slot; slot = idle.pop()) {
        if (slot.alive) return slot;
        await this.discard(slot);
      }
      const resets = this.resetting.get(key);
      if (!resets?.size) break;
      // Whichever reset ends first: its slot is idle then, unless another action took it meanwhile
      // or it was discarded (then look again). A reset that takes long (an action left a huge /tmp)
      // is not waited for beyond what starting a sandbox costs.
      const waited = new AbortController();
      const ended = await Promise.race([
        Promise.race(resets).then(() => true),
        this.opts.clock.sleep(MAX_RESET_WAIT_MS, waited.signal).then(
          () => false,
          () => false,
        ),
      ]);
      waited.abort();
      if (this.closed) throw new Error('Failed to start the sandbox: the runner is closed');
      if (!ended) break;
    }
    const slot = await SandboxSlot.start({ ...this.opts, directory: path.join(directory, `${network ? 'net' : 'nonet'}-${this.next++}`), network });
    this.slots.add(slot);
    if (this.closed) {
      await this.discard(slot);
      throw new Error('Failed to start the sandbox: the runner is closed');
    }
    return slot;
  }

  /** Resets `slot` for its next action and makes it idle; a slot that cannot be reset is destroyed. */
  async release(slot: SandboxSlot, directory: string, network: boolean): Promise<void> {
    if (this.closed || !slot.alive) return this.discard(slot);
    const key = `${network}\0${directory}`;
    const resets = this.resetting.get(key) ?? new Set<Promise<void>>();
    this.resetting.set(key, resets);
    const done = this.resetAndKeep(slot, key);
    resets.add(done);
    try {
      await done;
    } finally {
      resets.delete(done);
    }
  }

  private async resetAndKeep(slot: SandboxSlot, key: string): Promise<void> {
    try {
      await slot.reset();
    } catch {
      return this.discard(slot);
    }
    if (this.closed) return this.discard(slot);
    const idle = this.idle.get(key) ?? [];
    idle.push(slot);
    this.idle.set(key, idle);
  }

  /** Destroys every sandbox (those in use too: their actions are killed). */
  async close(): Promise<void> {
    this.closed = true;
    this.idle.clear();
    await Promise.all([...this.slots].map((s) => this.discard(s)));
  }

  private async discard(slot: SandboxSlot): Promise<void> {
    this.slots.delete(slot);
    await slot.destroy().catch(() => {});
  }
}
