package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/realtimeauth/realtimeauth"
	"github.com/redis/go-redis/v9"
)

// SessionStore is a realtimeauth.SessionStore kept in Redis, so that a
// session opened on one instance refreshes on another and every cap and
// allowance holds across instances. It decides with the times the caller
// passes (never Redis's clock), exactly as realtimeauth.MemoryStore does
// with the same times, with two documented differences that come from
// spreading the keys over buckets (see Keys in the package doc):
//
//   - MaxSessions is applied per bucket: each bucket holds at most
//     ceil(MaxSessions/buckets) live sessions and, when full, evicts the
//     least recently used session of its own heaviest client (or refuses
//     with realtimeauth.ErrStoreFull when the client is among the bucket's
//     heaviest). With WithBuckets(1) the cap is exact across the store.
//   - An authenticated Open or Refresh runs two scripts, the subject's
//     bucket first for Open (its "s:" allowances and the subject cap, which
//     it reserves) and second for Refresh (after the session checks), and
//     takes the first step back when the second refuses. Each script is
//     atomic, so every cap and allowance holds exactly; while a step that
//     is later taken back is in flight, a concurrent request of the same
//     subject or session may be refused where it would otherwise pass,
//     never the other way round.
//
// Open evicting an authenticated session, Revoke and Delete of one, and
// RevokeSubject also update the subject's index in its own bucket, one
// round trip more. Should that step fail, the subject's index counts the
// session until it expires: the subject cap can refuse early, never admit
// more.
type SessionStore struct {
	client redis.UniversalClient
	cfg    config
}

var _ realtimeauth.SessionStore = (*SessionStore)(nil)

// sessionGrace is how long Redis keeps a session past its ExpiresAt, so
// that an instance whose clock is a little behind still finds it.
const sessionGrace = time.Second

// NewSessionStore returns a SessionStore. It checks maxmemory-policy (see
// WithoutPolicyCheck) and loads the scripts. Options: WithPrefix,
// WithBuckets, WithoutPolicyCheck.
func NewSessionStore(ctx context.Context, client redis.UniversalClient, opts ...Option) (*SessionStore, error) {
	c, err := newConfig(ctx, client, opts)
	if err != nil {
		return nil, err
	}
	return &SessionStore{client: client, cfg: c}, nil
}

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
if before(now, add(T(h[6]), tonumber(ARGV[7]))) then return {'too_soon', h} end
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

// newID returns a fresh v4 UUID whose first 16 bits, modulo the bucket
// count, are bucket b: 122-16+log2(buckets) random bits remain.
func (s *SessionStore) newID(b int) (string, error) {
	u, err := uuid.NewRandom()
	if err != nil {
		return "", wrap("session ID", err)
	}
	n := s.cfg.buckets
	x := int(u[0])<<8 | int(u[1])
	x = x - x%n + b
	if x > 0xffff {
		x -= n
	}
	u[0], u[1] = byte(x>>8), byte(x)
	return u.String(), nil
}

// idBucket returns the bucket an ID names, or false when the ID is not a
// canonical lower-case UUID (no such session).
func (s *SessionStore) idBucket(id string) (int, bool) {
	u, err := uuid.Parse(id)
	if err != nil || len(id) != 36 || u.String() != id {
		return 0, false
	}
	return (int(u[0])<<8 | int(u[1])) % s.cfg.buckets, true
}

// split sorts allowances into the subject's ("s:" keys, when there is a
// subject) and the client's, keeping each group's positions in the
// original list.
func split(all []realtimeauth.Allowance, subject string) (client, subj []int) {
	for i, a := range all {
		if subject != "" && strings.HasPrefix(a.Key, "s:") {
			subj = append(subj, i)
		} else {
			client = append(client, i)
		}
	}
	return client, subj
}

// allowanceKeys appends the keys and arguments of the allowances at pos.
func (s *SessionStore) allowanceKeys(keys []string, args []any, tag string, all []realtimeauth.Allowance, pos []int, now time.Time) ([]string, []any, error) {
	args = append(args, len(pos))
	for _, i := range pos {
		a := all[i]
		if a.Limit < 1 || a.Limit > maxLimit || a.Window <= 0 || a.Window%4 != 0 {
			return nil, nil, fmt.Errorf("redisstore: allowance %q: limit %d must be in 1..%d and window %v a positive multiple of 4ns",
				a.Key, a.Limit, maxLimit, a.Window)
		}
		keys = append(keys, tag+":a:"+a.Key)
		args = allowanceArgs(args, a.Limit, a.Window, now)
	}
	return keys, args, nil
}

// Open implements realtimeauth.SessionStore.
func (s *SessionStore) Open(ctx context.Context, req realtimeauth.OpenRequest) (realtimeauth.Session, []realtimeauth.Session, error) {
	if strings.ContainsRune(req.ClientIP+req.Client, '\n') {
		return realtimeauth.Session{}, nil, errors.New("redisstore: session open: ClientIP and Client must not hold a newline")
	}
	b := s.cfg.bucketOf(bucketKey(req.Client))
	id, err := s.newID(b)
	if err != nil {
		return realtimeauth.Session{}, nil, err
	}
	clientPos, subjPos := split(req.Allowances, req.Subject)
	ttl := ceilMillis(req.ExpiresAt.Sub(req.Now) + sessionGrace)
	expires := encodeTime(req.ExpiresAt)
	score := micros(req.ExpiresAt)

	// The subject's step: its allowances and cap, reserved.
	verdict, member := "ok", id+" "+expires
	var subjKeys []string
	var subjCharged []any
	if req.Subject != "" {
		utag := s.cfg.tag(s.cfg.bucketOf(req.Subject))
		keys, args, err := s.allowanceKeys([]string{utag + ":u:" + req.Subject}, []any{encodeTime(req.Now), member, score, ttl, req.MaxPerSubject},
			utag, req.Allowances, subjPos, req.Now)
		if err != nil {
			return realtimeauth.Session{}, nil, err
		}
		v, err := subjectOpenScript.Run(ctx, s.client, keys, args...).Slice()
		if err != nil {
			return realtimeauth.Session{}, nil, wrap("session open", err)
		}
		switch res, _ := v[0].(string); res {
		case "ok":
			subjKeys, subjCharged = keys, v[1].([]any)
		case "limit":
			verdict = "limit:" + strconv.Itoa(subjPos[toInt(v[1])-1]) + ":" + strconv.FormatInt(toInt64(v[2]), 10)
		default:
			verdict = res
		}
	}

	tag := s.cfg.tag(b)
	keys := []string{tag + ":live", tag + ":load", tag + ":s:" + id, tag + ":c:" + req.Client}
	capB := 0
	if req.MaxSessions > 0 {
		capB = (req.MaxSessions + s.cfg.buckets - 1) / s.cfg.buckets
	}
	args := []any{tag, encodeTime(req.Now), id, req.ClientIP, req.Client, req.Subject, expires, score, ttl,
		req.MaxPerClient, capB, verdict}
	keys, args, err = s.allowanceKeys(keys, args, tag, req.Allowances, clientPos, req.Now)
	if err != nil {
		s.undoSubject(ctx, subjKeys, member, subjCharged)
		return realtimeauth.Session{}, nil, err
	}
	v, err := openScript.Run(ctx, s.client, keys, args...).Slice()
	if err != nil {
		s.undoSubject(ctx, subjKeys, member, subjCharged)
		return realtimeauth.Session{}, nil, wrap("session open", err)
	}
	res, _ := v[0].(string)
	if res != "ok" {
		s.undoSubject(ctx, subjKeys, member, subjCharged)
	}
	switch {
	case res == "ok":
	case res == "limit":
		// The first refusing allowance in the request's order, as
		// MemoryStore reports it: the client's, or the subject's before it.
		i, wait := clientPos[toInt(v[1])-1], toInt64(v[2])
		if si, swait, ok := subjectLimit(verdict); ok && si < i {
			i, wait = si, swait
		}
		return realtimeauth.Session{}, nil, &realtimeauth.LimitError{Key: req.Allowances[i].Key, RetryAfter: time.Duration(wait)}
	case strings.HasPrefix(res, "limit:"):
		i, wait, _ := subjectLimit(res)
		return realtimeauth.Session{}, nil, &realtimeauth.LimitError{Key: req.Allowances[i].Key, RetryAfter: time.Duration(wait)}
	case res == "too_many":
		return realtimeauth.Session{}, nil, realtimeauth.ErrTooManySessions
	case res == "full":
		return realtimeauth.Session{}, nil, realtimeauth.ErrStoreFull
	default:
		return realtimeauth.Session{}, nil, wrap("session open", fmt.Errorf("unexpected reply %q", res))
	}
	var evicted []realtimeauth.Session
	for _, e := range v[2].([]any) {
		e := e.([]any)
		sess, err := decodeSession(e[0].(string), e[1])
		if err != nil {
			return realtimeauth.Session{}, nil, wrap("session open", err)
		}
		evicted = append(evicted, sess)
	}
	s.dropFromSubjects(ctx, evicted)
	sess := realtimeauth.Session{ID: id, ClientIP: req.ClientIP, Client: req.Client, Subject: req.Subject,
		CreatedAt: req.Now.UTC(), ExpiresAt: req.ExpiresAt.UTC(), LastIssuedAt: req.Now.UTC()}
	return sess, evicted, nil
}

// subjectLimit parses the subject step's "limit:<position>:<wait>" verdict.
func subjectLimit(verdict string) (pos int, wait int64, ok bool) {
	f := strings.Split(verdict, ":")
	if len(f) != 3 || f[0] != "limit" {
		return 0, 0, false
	}
	pos, err1 := strconv.Atoi(f[1])
	wait, err2 := strconv.ParseInt(f[2], 10, 64)
	return pos, wait, err1 == nil && err2 == nil
}

// undoSubject takes back the subject step of an Open that failed after it.
// It runs even when the request's context has ended, bounded by its own.
func (s *SessionStore) undoSubject(ctx context.Context, keys []string, member string, charged []any) {
	if keys == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	args := append([]any{member, len(charged)}, charged...)
	_ = subjectUndoScript.Run(ctx, s.client, keys, args...).Err()
}

// dropFromSubjects removes sessions that left the live set from their
// subjects' indexes: one pipeline, whatever their number.
func (s *SessionStore) dropFromSubjects(ctx context.Context, gone []realtimeauth.Session) {
	var subj []realtimeauth.Session
	for _, g := range gone {
		if g.Subject != "" {
			subj = append(subj, g)
		}
	}
	if len(subj) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	_, _ = s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, g := range subj {
			p.ZRem(ctx, s.subjectKey(g.Subject), g.ID+" "+encodeTime(g.ExpiresAt))
		}
		return nil
	})
}

func (s *SessionStore) subjectKey(subject string) string {
	return s.cfg.tag(s.cfg.bucketOf(subject)) + ":u:" + subject
}

var refreshErrors = map[string]error{
	"revoked":  realtimeauth.ErrSessionRevoked,
	"mismatch": realtimeauth.ErrSessionMismatch,
	"limit":    realtimeauth.ErrRefreshLimit,
}

// Refresh implements realtimeauth.SessionStore.
func (s *SessionStore) Refresh(ctx context.Context, req realtimeauth.RefreshRequest) (realtimeauth.Session, error) {
	b, ok := s.idBucket(req.ID)
	if !ok {
		return realtimeauth.Session{}, realtimeauth.ErrSessionNotFound
	}
	clientPos, subjPos := split(req.Allowances, req.Subject)
	// The allowances are read in the session's bucket: its owner's. A
	// refresh from another client, whose allowances live elsewhere, is
	// answered ErrSessionMismatch before any allowance is read.
	tag := s.cfg.tag(b)
	keys := []string{tag + ":live", tag + ":load", tag + ":s:" + req.ID}
	args := []any{tag, encodeTime(req.Now), req.ID, req.ClientIP, req.Subject, req.MaxRefreshes, int64(req.MinInterval)}
	keys, args, err := s.allowanceKeys(keys, args, tag, req.Allowances, clientPos, req.Now)
	if err != nil {
		return realtimeauth.Session{}, err
	}
	v, err := refreshScript.Run(ctx, s.client, keys, args...).Slice()
	if err != nil {
		return realtimeauth.Session{}, wrap("session refresh", err)
	}
	res, _ := v[0].(string)
	if res == "not_found" {
		return realtimeauth.Session{}, realtimeauth.ErrSessionNotFound
	}
	sess, err := decodeSession(req.ID, v[1])
	if err != nil {
		return realtimeauth.Session{}, wrap("session refresh", err)
	}
	switch res {
	case "ok":
	case "rate":
		a := req.Allowances[clientPos[toInt(v[2])-1]]
		return realtimeauth.Session{}, &realtimeauth.LimitError{Key: a.Key, RetryAfter: time.Duration(toInt64(v[3]))}
	case "too_soon":
		return sess, realtimeauth.ErrRefreshTooSoon
	default:
		if e, ok := refreshErrors[res]; ok {
			return realtimeauth.Session{}, e
		}
		return realtimeauth.Session{}, wrap("session refresh", fmt.Errorf("unexpected reply %q", res))
	}
	if len(subjPos) == 0 {
		return sess, nil
	}

	// The subject's allowances, in its bucket; refused, the refresh and the
	// client's charges are taken back.
	utag := s.cfg.tag(s.cfg.bucketOf(req.Subject))
	ukeys, uargs, err := s.allowanceKeys(nil, nil, utag, req.Allowances, subjPos, req.Now)
	if err == nil {
		var u []any
		u, err = allowScript.Run(ctx, s.client, ukeys, uargs...).Slice()
		if err == nil {
			if r, _ := u[0].(string); r == "ok" {
				return sess, nil
			}
			a := req.Allowances[subjPos[toInt(u[1])-1]]
			err = &realtimeauth.LimitError{Key: a.Key, RetryAfter: time.Duration(toInt64(u[2]))}
		} else {
			err = wrap("session refresh", err)
		}
	}
	// Taken back even when the request's context has ended, bounded by
	// its own.
	charged, _ := v[2].([]any)
	restore, _ := v[3].(string)
	gkeys := []string{tag + ":s:" + req.ID}
	for _, i := range clientPos {
		gkeys = append(gkeys, tag+":a:"+req.Allowances[i].Key)
	}
	gargs := append([]any{tag, req.ID, encodeTime(req.Now), restore, len(charged)}, charged...)
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	_ = giveBackScript.Run(gctx, s.client, gkeys, gargs...).Err()
	return realtimeauth.Session{}, err
}

// GiveBack implements realtimeauth.SessionStore.
func (s *SessionStore) GiveBack(ctx context.Context, id string, issuedAt, restore time.Time) error {
	b, ok := s.idBucket(id)
	if !ok {
		return nil
	}
	tag := s.cfg.tag(b)
	err := giveBackScript.Run(ctx, s.client, []string{tag + ":s:" + id}, tag, id, encodeTime(issuedAt), encodeTime(restore), 0).Err()
	if err != nil {
		return wrap("session give back", err)
	}
	return nil
}

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

// Restore implements realtimeauth.SessionStore: one script in each bucket
// the sessions name (an Open evicts in its own bucket only), then the
// subjects' indexes.
func (s *SessionStore) Restore(ctx context.Context, sessions []realtimeauth.Session, now time.Time) error {
	byBucket := map[int][]any{}
	var order []int
	var subj []realtimeauth.Session
	for _, x := range sessions {
		b, ok := s.idBucket(x.ID)
		if !ok || x.Revoked || !x.ExpiresAt.After(now) || strings.ContainsRune(x.ClientIP+x.Client, '\n') {
			continue
		}
		if _, seen := byBucket[b]; !seen {
			order = append(order, b)
		}
		byBucket[b] = append(byBucket[b], x.ID, x.ClientIP, x.Client, x.Subject, encodeTime(x.CreatedAt),
			encodeTime(x.ExpiresAt), encodeTime(x.LastIssuedAt), x.Refreshes, micros(x.ExpiresAt),
			ceilMillis(x.ExpiresAt.Sub(now)+sessionGrace))
		if x.Subject != "" {
			subj = append(subj, x)
		}
	}
	for _, b := range order {
		tag := s.cfg.tag(b)
		args := append([]any{tag, encodeTime(now), len(byBucket[b]) / 10}, byBucket[b]...)
		if err := restoreScript.Run(ctx, s.client, []string{tag + ":live", tag + ":load"}, args...).Err(); err != nil {
			return wrap("session restore", err)
		}
	}
	for _, x := range subj {
		// The subject's step of Open, with no cap and no allowance.
		args := []any{encodeTime(now), x.ID + " " + encodeTime(x.ExpiresAt), micros(x.ExpiresAt),
			ceilMillis(x.ExpiresAt.Sub(now) + sessionGrace), 0, 0}
		if err := subjectOpenScript.Run(ctx, s.client, []string{s.subjectKey(x.Subject)}, args...).Err(); err != nil {
			return wrap("session restore", err)
		}
	}
	return nil
}

// refundScript: KEYS allowances; ARGV their number, then each one's
// sub-window index (modulo 2^32) of the time it was charged at. It
// uncounts one event from each, where that sub-window still holds one.
var refundScript = newScript(allowanceLua + `
for i = 1, tonumber(ARGV[1]) do uncharge(KEYS[i], tonumber(ARGV[1 + i])) end
return 0
`)

// Refund implements realtimeauth.SessionStore: one script in the client's
// bucket, and one in the subject's for its "s:" allowances.
func (s *SessionStore) Refund(ctx context.Context, req realtimeauth.RefundRequest) error {
	clientPos, subjPos := split(req.Allowances, req.Subject)
	for _, g := range []struct {
		tag string
		pos []int
	}{
		{s.cfg.tag(s.cfg.bucketOf(bucketKey(req.Client))), clientPos},
		{s.cfg.tag(s.cfg.bucketOf(req.Subject)), subjPos},
	} {
		var keys []string
		args := []any{0}
		for _, i := range g.pos {
			a := req.Allowances[i]
			if a.Limit < 1 || a.Limit > maxLimit || a.Window <= 0 || a.Window%4 != 0 {
				continue // never charged: Open and Refresh refuse it
			}
			keys = append(keys, g.tag+":a:"+a.Key)
			args = append(args, subWindowIndex(a.Window, req.ChargedAt))
		}
		if len(keys) == 0 {
			continue
		}
		args[0] = len(keys)
		if err := refundScript.Run(ctx, s.client, keys, args...).Err(); err != nil {
			return wrap("allowance refund", err)
		}
	}
	return nil
}

// Revoke implements realtimeauth.SessionStore.
func (s *SessionStore) Revoke(ctx context.Context, id string, now time.Time) (realtimeauth.Session, error) {
	b, ok := s.idBucket(id)
	if !ok {
		return realtimeauth.Session{}, realtimeauth.ErrSessionNotFound
	}
	out, err := s.revoke(ctx, b, "", []string{id}, now)
	if err != nil {
		return realtimeauth.Session{}, err
	}
	r := out[0]
	if r.res == "not_found" {
		return realtimeauth.Session{}, realtimeauth.ErrSessionNotFound
	}
	if r.res == "revoked" {
		s.dropFromSubjects(ctx, []realtimeauth.Session{r.sess})
	}
	return r.sess, nil
}

type revoked struct {
	res  string
	sess realtimeauth.Session
}

// revoke runs revokeScript in bucket b.
func (s *SessionStore) revoke(ctx context.Context, b int, subject string, ids []string, now time.Time) ([]revoked, error) {
	cmd := s.revokeCmd(ctx, s.client, b, subject, ids, now)
	return decodeRevoked(cmd, ids)
}

func (s *SessionStore) revokeCmd(ctx context.Context, c redis.Scripter, b int, subject string, ids []string, now time.Time) *redis.Cmd {
	tag := s.cfg.tag(b)
	args := []any{tag, encodeTime(now), subject}
	for _, id := range ids {
		args = append(args, id)
	}
	return revokeScript.Run(ctx, c, []string{tag + ":live", tag + ":load"}, args...)
}

func decodeRevoked(cmd *redis.Cmd, ids []string) ([]revoked, error) {
	v, err := cmd.Slice()
	if err == nil && len(v) != len(ids) {
		err = fmt.Errorf("unexpected reply of %d results for %d IDs", len(v), len(ids))
	}
	if err != nil {
		return nil, wrap("session revoke", err)
	}
	out := make([]revoked, len(ids))
	for i, x := range v {
		r := x.([]any)
		out[i].res, _ = r[0].(string)
		if out[i].res == "not_found" {
			continue
		}
		if out[i].sess, err = decodeSession(ids[i], r[1]); err != nil {
			return nil, wrap("session revoke", err)
		}
	}
	return out, nil
}

// RevokeSubject implements realtimeauth.SessionStore: it lists the
// subject's live sessions from its index (one round trip), revokes them in
// their buckets (one pipeline) and drops them from the index (one more).
// Each bucket's revocation is atomic; an Open of the subject that completes
// during the call may survive it, as one that starts after it would.
func (s *SessionStore) RevokeSubject(ctx context.Context, subject string, now time.Time) ([]realtimeauth.Session, error) {
	ukey := s.subjectKey(subject)
	members, err := subjectListScript.Run(ctx, s.client, []string{ukey}, encodeTime(now)).StringSlice()
	if err != nil {
		return nil, wrap("session revoke subject", err)
	}
	byBucket := map[int][]string{}
	for _, m := range members {
		id := m[:min(36, len(m))]
		if b, ok := s.idBucket(id); ok {
			byBucket[b] = append(byBucket[b], id)
		}
	}
	if len(byBucket) == 0 {
		return nil, nil
	}
	cmds := map[int]*redis.Cmd{}
	_, err = s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for b, ids := range byBucket {
			cmds[b] = s.revokeCmd(ctx, p, b, subject, ids, now)
		}
		return nil
	})
	if err != nil && !isNoScript(err) {
		return nil, wrap("session revoke subject", err)
	}
	var out []realtimeauth.Session
	var drop []any
	for b, ids := range byBucket {
		cmd := cmds[b]
		if isNoScript(cmd.Err()) {
			cmd = s.revokeCmd(ctx, s.client, b, subject, ids, now)
		}
		rs, err := decodeRevoked(cmd, ids)
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			if r.res != "not_found" {
				drop = append(drop, r.sess.ID+" "+encodeTime(r.sess.ExpiresAt))
			}
			if r.res == "revoked" {
				out = append(out, r.sess)
			}
		}
	}
	if len(drop) > 0 {
		if err := s.client.ZRem(ctx, ukey, drop...).Err(); err != nil {
			return nil, wrap("session revoke subject", err)
		}
	}
	return out, nil
}

func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

// Delete implements realtimeauth.SessionStore.
func (s *SessionStore) Delete(ctx context.Context, id string) error {
	b, ok := s.idBucket(id)
	if !ok {
		return nil
	}
	tag := s.cfg.tag(b)
	v, err := deleteScript.Run(ctx, s.client, []string{tag + ":live", tag + ":load", tag + ":s:" + id}, tag, id).Slice()
	if err != nil {
		return wrap("session delete", err)
	}
	if len(v) == 0 {
		return nil
	}
	sess, err := decodeSession(id, v)
	if err != nil {
		return wrap("session delete", err)
	}
	if !sess.Revoked {
		s.dropFromSubjects(ctx, []realtimeauth.Session{sess})
	}
	return nil
}

// Count implements realtimeauth.SessionStore: one script per bucket, which
// trims the sessions expired since the last trim and counts the rest, all
// in one pipeline (one round trip per cluster node, in parallel).
func (s *SessionStore) Count(ctx context.Context, now time.Time) (int, error) {
	run := func(c redis.Scripter, b int) *redis.Cmd {
		tag := s.cfg.tag(b)
		return countScript.EvalSha(ctx, c, []string{tag + ":live", tag + ":load"}, tag, encodeTime(now))
	}
	cmds := make([]*redis.Cmd, s.cfg.buckets)
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for b := range cmds {
			cmds[b] = run(p, b)
		}
		return nil
	})
	if isNoScript(err) {
		if err = countScript.Load(ctx, s.client).Err(); err == nil {
			return s.Count(ctx, now)
		}
	}
	if err != nil {
		return 0, wrap("session count", err)
	}
	n := 0
	for _, c := range cmds {
		k, err := c.Int()
		if err != nil {
			return 0, wrap("session count", err)
		}
		n += k
	}
	return n, nil
}

// decodeSession reads the fields ip, cl, sub, c, e, l, r, v as redis
// returned them.
func decodeSession(id string, x any) (realtimeauth.Session, error) {
	v, _ := x.([]any)
	if len(v) != 8 {
		return realtimeauth.Session{}, fmt.Errorf("malformed session %q", id)
	}
	var str [8]string
	for i, x := range v {
		s, ok := x.(string)
		if !ok {
			return realtimeauth.Session{}, fmt.Errorf("malformed session %q", id)
		}
		str[i] = s
	}
	sess := realtimeauth.Session{ID: id, ClientIP: str[0], Client: str[1], Subject: str[2], Revoked: str[7] == "1"}
	var errs [4]error
	sess.CreatedAt, errs[0] = decodeTime(str[3])
	sess.ExpiresAt, errs[1] = decodeTime(str[4])
	sess.LastIssuedAt, errs[2] = decodeTime(str[5])
	sess.Refreshes, errs[3] = strconv.Atoi(str[6])
	if err := errors.Join(errs[:]...); err != nil {
		return realtimeauth.Session{}, fmt.Errorf("malformed session %q: %w", id, err)
	}
	return sess, nil
}

func toInt64(x any) int64 {
	n, _ := x.(int64)
	return n
}

func toInt(x any) int { return int(toInt64(x)) }
