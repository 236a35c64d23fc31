/**
 * How the durable state stores (SQLite, Redis) write the scheduler's values: digests as their key
 * text, platforms as sorted pairs in JSON, ExecuteResponses and queued Actions as protobuf bytes.
 * One codec, so that both backends read each other's values the same way.
 */
import { Digest } from '../digest/digest.js';
import type { DigestFunction } from '../digest/digest-function.js';
import { reapi, workerapi } from '../proto/index.js';
import { durationToMs, msToDuration } from '../proto/proto-time.js';
import type { LoadedAction } from './load-action.js';
import { PlatformProperties } from './platform-properties.js';

export function digestText(d: Digest): string {
  return d.key;
}

export function digestFromText(text: string): Digest {
  const [instanceName, fn, hash, size] = text.split('\u0000');
  return Digest.create(instanceName!, fn as DigestFunction, hash!, Number(size));
}

/** The platform as sorted `[name, value]` pairs in JSON. */
export function platformText(platform: PlatformProperties): string {
  return JSON.stringify(platform.pairs());
}

export function platformFromText(text: string): PlatformProperties {
  const pairs = JSON.parse(text) as [string, string][];
  return PlatformProperties.fromProto({ properties: pairs.map(([name, value]) => ({ name, value })) });
}

export function encodeResponse(response: reapi.IExecuteResponse): Buffer {
  return Buffer.from(reapi.ExecuteResponse.encode(response).finish());
}

export function decodeResponse(bytes: Buffer): reapi.IExecuteResponse {
  return reapi.ExecuteResponse.decode(bytes);
}

/** The Action, Command, timeout and handed-over inputs, in the Task message that carries them anyway. */
export function encodeLoaded(loaded: LoadedAction): Buffer {
  return Buffer.from(
    workerapi.Task.encode({
      action: loaded.action,
      command: loaded.command,
      timeout: msToDuration(loaded.timeoutMs),
      ...(loaded.inputDirectories ? { inputDirectories: loaded.inputDirectories } : {}),
    }).finish(),
  );
}

export function decodeLoaded(bytes: Buffer, platform: PlatformProperties): LoadedAction {
  const task = workerapi.Task.decode(bytes);
  return {
    action: reapi.Action.fromObject(reapi.Action.toObject(task.action as reapi.Action)),
    command: reapi.Command.fromObject(reapi.Command.toObject(task.command as reapi.Command)),
    timeoutMs: durationToMs(task.timeout),
    platform,
    sizeBytes: bytes.length,
    ...(task.inputDirectories.length > 0 ? { inputDirectories: task.inputDirectories } : {}),
  };
}
