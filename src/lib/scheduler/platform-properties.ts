/**
 * Platform matching between actions and workers. An action runs only on a worker that offers every
 * one of its properties with the same name and value; a worker may offer several values under one
 * name (e.g. `ISA=x86-64` and `ISA=x86-64-v3`), and may offer properties the action does not ask for.
 */
import type { reapi } from '../proto/index.js';

export class PlatformProperties {
  /** Sorted, deduplicated `name=value` pairs; `key` identifies equal platforms. */
  readonly key: string;
  private readonly values = new Map<string, Set<string>>();

  private constructor(pairs: readonly (readonly [string, string])[]) {
    for (const [name, value] of pairs) {
      let set = this.values.get(name);
      if (!set) this.values.set(name, (set = new Set()));
      set.add(value);
    }
    this.key = this.pairs()
      .map(([n, v]) => `${JSON.stringify(n)}=${JSON.stringify(v)}`)
      .join(',');
  }

  static fromProto(platform: reapi.IPlatform | null | undefined): PlatformProperties {
    return new PlatformProperties((platform?.properties ?? []).map((p) => [p.name ?? '', p.value ?? ''] as const));
  }

  static empty(): PlatformProperties {
    return new PlatformProperties([]);
  }

  get isEmpty(): boolean {
    return this.values.size === 0;
  }

  /** True when this (a worker's platform) offers every property of `required` (an action's). */
  satisfies(required: PlatformProperties): boolean {
    for (const [name, wanted] of required.values) {
      const offered = this.values.get(name);
      if (!offered) return false;
      for (const v of wanted) if (!offered.has(v)) return false;
    }
    return true;
  }

  /** All `[name, value]` pairs, sorted by name then value. */
  pairs(): [string, string][] {
    const out: [string, string][] = [];
    for (const [name, set] of this.values) for (const v of set) out.push([name, v]);
    return out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  }

  /** `{name=value, ...}` for messages. */
  toString(): string {
    return `{${this.pairs()
      .map(([n, v]) => `${n}=${v}`)
      .join(', ')}}`;
  }
}
