package redisstore

// The session store's Lua scripts; session.go, session_undo.go and
// session_revoke.go run them.

// sessionLua is shared by the session scripts, which each work in one
// bucket whose tag is ARGV[1]. A session is a string of its fields ip, cl
// (client), c, e, l (times, see luaTime), r (refreshes), v ("1" when
// revoked) and sub, separated by newlines (the subject last, so that it may
// hold any byte; a string costs Redis a quarter of a hash's time). The
// bucket's live set scores "id client" by expiry in Unix microseconds; the
// client's set scores its live session IDs by LastIssuedAt; the load set
// scores each client by its live sessions. A live (unrevoked, unexpired)
// session is in all three; a revoked one keeps only its hash, until it
// expires. The keys a script builds share the bucket's hash tag, so they
// sit in its declared keys' slot.
const sessionLua = luaTime + `
local TAG = ARGV[1]
local LIVE, LOAD = TAG .. ':live', TAG .. ':load'
local function skey(id) return TAG .. ':s:' .. id end
local function ckey(client) return TAG .. ':c:' .. client end
-- load returns a session's fields {ip, cl, sub, c, e, l, r, v}, or {}.
local function load(id)
  local v = redis.call('GET', skey(id))
  if not v then return {} end
  local f, p = {}, 1
  for i = 1, 7 do
    local q = string.find(v, '\n', p, true)
    if not q then error(redis.error_reply('malformed session ' .. id)) end
    f[i], p = string.sub(v, p, q - 1), q + 1
  end
  return {f[1], f[2], string.sub(v, p), f[3], f[4], f[5], f[6], f[7]}
end
-- save stores fields h (as load returns them) under the session's key,
-- keeping its TTL, or setting ttl (ms) when given.
local function save(id, h, ttl)
  local v = table.concat({h[1], h[2], h[4], h[5], h[6], h[7], h[8], h[3]}, '\n')
  if ttl then return redis.call('SET', skey(id), v, 'PX', ttl) end
  redis.call('SET', skey(id), v, 'KEEPTTL')
end
local function live(h, now) return h[5] and before(now, T(h[5])) end
-- unlink takes a live session out of the bucket's sets (not its hash).
local function unlink(id, client)
  redis.call('ZREM', LIVE, id .. ' ' .. client)
  redis.call('ZREM', ckey(client), id)
  if tonumber(redis.call('ZINCRBY', LOAD, -1, client)) <= 0 then redis.call('ZREM', LOAD, client) end
end
-- trim unlinks and deletes the sessions expired at now, deciding the ties
-- of the same microsecond from the exact expiry.
local function trim(now)
  local us = string.format('%.0f', micros(now))
  local function drop(m)
    local id = string.sub(m, 1, 36)
    unlink(id, string.sub(m, 38))
    redis.call('DEL', skey(id))
  end
  local due = redis.call('ZRANGEBYSCORE', LIVE, '-inf', us, 'WITHSCORES')
  for i = 1, #due, 2 do
    local m = due[i]
    if due[i + 1] ~= us or not live(load(string.sub(m, 1, 36)), now) then drop(m) end
  end
end
local function ttl(key, ms)
  if redis.call('PTTL', key) < tonumber(ms) then redis.call('PEXPIRE', key, ms) end
end
`

// openScript: KEYS live, load, the session, the client's set, then the
// client's allowances; ARGV tag, now, id, ClientIP, Client, Subject,
// ExpiresAt, its score, TTL (ms), MaxPerClient, the bucket's cap, the
// subject step's verdict ("ok", or its refusal: then only the allowances
// are decided, to report theirs first), the number of allowances and their
// arguments. It returns {"ok", charged indexes, evicted sessions (id and
// fields)}, {"limit", position, wait (ns)}, {"full"}, {"exists"} or the
// verdict.
var openScript = newScript(allowanceLua + sessionLua + `
local now = T(ARGV[2])
trim(now)
local list = allowances(4, 13, tonumber(ARGV[13]))
local pos, wait = refusal(list)
if pos then return {'limit', pos, wait} end
if ARGV[12] ~= 'ok' then return {ARGV[12]} end
local id, client = ARGV[3], ARGV[5]
if redis.call('EXISTS', skey(id)) == 1 then return {'exists'} end
local maxc, cap = tonumber(ARGV[10]), tonumber(ARGV[11])
local mine, total = redis.call('ZCARD', ckey(client)), redis.call('ZCARD', LIVE)
local own = 0
if maxc > 0 and mine >= maxc then own = mine - maxc + 1 end
local function heaviest()
  local top = redis.call('ZREVRANGE', LOAD, 0, 0, 'WITHSCORES')
  return top[1], tonumber(top[2] or 0)
end
local victim
if cap > 0 and total - own >= cap then
  local n
  victim, n = heaviest()
  if victim == client or mine - own >= n then return {'full'} end
end
local evicted = {}
-- lru returns the client's least recently used live session.
local function lru(c)
  local best, bl
  for _, sid in ipairs(redis.call('ZRANGE', ckey(c), 0, -1)) do
    local l = T(load(sid)[6])
    if l and (not best or before(l, bl) or (not before(bl, l) and sid < best)) then best, bl = sid, l end
  end
  return best
end
local function evict(c)
  local sid = lru(c)
  if not sid then return false end
  local h = load(sid)
  table.insert(evicted, {sid, h})
  unlink(sid, c)
  redis.call('DEL', skey(sid))
  return true
end
for _ = 1, own do evict(client) end
if victim then evict(victim) end
local nows = ARGV[2]
save(id, {ARGV[4], client, ARGV[6], nows, ARGV[7], nows, '0', '0'}, ARGV[9])
redis.call('ZADD', LIVE, ARGV[8], id .. ' ' .. client)
redis.call('ZADD', ckey(client), string.format('%.0f', micros(now)), id)
ttl(ckey(client), ARGV[9])
redis.call('ZINCRBY', LOAD, 1, client)
return {'ok', charge(list), evicted}
`)

// refreshScript: KEYS live, load, the session, then the allowances; ARGV
// tag, now, id, ClientIP, Subject, MaxRefreshes, MinInterval (ns), the
// number of allowances and their arguments. It returns {result, fields,
// charged indexes and the LastIssuedAt it replaced, or the refusing
// allowance's position and wait}.
var refreshScript = newScript(allowanceLua + sessionLua + `
local now = T(ARGV[2])
local id = ARGV[3]
local h = load(id)
if not live(h, now) then return {'not_found'} end
if h[8] == '1' then return {'revoked', h} end
if h[1] ~= ARGV[4] or h[3] ~= ARGV[5] then return {'mismatch', h} end
if tonumber(h[7]) >= tonumber(ARGV[6]) then return {'limit', h} end
if tonumber(ARGV[7]) > 0 and before(now, add(T(h[6]), tonumber(ARGV[7]))) then return {'too_soon', h} end
local list = allowances(3, 8, tonumber(ARGV[8]))
local pos, wait = refusal(list)
if pos then return {'rate', h, pos, wait} end
local last = h[6]
h[6], h[7] = ARGV[2], tostring(tonumber(h[7]) + 1)
save(id, h)
redis.call('ZADD', ckey(h[2]), 'XX', string.format('%.0f', micros(now)), id)
return {'ok', h, charge(list), last}
`)

// giveBackScript: KEYS the session, then allowances to uncharge; ARGV tag,
// id, issuedAt, restore, the number of allowances and the indexes they were
// charged at.
var giveBackScript = newScript(allowanceLua + sessionLua + `
for i = 1, tonumber(ARGV[5]) do uncharge(KEYS[1 + i], tonumber(ARGV[5 + i])) end
local id = ARGV[2]
local h = load(id)
if not h[5] or h[8] == '1' or h[6] ~= ARGV[3] then return 0 end
h[6], h[7] = ARGV[4], tostring(math.max(0, tonumber(h[7]) - 1))
save(id, h)
redis.call('ZADD', ckey(h[2]), 'XX', string.format('%.0f', micros(T(ARGV[4]))), id)
return 1
`)

// revokeScript: KEYS live, load; ARGV tag, now, the subject the sessions
// must have (or "" for any), then the IDs. It returns, per ID, {result,
// fields}: "revoked" (now), "was" (already revoked) or "not_found".
var revokeScript = newScript(sessionLua + `
local now = T(ARGV[2])
local out = {}
for i = 4, #ARGV do
  local id = ARGV[i]
  local h = load(id)
  if not live(h, now) or (ARGV[3] ~= '' and h[3] ~= ARGV[3]) then
    out[#out + 1] = {'not_found'}
  elseif h[8] == '1' then
    out[#out + 1] = {'was', h}
  else
    h[8] = '1'
    save(id, h)
    unlink(id, h[2])
    out[#out + 1] = {'revoked', h}
  end
end
return out
`)

// deleteScript: KEYS live, load, the session; ARGV tag, id. It returns the
// deleted session's fields, or nothing.
var deleteScript = newScript(sessionLua + `
local id = ARGV[2]
local h = load(id)
if not h[5] then return {} end
redis.call('DEL', skey(id))
if h[8] ~= '1' then unlink(id, h[2]) end
return h
`)

// countScript: KEYS live, load; ARGV tag, now.
var countScript = newScript(sessionLua + `
trim(T(ARGV[2]))
return redis.call('ZCARD', LIVE)
`)

// subjectLua keeps a subject's index: a sorted set of "id expiry" members
// scored by expiry in Unix microseconds, trimmed as it goes.
const subjectLua = luaTime + `
local function utrim(key, now)
  local us = string.format('%.0f', micros(now))
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. us)
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', key, us, us)) do
    if not before(now, T(string.sub(m, 38))) then redis.call('ZREM', key, m) end
  end
end
`

// subjectOpenScript: KEYS the subject's index, then its allowances; ARGV
// now, the session's member and score, TTL (ms), MaxPerSubject, the number
// of allowances and their arguments. It returns {"ok", charged indexes},
// {"limit", position, wait} or {"too_many"}.
var subjectOpenScript = newScript(allowanceLua + subjectLua + `
utrim(KEYS[1], T(ARGV[1]))
local list = allowances(1, 6, tonumber(ARGV[6]))
local pos, wait = refusal(list)
if pos then return {'limit', pos, wait} end
local max = tonumber(ARGV[5])
if max > 0 and redis.call('ZCARD', KEYS[1]) >= max then return {'too_many'} end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
return {'ok', charge(list)}
`)

// subjectUndoScript: KEYS the subject's index, then allowances; ARGV the
// member to drop, the number of allowances, the indexes they were charged
// at.
var subjectUndoScript = newScript(allowanceLua + `
redis.call('ZREM', KEYS[1], ARGV[1])
for i = 1, tonumber(ARGV[2]) do uncharge(KEYS[1 + i], tonumber(ARGV[2 + i])) end
return 0
`)

// subjectListScript: KEYS the subject's index; ARGV now. It returns the
// members of the live sessions.
var subjectListScript = newScript(subjectLua + `
utrim(KEYS[1], T(ARGV[1]))
return redis.call('ZRANGE', KEYS[1], 0, -1)
`)

// allowScript: KEYS allowances; ARGV their number and arguments. It charges
// all or none and returns {"ok", charged indexes} or {"limit", position,
// wait}.
var allowScript = newScript(allowanceLua + `
local list = allowances(0, 1, tonumber(ARGV[1]))
local pos, wait = refusal(list)
if pos then return {'limit', pos, wait} end
return {'ok', charge(list)}
`)

// restoreScript: KEYS live, load; ARGV tag, now, the number of sessions,
// then each one's id, ClientIP, Client, Subject, CreatedAt, ExpiresAt,
// LastIssuedAt, Refreshes, its score and TTL (ms). It stores again each
// one that is not stored and has not expired at now, as Open stored it.
var restoreScript = newScript(sessionLua + `
local now = T(ARGV[2])
trim(now)
for i = 0, tonumber(ARGV[3]) - 1 do
  local j = 3 + i * 10
  local id, client = ARGV[j + 1], ARGV[j + 3]
  if redis.call('EXISTS', skey(id)) == 0 and before(now, T(ARGV[j + 6])) then
    save(id, {ARGV[j + 2], client, ARGV[j + 4], ARGV[j + 5], ARGV[j + 6], ARGV[j + 7], ARGV[j + 8], '0'}, ARGV[j + 10])
    redis.call('ZADD', LIVE, ARGV[j + 9], id .. ' ' .. client)
    redis.call('ZADD', ckey(client), string.format('%.0f', micros(T(ARGV[j + 7]))), id)
    ttl(ckey(client), ARGV[j + 10])
    redis.call('ZINCRBY', LOAD, 1, client)
  end
end
return 0
`)

// refundScript: KEYS allowances; ARGV their number, then each one's
// sub-window index (modulo 2^32) of the time it was charged at. It
// uncounts one event from each, where that sub-window still holds one.
var refundScript = newScript(allowanceLua + `
for i = 1, tonumber(ARGV[1]) do uncharge(KEYS[i], tonumber(ARGV[1 + i])) end
return 0
`)
