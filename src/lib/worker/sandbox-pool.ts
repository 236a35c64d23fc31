/**
 * The bwrap runner's persistent sandboxes (sandbox-slot.ts), kept per network setting: an action
 * takes an idle slot of its kind or, when none is idle, a new one; when it is done the slot is reset
 * and becomes idle again. A slot whose helper died, or whose reset failed, is destroyed and replaced
 * by a fresh one on demand. The pool grows to the number of actions run at once (the worker's slots)
 * plus those whose reset is still in progress.
 */
import * as path from 'node:path';
import { SandboxSlot, type SandboxSlotOptions } from './sandbox-slot.js';

export type SandboxPoolOptions = Omit<SandboxSlotOptions, 'directory' | 'network'>;

export class SandboxPool {
  private readonly idle = new Map<string, SandboxSlot[]>();
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
    const idle = this.idle.get(key) ?? [];
    for (let slot = idle.pop(); slot; slot = idle.pop()) {
      if (slot.alive) return slot;
      await this.discard(slot);
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
    try {
      await slot.reset();
    } catch {
      return this.discard(slot);
    }
    if (this.closed) return this.discard(slot);
    const key = `${network}\0${directory}`;
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
