/**
 * The Redis build queue's state changes, each one Lua script so that it is atomic across every
 * scheduler sharing the Redis: two schedulers cannot claim the same execution, complete it twice,
 * or requeue a task that its worker is completing. Scripts build their keys from the prefix in
 * ARGV[1] (one Redis node; not Redis Cluster), ARGV[2] is the caller's clock in ms, and the last
 * argument names the calling scheduler (its messages carry it, so that it skips its own).
 *
 * Keys under the prefix:
 * - `seq`: counter naming operations and executions; `ops` zset name by seq (ListOperations order)
 * - `op:<name>` hash: s seq, d digest, x execution seq, own response (cache hit / cancelled alone),
 *   c completion time; `done` zset name by completion (retention); `checking` zset name by
 *   creation while it has no execution yet
 * - `ex:<seq>` hash: d digest, p platform, nc doNotCache, pr priority, qm queue member, qa queued at,
 *   st stage, at attempts, cx cancel requested, to timeout, ld queued Action+Command, op first
 *   operation, in instance, qb queued bytes, r response; while running t task, w worker, tok lease token, ts started, tsync the
 *   worker's sync count when handed out. `exops:<seq>` set of the operations following it.
 * - `q:<platform>` zset member qm by priority (qm is the zero-padded seq: FIFO within a priority);
 *   `qplats` set of platforms with queued work; `qreq:<platform>` its required pairs; `qsize`;
 *   `qinst` and `qbytes` hashes instance -> queued executions and bytes (the per-instance limits)
 * - `inflight:<digest>` the cacheable execution of that action, for deduplication
 * - `task:<id>` its execution; `wtasks:<worker>` the worker's tasks; `wcancel:<worker>` cancellations
 *   to send; `workers` zset worker by the time its grace runs out; `wsync` hash worker -> sync count;
 *   `deadlines` zset task by action timeout + grace
 * Every visible change publishes `<origin> op <name>` on `events`; new work `<origin> work`; a
 * cancellation for a worker, or a slot of it freed (a task finished, lost or expired),
 * `<origin> worker <id>`.
 *
 * Responses written by the scripts themselves are `s:<code>:<message>` (a status only); responses
 * from JS are base64 ExecuteResponse bytes. redis-state.ts decodes both.
 */

import { LIBRARY } from './redis-script-library.js';

/** name -> body; each is prefixed with LIBRARY (redis-script-library.ts). */
const BODIES = {
  /**
   * ARGV: name, digest. Creates the operation and attaches it to the in-flight execution of the
   * action if there is one (when its Action could not be loaded). Returns the execution's seq, or false.
   */
  submit: `
local name, d = ARGV[3], ARGV[4]
create_op(name, d)
local x = redis.call('GET', P .. 'inflight:' .. d)
if x then
  attach(name, x, true)
  return x
end
redis.call('ZADD', P .. 'checking', NOW, name)
return false`,

  /** ARGV: name, digest, response. Creates an operation completed on its own (an action cache hit). */
  createCompleted: `
local name = ARGV[3]
create_op(name, ARGV[4])
redis.call('HSET', P .. 'op:' .. name, 'own', ARGV[5])
mark_done(name)
return 1`,

  /**
   * ARGV: name, digest, nocache, platform, priority, timeout, loaded, maxQueued, maxActionsPerInstance,
   * maxBytesPerInstance, instance, bytes, npairs, pairs..., then optionally the take arguments of an
   * idle worker of the caller's (see take_work). Creates the operation (its action cache lookup
   * missed, its Action is loaded) and attaches it to the action's execution in flight, or queues a new
   * one and claims work for that worker. Returns {'QUEUED', cancels, claims}, {'JOINED', seq} or
   * {'FULL', 'total'|'actions'|'bytes'} (the operation is created even then: the caller forgets it).
   */
  enqueue: `
local name, d, nc, plat = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local seq = create_op(name, d)
-- Until attached: if its caller dies before forgetting it (FULL), the sweep ends it.
redis.call('ZADD', P .. 'checking', NOW, name)
if nc == '0' then
  local x = redis.call('GET', P .. 'inflight:' .. d)
  if x then attach(name, x, true) return {'JOINED', x} end
end
if tonumber(redis.call('GET', P .. 'qsize') or '0') >= tonumber(ARGV[10]) then return {'FULL', 'total'} end
local inst, bytes = ARGV[13], tonumber(ARGV[14])
if tonumber(redis.call('HGET', P .. 'qinst', inst) or '0') >= tonumber(ARGV[11]) then return {'FULL', 'actions'} end
if tonumber(redis.call('HGET', P .. 'qbytes', inst) or '0') + bytes > tonumber(ARGV[12]) then return {'FULL', 'bytes'} end
-- The queue member: the zero-padded seq, so that members of one priority sort oldest first.
local qm = string.format('%016d', seq)
local ex = P .. 'ex:' .. seq
redis.call('HSET', ex, 'd', d, 'p', plat, 'nc', nc, 'pr', ARGV[7], 'qm', qm, 'qa', NOW, 'st', 'QUEUED', 'at', 0, 'cx', 0, 'to', ARGV[8], 'ld', ARGV[9], 'op', name, 'in', inst, 'qb', bytes)
local n = tonumber(ARGV[15])
for i = 1, n do redis.call('SADD', P .. 'qreq:' .. plat, ARGV[15 + i]) end
redis.call('SADD', P .. 'qplats', plat)
redis.call('ZADD', P .. 'q:' .. plat, ARGV[7], qm)
redis.call('INCR', P .. 'qsize')
count_queued(seq, 1)
if nc == '0' then redis.call('SET', P .. 'inflight:' .. d, seq) end
attach(name, seq, true)
-- Handed straight to an idle worker of the calling scheduler, if it named one (take arguments after
-- the pairs); the other schedulers' workers are woken only for what is still queued.
local taken = {{}, {}}
if #ARGV - 1 > 15 + n then taken = take_work(16 + n) end
if tonumber(redis.call('GET', P .. 'qsize') or '0') > 0 then publish('work') end
return {'QUEUED', taken[1], taken[2]}`,

  /** ARGV: the take arguments (see take_work). Returns {cancels, claims}. */
  take: `return take_work(3)`,

  /**
   * ARGV: worker, grace, maxAttempts, nlisted, listed..., then the take arguments (see take_work).
   * A worker synchronized: extends its grace, loses the tasks it no longer lists (handed out before
   * its previous call), takes its pending cancellations and claims work for its free slots.
   * Returns {cancels, listed ids the queue does not give this worker, claims}.
   */
  synchronize: `
local wid, grace, max = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local sync = redis.call('HINCRBY', P .. 'wsync', wid, 1)
redis.call('ZADD', P .. 'workers', NOW + grace, wid)
local listed = {}
for i = 1, tonumber(ARGV[6]) do listed[ARGV[6 + i]] = true end
for _, tid in ipairs(redis.call('SMEMBERS', P .. 'wtasks:' .. wid)) do
  if not listed[tid] then
    local seq = redis.call('GET', P .. 'task:' .. tid)
    local at = seq and tonumber(redis.call('HGET', P .. 'ex:' .. seq, 'tsync') or '0') or 0
    if not seq or at < sync - 1 then lose_task(tid, max, 'the worker no longer reports the task') end
  end
end
local unknown = {}
for i = 1, tonumber(ARGV[6]) do
  if redis.call('SISMEMBER', P .. 'wtasks:' .. wid, ARGV[6 + i]) == 0 then table.insert(unknown, ARGV[6 + i]) end
end
local taken = take_work(7 + tonumber(ARGV[6]))
return {taken[1], unknown, taken[2]}`,

  /** ARGV: name. Forgets an operation whatever its state (its Execute call failed before it was queued). */
  forget: `
forget(ARGV[3])
return 1`,

  /** ARGV: workers... Extends the grace of workers whose long-poll this scheduler holds. */
  heartbeat: `
local grace = tonumber(ARGV[3])
for i = 4, #ARGV - 1 do redis.call('ZADD', P .. 'workers', 'XX', NOW + grace, ARGV[i]) end
return 0`,

  /** ARGV: taskId. The task's execution, for admission: {seq, worker, token, current task, stage, cancel, digest, queuedAt} or false. */
  task: `
local seq = redis.call('GET', P .. 'task:' .. ARGV[3])
if not seq then return false end
local f = redis.call('HMGET', P .. 'ex:' .. seq, 'w', 'tok', 't', 'st', 'cx', 'd', 'qa', 'nc')
return {seq, f[1] or '', f[2] or '', f[3] or '', f[4] or '', f[5] or '0', f[6] or '', f[7] or '0', f[8] or '0'}`,

  /**
   * ARGV: taskId, response. Completes the task's execution if the task is still its current attempt
   * (as cancelled if it was cancelled while it ran). Returns {1, operations completed} if it did with
   * this response, {2, operations} if as cancelled, {0} if the task is not current, {-1} if unknown.
   */
  finish: `
local seq = redis.call('GET', P .. 'task:' .. ARGV[3])
if not seq then return {-1} end
local f = redis.call('HMGET', P .. 'ex:' .. seq, 'w', 't', 'st', 'cx')
local current = f[2] == ARGV[3] and f[3] == 'EXECUTING'
release_task(seq, ARGV[3], f[1], current)
if not current then return {0} end
if f[4] == '1' then return {2, complete_exec(seq, 's:1:The operation was cancelled while it ran')} end
return {1, complete_exec(seq, ARGV[4])}`,

  /** ARGV: taskId, maxAttempts, reason. */
  lose: `return lose_task(ARGV[3], tonumber(ARGV[4]), ARGV[5])`,

  /** ARGV: name. {digest, own, stage, response} of the operation, or false. */
  get: `
local op = redis.call('HMGET', P .. 'op:' .. ARGV[3], 'd', 'x', 'own')
if not op[1] then return false end
if op[3] then return {op[1], op[3], 'COMPLETED', ''} end
if not op[2] then return {op[1], '', 'CACHE_CHECK', ''} end
local ex = redis.call('HMGET', P .. 'ex:' .. op[2], 'st', 'r', 'p')
return {op[1], '', ex[1] or 'COMPLETED', ex[2] or '', ex[3] or ''}`,

  /**
   * ARGV: name. Returns 'NOTFOUND', 'DONE' (nothing to do), 'CANCELLED' (ended now) or 'KILLING'
   * (its worker was told to stop; it completes when the worker reports).
   */
  cancel: `
local name = ARGV[3]
local op = redis.call('HMGET', P .. 'op:' .. name, 's', 'x', 'own', 'c')
if not op[1] then return 'NOTFOUND' end
if op[3] or op[4] then return 'DONE' end
if not op[2] then
  redis.call('HSET', P .. 'op:' .. name, 'own', 's:1:The operation was cancelled before it was queued')
  mark_done(name)
  return 'CANCELLED'
end
local seq = op[2]
local ex = P .. 'ex:' .. seq
local f = redis.call('HMGET', ex, 'st', 'p', 'qm', 'w', 't', 'cx', 'd')
if f[1] == 'COMPLETED' or f[6] == '1' then return 'DONE' end
for _, other in ipairs(redis.call('SMEMBERS', P .. 'exops:' .. seq)) do
  if other ~= name and not redis.call('HGET', P .. 'op:' .. other, 'own') then
    redis.call('SREM', P .. 'exops:' .. seq, name)
    redis.call('HSET', P .. 'op:' .. name, 'own', 's:1:The operation was cancelled; the execution continues for other callers')
    mark_done(name)
    return 'CANCELLED'
  end
end
if f[1] == 'QUEUED' then
  if redis.call('ZREM', P .. 'q:' .. f[2], f[3]) == 1 then
    redis.call('DECR', P .. 'qsize')
    count_queued(seq, -1)
  end
  complete_exec(seq, 's:1:The operation was cancelled while queued')
  return 'CANCELLED'
end
redis.call('HSET', ex, 'cx', 1)
if redis.call('GET', P .. 'inflight:' .. f[7]) == seq then redis.call('DEL', P .. 'inflight:' .. f[7]) end
if not redis.call('ZSCORE', P .. 'workers', f[4]) then
  release_task(seq, f[5], f[4], true)
  complete_exec(seq, 's:1:The operation was cancelled; its worker is gone')
  return 'CANCELLED'
end
redis.call('SADD', P .. 'wcancel:' .. f[4], f[5])
publish('worker ' .. f[4])
return 'KILLING'`,

  /** ARGV: name. 'NOTFOUND', 'RUNNING' or 'DELETED'. */
  delete: `
local op = redis.call('HMGET', P .. 'op:' .. ARGV[3], 's', 'x', 'own', 'c')
if not op[1] then return 'NOTFOUND' end
if not op[3] and not op[4] then
  if not op[2] or redis.call('HGET', P .. 'ex:' .. op[2], 'st') ~= 'COMPLETED' then return 'RUNNING' end
end
forget(ARGV[3])
return 'DELETED'`,

  /**
   * ARGV: maxAttempts, forgetBefore, checkingBefore, limit. Time's housekeeping, safe on every
   * scheduler at once: workers past their grace lose their tasks, tasks past their deadline fail
   * DEADLINE_EXCEEDED, operations finished before forgetBefore are forgotten, operations that never
   * got an execution (their scheduler died while checking the cache) complete UNAVAILABLE.
   * Returns {workers lost, tasks expired, operations forgotten}.
   */
  sweep: `
local max, limit = tonumber(ARGV[3]), tonumber(ARGV[6])
local lost = 0
for _, wid in ipairs(redis.call('ZRANGEBYSCORE', P .. 'workers', '-inf', NOW, 'LIMIT', 0, limit)) do
  for _, tid in ipairs(redis.call('SMEMBERS', P .. 'wtasks:' .. wid)) do
    lose_task(tid, max, 'worker ' .. wid .. ' was not heard from within its grace')
  end
  redis.call('ZREM', P .. 'workers', wid)
  redis.call('HDEL', P .. 'wsync', wid)
  redis.call('DEL', P .. 'wtasks:' .. wid, P .. 'wcancel:' .. wid)
  lost = lost + 1
end
local expired = 0
for _, tid in ipairs(redis.call('ZRANGEBYSCORE', P .. 'deadlines', '-inf', NOW, 'LIMIT', 0, limit)) do
  local seq = redis.call('GET', P .. 'task:' .. tid)
  redis.call('ZREM', P .. 'deadlines', tid)
  if seq then
    local f = redis.call('HMGET', P .. 'ex:' .. seq, 'w', 't', 'st', 'to')
    local current = f[2] == tid and f[3] == 'EXECUTING'
    release_task(seq, tid, f[1], current)
    if current then
      redis.call('SADD', P .. 'wcancel:' .. f[1], tid)
      publish('worker ' .. f[1])
      complete_exec(seq, 's:4:Failed to execute the action: worker ' .. f[1] .. ' ran it past its timeout of ' .. f[4] .. ' ms')
      expired = expired + 1
    end
  end
end
local forgotten = 0
for _, name in ipairs(redis.call('ZRANGEBYSCORE', P .. 'done', '-inf', ARGV[4], 'LIMIT', 0, limit)) do
  forget(name)
  forgotten = forgotten + 1
end
for _, name in ipairs(redis.call('ZRANGEBYSCORE', P .. 'checking', '-inf', ARGV[5], 'LIMIT', 0, limit)) do
  redis.call('HSET', P .. 'op:' .. name, 'own', 's:14:The scheduler handling this operation went away before it was queued; retry it')
  mark_done(name)
end
return {lost, expired, forgotten}`,
} as const;

export type ScriptName = keyof typeof BODIES;

/**
 * Every script with the shared library in front, by name. A script answers {topics published, its
 * reply} (redis-state.ts unwraps it), so that its own scheduler wakes its local waiters at once
 * instead of when the message comes back through the subscription.
 */
export const SCRIPTS: Record<ScriptName, string> = Object.fromEntries(
  Object.entries(BODIES).map(([name, body]) => [name, `${LIBRARY}local function body()\n${body}\nend\nreturn {PUB, body()}`]),
) as Record<ScriptName, string>;
