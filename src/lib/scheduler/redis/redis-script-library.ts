/**
 * The Lua every script of redis-scripts.ts starts with: its arguments' common head (key prefix,
 * clock, the calling scheduler), publishing, and the state changes several scripts share
 * (completing, requeuing or losing an execution, creating, attaching and forgetting operations,
 * claiming and taking work). See redis-scripts.ts for the keys.
 */

export const LIBRARY = `
local P = ARGV[1]
local NOW = tonumber(ARGV[2])
local ORIGIN = ARGV[#ARGV]
local PUB = {}
local function publish(msg)
  redis.call('PUBLISH', P .. 'events', ORIGIN .. ' ' .. msg)
  table.insert(PUB, msg)
end
local function mark_done(name)
  redis.call('HSET', P .. 'op:' .. name, 'c', NOW)
  redis.call('ZADD', P .. 'done', NOW, name)
  redis.call('ZREM', P .. 'checking', name)
  publish('op ' .. name)
end
local function touch_ops(seq)
  for _, name in ipairs(redis.call('SMEMBERS', P .. 'exops:' .. seq)) do publish('op ' .. name) end
end
local function release_task(seq, tid, wid, current)
  redis.call('DEL', P .. 'task:' .. tid)
  if wid then
    -- A freed slot: wake the worker's held poll (wherever it is) to take queued work at once.
    if redis.call('SREM', P .. 'wtasks:' .. wid, tid) == 1 then publish('worker ' .. wid) end
    redis.call('SREM', P .. 'wcancel:' .. wid, tid)
  end
  redis.call('ZREM', P .. 'deadlines', tid)
  if current then redis.call('HDEL', P .. 'ex:' .. seq, 't', 'w', 'tok', 'ts', 'tsync') end
end
-- Returns the operations it completed (those without a response of their own).
local function complete_exec(seq, resp)
  local ex = P .. 'ex:' .. seq
  redis.call('HSET', ex, 'st', 'COMPLETED', 'r', resp)
  redis.call('HDEL', ex, 'ld')
  local d = redis.call('HGET', ex, 'd')
  if d and redis.call('GET', P .. 'inflight:' .. d) == seq then redis.call('DEL', P .. 'inflight:' .. d) end
  local names = redis.call('SMEMBERS', P .. 'exops:' .. seq)
  if #names == 0 then redis.call('DEL', ex, P .. 'exops:' .. seq) end
  local done = {}
  for _, name in ipairs(names) do
    if not redis.call('HGET', P .. 'op:' .. name, 'own') then
      mark_done(name)
      table.insert(done, name)
    end
  end
  return done
end
-- What an instance has queued (queue-limits.ts): executions in qinst, bytes in qbytes, by instance.
local function count_queued(seq, sign)
  local f = redis.call('HMGET', P .. 'ex:' .. seq, 'in', 'qb')
  if not f[1] then return end
  local left = redis.call('HINCRBY', P .. 'qinst', f[1], sign)
  redis.call('HINCRBY', P .. 'qbytes', f[1], sign * tonumber(f[2] or '0'))
  if left <= 0 then redis.call('HDEL', P .. 'qinst', f[1]) redis.call('HDEL', P .. 'qbytes', f[1]) end
end
local function requeue(seq)
  local ex = P .. 'ex:' .. seq
  local f = redis.call('HMGET', ex, 'p', 'pr', 'qm')
  redis.call('HSET', ex, 'st', 'QUEUED')
  redis.call('ZADD', P .. 'q:' .. f[1], f[2], f[3])
  redis.call('SADD', P .. 'qplats', f[1])
  redis.call('INCR', P .. 'qsize')
  count_queued(seq, 1)
  touch_ops(seq)
  publish('work')
end
-- The worker of task tid is gone (or said it cannot run it): requeue its execution, or fail it
-- when it was cancelled or has used up its attempts.
local function lose_task(tid, max, reason)
  local seq = redis.call('GET', P .. 'task:' .. tid)
  if not seq then return 0 end
  local f = redis.call('HMGET', P .. 'ex:' .. seq, 'w', 'at', 'cx', 't', 'st')
  local current = f[4] == tid and f[5] == 'EXECUTING'
  release_task(seq, tid, f[1], current)
  if not current then return 0 end
  if f[3] == '1' then
    complete_exec(seq, 's:1:The operation was cancelled; its worker is gone')
  elseif tonumber(f[2]) >= max then
    complete_exec(seq, 's:14:Failed to execute the action: lost its worker on all ' .. f[2] .. ' attempts; last: ' .. reason)
  else
    requeue(seq)
  end
  return 1
end
local function forget(name)
  local x = redis.call('HGET', P .. 'op:' .. name, 'x')
  redis.call('DEL', P .. 'op:' .. name)
  redis.call('ZREM', P .. 'ops', name)
  redis.call('ZREM', P .. 'done', name)
  redis.call('ZREM', P .. 'checking', name)
  if x then
    redis.call('SREM', P .. 'exops:' .. x, name)
    if redis.call('SCARD', P .. 'exops:' .. x) == 0 and redis.call('HGET', P .. 'ex:' .. x, 'st') == 'COMPLETED' then
      redis.call('DEL', P .. 'ex:' .. x, P .. 'exops:' .. x)
    end
  end
end
-- quiet: the operation was created in this same Execute call, so only its caller follows it (and
-- reads the state after this script); nobody needs waking.
local function attach(name, seq, quiet)
  redis.call('HSET', P .. 'op:' .. name, 'x', seq)
  redis.call('SADD', P .. 'exops:' .. seq, name)
  redis.call('ZREM', P .. 'checking', name)
  if not quiet then publish('op ' .. name) end
end
local function create_op(name, d)
  local seq = redis.call('INCR', P .. 'seq')
  redis.call('HSET', P .. 'op:' .. name, 's', seq, 'd', d)
  redis.call('ZADD', P .. 'ops', seq, name)
  return seq
end
-- Claims the first queued execution (lowest priority, then oldest) whose platform the worker
-- offers, as task tid with lease token tok. Returns {seq, loaded, digest, queuedAt, firstOp, attempts} or false.
local function claim(wid, grace, tid, tok, offered)
  local bestPlat, bestScore, bestMember
  for _, plat in ipairs(redis.call('SMEMBERS', P .. 'qplats')) do
    local head = redis.call('ZRANGE', P .. 'q:' .. plat, 0, 0, 'WITHSCORES')
    if #head == 0 then
      redis.call('SREM', P .. 'qplats', plat)
      redis.call('DEL', P .. 'qreq:' .. plat)
    else
      local ok = true
      for _, pair in ipairs(redis.call('SMEMBERS', P .. 'qreq:' .. plat)) do
        if not offered[pair] then ok = false break end
      end
      local score = tonumber(head[2])
      if ok and (not bestPlat or score < bestScore or (score == bestScore and head[1] < bestMember)) then
        bestPlat, bestScore, bestMember = plat, score, head[1]
      end
    end
  end
  if not bestPlat then return false end
  redis.call('ZREM', P .. 'q:' .. bestPlat, bestMember)
  redis.call('DECR', P .. 'qsize')
  local seq = tostring(tonumber(bestMember))
  count_queued(seq, -1)
  local ex = P .. 'ex:' .. seq
  local sync = redis.call('HGET', P .. 'wsync', wid) or '0'
  redis.call('HSET', ex, 'st', 'EXECUTING', 't', tid, 'w', wid, 'tok', tok, 'ts', NOW, 'tsync', sync)
  local attempts = redis.call('HINCRBY', ex, 'at', 1)
  redis.call('SET', P .. 'task:' .. tid, seq)
  redis.call('SADD', P .. 'wtasks:' .. wid, tid)
  local f = redis.call('HMGET', ex, 'ld', 'd', 'qa', 'op', 'to')
  if f[5] and f[5] ~= '' then redis.call('ZADD', P .. 'deadlines', NOW + tonumber(f[5]) + grace, tid) end
  touch_ops(seq)
  return {seq, f[1] or '', f[2], f[3], f[4] or '', attempts}
end
-- The worker's pending cancellations and executions claimed for its free slots, from the take
-- arguments at ARGV[a]: worker, slots, grace, budget, k, k task ids, k lease tokens, npairs, pairs...
-- Claims while the worker has a free slot and the Actions handed out stay within budget bytes
-- (the first one always). Returns {cancels, {index into the ids, claim...}...}.
local function take_work(a)
  local wid, slots, grace, budget, k = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local cancels = redis.call('SMEMBERS', P .. 'wcancel:' .. wid)
  redis.call('DEL', P .. 'wcancel:' .. wid)
  local offered = {}
  local np = a + 5 + 2 * k
  for i = 1, tonumber(ARGV[np]) do offered[ARGV[np + i]] = true end
  local claims = {}
  local free = slots - redis.call('SCARD', P .. 'wtasks:' .. wid)
  for i = 1, math.min(k, free) do
    if budget <= 0 then break end
    local c = claim(wid, grace, ARGV[a + 4 + i], ARGV[a + 4 + k + i], offered)
    if not c then break end
    table.insert(c, 1, i)
    table.insert(claims, c)
    -- Loaded Actions are stored as base64: 3 bytes for 4 characters.
    budget = budget - math.floor(#c[3] * 3 / 4)
  end
  return {cancels, claims}
end
`;
