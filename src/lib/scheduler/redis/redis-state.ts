/**
 * The Redis build queue's connection: the scripts of redis-scripts.ts behind typed methods, and the
 * values they store (through the codec the SQLite store uses too: state-codec.ts).
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { Code, StatusError } from '../../errors/status-error.js';
import type { reapi } from '../../proto/index.js';
import type { LoadedAction } from '../load-action.js';
import type { PlatformProperties } from '../platform-properties.js';
import { decodeLoaded, decodeResponse, encodeLoaded, encodeResponse } from '../state-codec.js';
import { SCRIPTS, type ScriptName } from './redis-scripts.js';
import { redactUrlPassword } from '../../util/redact-url.js';
import type { RedisTarget } from './redis-url.js';

type Reply = string | number | null | Reply[];

/** A response as the scripts store it: base64 ExecuteResponse bytes, or `s:<code>:<message>`. */
export function storeResponse(response: reapi.IExecuteResponse): string {
  return encodeResponse(response).toString('base64');
}

export function readResponse(text: string): reapi.IExecuteResponse {
  if (text.startsWith('s:')) {
    const second = text.indexOf(':', 2);
    return { status: { code: Number(text.slice(2, second)), message: text.slice(second + 1) } };
  }
  if (text === '') return { status: { code: Code.INTERNAL, message: 'The execution completed without a response' } };
  return decodeResponse(Buffer.from(text, 'base64'));
}

export function storeLoaded(loaded: LoadedAction): string {
  return encodeLoaded(loaded).toString('base64');
}

export function readLoaded(text: string, platform: PlatformProperties): LoadedAction {
  return decodeLoaded(Buffer.from(text, 'base64'), platform);
}

/** The pairs of a platform as the scripts compare them. */
export function platformPairs(platform: PlatformProperties): string[] {
  return platform.pairs().map((pair) => JSON.stringify(pair));
}

export class RedisState {
  /** Commands (scripts) and, separately, the subscription (a subscribed connection runs nothing else). */
  readonly commands: Redis;
  readonly subscriber: Redis;
  private readonly shas = new Map<ScriptName, string>();
  /** Names this scheduler in the messages its scripts publish. */
  private readonly origin = randomBytes(8).toString('hex');
  private onChange: (topic: string) => void = () => {};

  constructor(
    target: RedisTarget,
    /** Prefix of every key and of the channel. */
    readonly prefix: string,
  ) {
    const options = {
      host: target.host,
      port: target.port,
      db: target.db,
      ...(target.username ? { username: target.username } : {}),
      ...(target.password ? { password: target.password } : {}),
      lazyConnect: true,
      maxRetriesPerRequest: 2,
      enableOfflineQueue: true,
    };
    this.commands = new Redis(options);
    this.subscriber = new Redis(options);
    // Errors surface on the calls; without a listener ioredis would log them to stderr itself.
    this.commands.on('error', () => {});
    this.subscriber.on('error', () => {});
  }

  /**
   * Connects both connections, loads the scripts and subscribes; UNAVAILABLE if Redis is unreachable.
   * `onChange` gets every topic a script published: this scheduler's own as soon as the script
   * answers, the other schedulers' through the subscription.
   */
  async open(target: RedisTarget, onChange: (topic: string) => void): Promise<void> {
    try {
      await Promise.all([this.commands.connect(), this.subscriber.connect()]);
      for (const [name, source] of Object.entries(SCRIPTS)) this.shas.set(name as ScriptName, (await this.commands.script('LOAD', source)) as string);
      this.onChange = onChange;
      this.subscriber.on('message', (_channel: string, message: string) => {
        const space = message.indexOf(' ');
        if (space > 0 && message.slice(0, space) !== this.origin) onChange(message.slice(space + 1));
      });
      await this.subscriber.subscribe(this.prefix + 'events');
    } catch (err) {
      this.close();
      const where = redactUrlPassword(`redis://${target.host}:${target.port}/${target.db}`);
      throw StatusError.unavailable(`Failed to open the scheduler state at ${where}: ${(err as Error).message}`);
    }
  }

  /** Runs a script with `now` (ARGV[2]) and returns its reply; reloads it if Redis lost it (restarted). */
  async run(name: ScriptName, nowMs: number, ...args: (string | number)[]): Promise<Reply> {
    const argv = [this.prefix, nowMs, ...args, this.origin];
    let answer: Reply[];
    try {
      answer = (await this.commands.evalsha(this.shas.get(name)!, 0, ...argv)) as Reply[];
    } catch (err) {
      if (!/NOSCRIPT/.test((err as Error).message)) throw wrap(err);
      try {
        this.shas.set(name, (await this.commands.script('LOAD', SCRIPTS[name])) as string);
        answer = (await this.commands.evalsha(this.shas.get(name)!, 0, ...argv)) as Reply[];
      } catch (again) {
        throw wrap(again);
      }
    }
    const [published, reply] = answer as [string[], Reply?];
    for (const topic of published) this.onChange(topic);
    return reply ?? null;
  }

  close(): void {
    this.commands.disconnect();
    this.subscriber.disconnect();
  }
}

function wrap(err: unknown): StatusError {
  if (err instanceof StatusError) return err;
  // Connection trouble is retryable; a script error is a bug.
  const message = (err as Error).message ?? String(err);
  if (/ERR|WRONGTYPE/.test(message) && !/connect|Connection|ECONN|closed/i.test(message)) return StatusError.internal(`Failed to update the scheduler state in Redis: ${message}`, err);
  return StatusError.unavailable(`Failed to reach the scheduler state in Redis: ${message}`);
}
