-- Every queue operation of the Redis backend, each one atomic: Redis runs a script to its end
-- before any other command, so checks and changes (max_messages, all-or-nothing batches, leases)
-- cannot interleave, however many workers and instances call it.
--
-- ARGV[1] is the operation, ARGV[2] the key prefix, ARGV[3] the time in ms to use as now, or ''
-- for Redis's own clock (tests step a clock through leases); the rest are the operation's arguments, passed
-- to it as one table (never unpack()ed: a batch may hold more values than Lua's stack allows).
-- Keys are built here from the prefix, so this needs a single Redis (not Redis Cluster). A reply is a table whose first element is 'ok' or an error code.
--
-- Keys of queue Q (under the prefix): names (set of every queue), next_id (message id counter),
-- q:Q:meta (hash: settings and counters), q:Q:ready (list of available messages, head first),
-- q:Q:leases (hash receipt -> message), q:Q:lease_deliveries (hash receipt -> deliveries),
-- q:Q:expiries (sorted set receipt by expiry in ms), q:Q:redeliveries (hash message id -> deliveries
-- of an available message that was leased before), q:Q:wake (list of tokens for long polls),
-- q:Q:notes (hash message id -> JSON note: last_nack_reason, dead_letter), q:Q:idem (hash
-- Idempotency-Key -> 'digest|size|first id|count') with q:Q:idem_expiries (sorted set key by expiry
-- in ms).
--
-- A message is stored as the memory backend stores it: an 8-byte little-endian id, an 8-byte
-- double enqueue time, then the JSON body.

local op, P, CLOCK_MS = ARGV[1], ARGV[2], ARGV[3]
local WAKE_TOKENS_MAX = 128
local CHUNK = 1000 -- below Lua's limit on unpack()ed arguments

local function key(queue, part)
  return P .. 'q:' .. queue .. ':' .. part
end

local function exists(queue)
  return redis.call('SISMEMBER', P .. 'names', queue) == 1
end

local function now_ms()
  if CLOCK_MS ~= '' then
    return tonumber(CLOCK_MS)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function push_all(command, list_key, items)
  for first = 1, #items, CHUNK do
    redis.call(command, list_key, unpack(items, first, math.min(first + CHUNK - 1, #items)))
  end
end

-- One token per message made available, for the long polls blocked on the wake list.
local function wake(queue, count)
  if count > 0 then
    local tokens = {}
    for i = 1, math.min(count, WAKE_TOKENS_MAX) do
      tokens[i] = '1'
    end
    redis.call('RPUSH', key(queue, 'wake'), unpack(tokens))
    redis.call('LTRIM', key(queue, 'wake'), -WAKE_TOKENS_MAX, -1)
  end
end

local function id_of(stored)
  return string.sub(stored, 1, 8)
end

-- The id as a number (exact: ids stay far below 2^53). Not a string comparison: Lua compares
-- strings with strcoll(), which follows the Redis server's locale.
local function id_number(stored)
  return (struct.unpack('<L', stored))
end

-- Ids start no lower than the time in microseconds, so that a Redis that lost its latest writes
-- (no persistence, or appendfsync everysec after a crash) never hands out an id again.
local function next_ids(count)
  local t = redis.call('TIME')
  local floor = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local first = math.max(tonumber(redis.call('GET', P .. 'next_id') or 0) + 1, floor)
  redis.call('SET', P .. 'next_id', string.format('%d', first + count - 1))
  return first
end

-- A message's note (see queues.message.note_members) as a table, or an empty one.
local function note_of(queue, id)
  local raw = redis.call('HGET', key(queue, 'notes'), id)
  return raw and cjson.decode(raw) or {}
end

local function set_note(queue, id, note)
  if next(note) == nil then
    redis.call('HDEL', key(queue, 'notes'), id)
  else
    redis.call('HSET', key(queue, 'notes'), id, cjson.encode(note))
  end
end

local function end_lease(queue, receipt)
  local stored = redis.call('HGET', key(queue, 'leases'), receipt)
  local deliveries = tonumber(redis.call('HGET', key(queue, 'lease_deliveries'), receipt))
  redis.call('HDEL', key(queue, 'leases'), receipt)
  redis.call('HDEL', key(queue, 'lease_deliveries'), receipt)
  redis.call('ZREM', key(queue, 'expiries'), receipt)
  return stored, deliveries
end

-- Put ended leases back at the head, oldest first, or dead-letter those out of deliveries; reason
-- goes into the dead letter's note (cjson.null for none). Returns per receipt {id, deliveries, 1 if
-- dead-lettered else 0}.
local function return_leases(queue, receipts, reason, now)
  local settings = redis.call('HMGET', key(queue, 'meta'), 'max_deliveries', 'dead_letter_queue')
  local limit, dead_letter_queue = tonumber(settings[1]), settings[2]
  local back, dead, results = {}, {}, {}
  for i, receipt in ipairs(receipts) do
    local stored, deliveries = end_lease(queue, receipt)
    local is_dead = limit ~= nil and deliveries >= limit
    if is_dead then
      dead[#dead + 1] = {stored, deliveries}
    else
      back[#back + 1] = {stored, deliveries}
    end
    results[i] = {id_of(stored), deliveries, is_dead and 1 or 0}
  end
  -- Newest first, since each LPUSH goes in front of the one before.
  table.sort(back, function(a, b) return id_number(a[1]) > id_number(b[1]) end)
  -- Leases due at one instant come in receipt order: the dead-letter queue keeps the queue's order.
  table.sort(dead, function(a, b) return id_number(a[1]) < id_number(b[1]) end)
  for _, item in ipairs(back) do
    redis.call('LPUSH', key(queue, 'ready'), item[1])
    redis.call('HSET', key(queue, 'redeliveries'), id_of(item[1]), item[2])
  end
  wake(queue, #back)
  if #dead > 0 then
    local stored_dead = {}
    for i, item in ipairs(dead) do
      local id = id_of(item[1])
      local note = note_of(queue, id)
      redis.call('HDEL', key(queue, 'notes'), id)
      note.dead_letter = {source_queue = queue, deliveries = item[2], dead_lettered_at = now / 1000,
        reason = reason}
      set_note(dead_letter_queue, id, note)
      stored_dead[i] = item[1]
    end
    push_all('RPUSH', key(dead_letter_queue, 'ready'), stored_dead)
    redis.call('HINCRBY', key(dead_letter_queue, 'meta'), 'pushed_total', #dead)
    redis.call('HINCRBY', key(queue, 'meta'), 'dead_lettered_total', #dead)
    wake(dead_letter_queue, #dead)
  end
  return results
end

local function expire(queue, now)
  local due = redis.call('ZRANGEBYSCORE', key(queue, 'expiries'), '-inf', now)
  if #due > 0 then
    return_leases(queue, due, 'lease_expired', now)
  end
  return #due
end

local function size(queue)
  return redis.call('LLEN', key(queue, 'ready')) + redis.call('HLEN', key(queue, 'leases'))
end

-- Drop every message of a queue, leased ones included, keeping its settings and counters.
local function clear(queue)
  redis.call('DEL', key(queue, 'ready'), key(queue, 'leases'), key(queue, 'lease_deliveries'),
    key(queue, 'expiries'), key(queue, 'redeliveries'), key(queue, 'notes'), key(queue, 'wake'))
end

-- The first push's reply under an Idempotency-Key, after dropping the expired keys of the queue.
local function remembered(queue, idem_key, now)
  local expiries = key(queue, 'idem_expiries')
  local expired = redis.call('ZRANGEBYSCORE', expiries, '-inf', now, 'LIMIT', 0, 100)
  if #expired > 0 then
    redis.call('HDEL', key(queue, 'idem'), unpack(expired))
    redis.call('ZREM', expiries, unpack(expired))
  end
  -- Only the first 100 expired keys go per call: the key asked for may be expired beyond them.
  local expires = redis.call('ZSCORE', expiries, idem_key)
  if expires and tonumber(expires) <= now then
    return false
  end
  return redis.call('HGET', key(queue, 'idem'), idem_key)
end

-- The meta fields that QueueInfo shows, in its order: queues/queue_info.py's STORED, filled in by
-- queues/redis_manager.py when it loads this script.
local INFO_FIELDS = {--[[STORED]]}

local operations = {}

function operations.create(args)
  local name, max_messages, schema, created_at, max_deliveries, dead_letter_queue = unpack(args, 1, 6)
  if exists(name) then
    return {'queue_exists'}
  end
  if dead_letter_queue ~= '' then
    if not exists(dead_letter_queue) then
      return {'dead_letter_queue_missing'}
    end
    if redis.call('HGET', key(dead_letter_queue, 'meta'), 'dead_letter_queue') ~= '' then
      return {'dead_letter_queue_chained'}
    end
  end
  redis.call('HSET', key(name, 'meta'), 'max_messages', max_messages, 'schema', schema,
    'created_at', created_at, 'max_deliveries', max_deliveries, 'dead_letter_queue', dead_letter_queue,
    'pushed_total', 0, 'pulled_total', 0, 'acked_total', 0, 'dead_lettered_total', 0)
  redis.call('SADD', P .. 'names', name)
  return {'ok'}
end

function operations.delete(args)
  local name = args[1]
  if not exists(name) then
    return {'queue_not_found'}
  end
  local users = {}
  for _, other in ipairs(redis.call('SMEMBERS', P .. 'names')) do
    if redis.call('HGET', key(other, 'meta'), 'dead_letter_queue') == name then
      users[#users + 1] = other
    end
  end
  if #users > 0 then
    table.sort(users)
    table.insert(users, 1, 'queue_in_use')
    return users
  end
  local deleted = size(name)
  redis.call('DEL', key(name, 'meta'), key(name, 'idem'), key(name, 'idem_expiries'))
  clear(name)
  redis.call('SREM', P .. 'names', name)
  return {'ok', deleted}
end

function operations.purge(args)
  local name = args[1]
  if not exists(name) then
    return {'queue_not_found'}
  end
  local purged = size(name)
  clear(name)
  return {'ok', purged}
end

-- args: name, enqueued_at, Idempotency-Key ('' for none), body digest, key lifetime in ms, the
-- schema the bodies were checked against ('=' and its name, '=' alone for none; '' for any), then
-- the bodies. Replies {'ok', size after, first id as a string}, {'replayed', size, first id, count}
-- for a key pushed before with the same digest, {'idempotency_key_reused'} or {'schema_changed'}.
function operations.push(args)
  local name, count = args[1], #args - 6
  if not exists(name) then
    return {'queue_not_found'}
  end
  if args[6] ~= '' and args[6] ~= '=' .. redis.call('HGET', key(name, 'meta'), 'schema') then
    return {'schema_changed'}
  end
  local idem_key, digest, now = args[3], args[4], nil
  if idem_key ~= '' then
    now = now_ms()
    local first_reply = remembered(name, idem_key, now)
    if first_reply then
      local was_digest, was_size, was_first, was_count = string.match(first_reply, '^(.-)|(%d+)|(%d+)|(%d+)$')
      if was_digest ~= digest then
        return {'idempotency_key_reused'}
      end
      return {'replayed', tonumber(was_size), was_first, tonumber(was_count)}
    end
  end
  local held = size(name)
  local max_messages = tonumber(redis.call('HGET', key(name, 'meta'), 'max_messages'))
  if held + count > max_messages then
    return {'queue_full', held, max_messages}
  end
  local first = next_ids(count)
  local at = tonumber(args[2])
  local stored = {}
  for i = 1, count do
    stored[i] = struct.pack('<Ld', first + i - 1, at) .. args[i + 6]
  end
  push_all('RPUSH', key(name, 'ready'), stored)
  redis.call('HINCRBY', key(name, 'meta'), 'pushed_total', count)
  wake(name, count)
  if idem_key ~= '' then
    redis.call('HSET', key(name, 'idem'), idem_key,
      string.format('%s|%d|%d|%d', digest, held + count, first, count))
    redis.call('ZADD', key(name, 'idem_expiries'), now + tonumber(args[5]), idem_key)
  end
  return {'ok', held + count, string.format('%d', first)}
end

-- args: name, count, lease seconds, then one receipt per message wanted (with a lease). Without
-- lease seconds ('') the messages are removed; with them they go into flight, one receipt each.
-- Replies {'ok', message, note...} or {'ok', expires_ms, message, deliveries, note, message,
-- deliveries, note...}; a note is its JSON, or '' for none.
function operations.pull(args)
  local name, count, lease_seconds = args[1], args[2], args[3]
  if not exists(name) then
    return {'queue_not_found'}
  end
  local now = now_ms()
  expire(name, now)
  local ready = key(name, 'ready')
  local available = math.min(tonumber(count), redis.call('LLEN', ready))
  if available == 0 then
    -- Tokens only mean "messages may be there": with none there, a waiting pull should block.
    redis.call('DEL', key(name, 'wake'))
    return {'ok'}
  end
  local taken = redis.call('LPOP', ready, available)
  local redeliveries = key(name, 'redeliveries')
  local notes = key(name, 'notes')
  local noted = redis.call('HLEN', notes) > 0
  local reply = {'ok'}
  if lease_seconds == '' then
    local known = redis.call('HLEN', redeliveries) > 0
    for _, stored in ipairs(taken) do
      if known then
        redis.call('HDEL', redeliveries, id_of(stored))
      end
      reply[#reply + 1] = stored
      reply[#reply + 1] = noted and redis.call('HGET', notes, id_of(stored)) or ''
      if noted then
        redis.call('HDEL', notes, id_of(stored))
      end
    end
  else
    local expires = now + tonumber(lease_seconds) * 1000
    reply[2] = expires
    for i, stored in ipairs(taken) do
      local deliveries = (tonumber(redis.call('HGET', redeliveries, id_of(stored))) or 0) + 1
      redis.call('HDEL', redeliveries, id_of(stored))
      local receipt = args[i + 3]
      redis.call('HSET', key(name, 'leases'), receipt, stored)
      redis.call('HSET', key(name, 'lease_deliveries'), receipt, deliveries)
      redis.call('ZADD', key(name, 'expiries'), expires, receipt)
      reply[#reply + 1] = stored
      reply[#reply + 1] = deliveries
      reply[#reply + 1] = noted and redis.call('HGET', notes, id_of(stored)) or ''
    end
  end
  redis.call('HINCRBY', key(name, 'meta'), 'pulled_total', available)
  if redis.call('LLEN', ready) == 0 then
    redis.call('DEL', key(name, 'wake'))
  elseif redis.call('LLEN', key(name, 'wake')) == 0 then
    -- Messages are left and no token says so (a push makes at most WAKE_TOKENS_MAX): pass the
    -- wake-up on to the next waiting pull, as the memory backend does.
    wake(name, 1)
  end
  return reply
end

-- args: name, then the receipts. All or none: an unknown or repeated receipt refuses them all,
-- replying {'receipt_invalid', index of each unknown one (from 0)...}.
function operations.ack(args)
  local name = args[1]
  if not exists(name) then
    return {'queue_not_found'}
  end
  expire(name, now_ms())
  local receipts, reply, seen, repeated = {}, {'receipt_invalid'}, {}, false
  for i = 2, #args do
    local receipt = args[i]
    receipts[#receipts + 1] = receipt
    if redis.call('HEXISTS', key(name, 'leases'), receipt) == 0 then
      reply[#reply + 1] = i - 2
    end
    repeated = repeated or seen[receipt] ~= nil
    seen[receipt] = true
  end
  if #reply > 1 or repeated then
    return reply
  end
  for _, receipt in ipairs(receipts) do
    local stored = end_lease(name, receipt)
    redis.call('HDEL', key(name, 'notes'), id_of(stored))
  end
  redis.call('HINCRBY', key(name, 'meta'), 'acked_total', #receipts)
  return {'ok', #receipts}
end

-- args: name, receipt, delay seconds, '1' if a reason is given, the reason, the receipt that
-- holds the message hidden during a delay. A message on its last delivery is dead-lettered at once.
function operations.nack(args)
  local name, receipt, delay, has_reason, reason, hidden = unpack(args, 1, 6)
  if not exists(name) then
    return {'queue_not_found'}
  end
  local now = now_ms()
  expire(name, now)
  local stored = redis.call('HGET', key(name, 'leases'), receipt)
  if not stored then
    return {'receipt_invalid'}
  end
  local note = note_of(name, id_of(stored))
  note.last_nack_reason = has_reason == '1' and reason or nil
  set_note(name, id_of(stored), note)
  local deliveries = tonumber(redis.call('HGET', key(name, 'lease_deliveries'), receipt))
  local limit = tonumber(redis.call('HGET', key(name, 'meta'), 'max_deliveries'))
  if tonumber(delay) > 0 and (limit == nil or deliveries < limit) then
    -- Still leased, under a receipt no worker holds, until the delay is over.
    end_lease(name, receipt)
    redis.call('HSET', key(name, 'leases'), hidden, stored)
    redis.call('HSET', key(name, 'lease_deliveries'), hidden, deliveries)
    redis.call('ZADD', key(name, 'expiries'), now + tonumber(delay) * 1000, hidden)
    return {'ok', id_of(stored), deliveries, 0}
  end
  local result = return_leases(name, {receipt}, has_reason == '1' and reason or cjson.null, now)[1]
  return {'ok', result[1], result[2], result[3]}
end

-- args: name, offset, count, 'leased' or ''. Replies {'ok', total, then per message: stored,
-- deliveries, note ('' for none), and with 'leased' the lease's expiry in ms}.
function operations.browse(args)
  local name, offset, count, leased = args[1], tonumber(args[2]), tonumber(args[3]), args[4] == 'leased'
  if not exists(name) then
    return {'queue_not_found'}
  end
  local notes = key(name, 'notes')
  local reply = {'ok'}
  if not leased then
    reply[2] = redis.call('LLEN', key(name, 'ready'))
    for _, stored in ipairs(redis.call('LRANGE', key(name, 'ready'), offset, offset + count - 1)) do
      local id = id_of(stored)
      reply[#reply + 1] = stored
      reply[#reply + 1] = tonumber(redis.call('HGET', key(name, 'redeliveries'), id)) or 0
      reply[#reply + 1] = redis.call('HGET', notes, id) or ''
    end
    return reply
  end
  local pairs_ = redis.call('HGETALL', key(name, 'leases'))
  local leases = {}
  for i = 1, #pairs_, 2 do
    leases[#leases + 1] = {pairs_[i], pairs_[i + 1]}
  end
  table.sort(leases, function(a, b) return id_number(a[2]) < id_number(b[2]) end)
  reply[2] = #leases
  for i = offset + 1, math.min(offset + count, #leases) do
    local receipt, stored = leases[i][1], leases[i][2]
    reply[#reply + 1] = stored
    reply[#reply + 1] = tonumber(redis.call('HGET', key(name, 'lease_deliveries'), receipt))
    reply[#reply + 1] = redis.call('HGET', notes, id_of(stored)) or ''
    reply[#reply + 1] = redis.call('ZSCORE', key(name, 'expiries'), receipt)
  end
  return reply
end

-- args: the dead-letter queue, then pairs of (stored message, destination). Moves each message
-- still available in the queue to its destination's tail, deliveries 0, its note dropped; one
-- whose destination is gone stays; the first full destination stops it. Replies {'ok' or 'full',
-- kept, destination, moved, destination, moved...}.
function operations.redrive(args)
  local name = args[1]
  if not exists(name) then
    return {'queue_not_found'}
  end
  local moved, order, kept, status = {}, {}, 0, 'ok'
  for i = 2, #args, 2 do
    local stored, destination = args[i], args[i + 1]
    if not exists(destination) then
      kept = kept + 1
    elseif size(destination) + 1 > tonumber(redis.call('HGET', key(destination, 'meta'), 'max_messages')) then
      status = 'full'
      break
    elseif redis.call('LREM', key(name, 'ready'), 1, stored) == 1 then
      local id = id_of(stored)
      redis.call('HDEL', key(name, 'notes'), id)
      redis.call('HDEL', key(name, 'redeliveries'), id)
      redis.call('RPUSH', key(destination, 'ready'), stored)
      redis.call('HINCRBY', key(destination, 'meta'), 'pushed_total', 1)
      wake(destination, 1)
      if moved[destination] == nil then
        order[#order + 1] = destination
      end
      moved[destination] = (moved[destination] or 0) + 1
    end
  end
  local reply = {status, kept}
  for _, destination in ipairs(order) do
    reply[#reply + 1] = destination
    reply[#reply + 1] = moved[destination]
  end
  return reply
end

function operations.extend(args)
  local name, receipt, seconds = args[1], args[2], args[3]
  if not exists(name) then
    return {'queue_not_found'}
  end
  local now = now_ms()
  expire(name, now)
  local stored = redis.call('HGET', key(name, 'leases'), receipt)
  if not stored then
    return {'receipt_invalid'}
  end
  local expires = now + tonumber(seconds) * 1000
  redis.call('ZADD', key(name, 'expiries'), expires, receipt)
  return {'ok', id_of(stored), expires}
end

function operations.expire_all(args)
  local now, ended = now_ms(), 0
  for _, name in ipairs(redis.call('SMEMBERS', P .. 'names')) do
    ended = ended + expire(name, now)
  end
  return {'ok', ended}
end

-- QueueInfo fields of the named queue, or of every queue when no name is given.
function operations.info(args)
  local names = args
  if #names == 0 then
    names = redis.call('SMEMBERS', P .. 'names')
  end
  local reply = {'ok'}
  for _, name in ipairs(names) do
    if exists(name) then
      local fields = redis.call('HMGET', key(name, 'meta'), unpack(INFO_FIELDS))
      local head = redis.call('LINDEX', key(name, 'ready'), 0)
      reply[#reply + 1] = {name, size(name), redis.call('HLEN', key(name, 'leases')),
        head and string.sub(head, 1, 16) or '', unpack(fields)}
    end
  end
  return reply
end

local args = {}
for i = 4, #ARGV do
  args[i - 3] = ARGV[i]
end
return operations[op](args)
