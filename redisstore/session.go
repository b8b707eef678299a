package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/redis/go-redis/v9"
)

// SessionStore is a realtimeauth.SessionStore kept in Redis, so that a
// session opened on one instance refreshes on another. It behaves as
// realtimeauth.MemoryStore given the same times: a session is live until its
// ExpiresAt (checked exactly, by the script, against the time the caller
// passes) and Redis forgets it by TTL one second later. Create (with the
// per-subject cap) and Update (the check-and-count of a refresh) are each one
// Lua script: atomic across instances, one round trip. Count reads a sorted
// set of live session IDs by expiry, trimmed as it goes, so it costs
// O(log n) plus the sessions that expired since the last trim, never a scan.
//
// A backend failure is returned as an error wrapping the go-redis one, and
// the handler fails closed on it (503 store_unavailable).
type SessionStore struct {
	client  redis.UniversalClient
	session string // key prefix of a session's hash
	subject string // key prefix of a subject's sorted set
	live    string // sorted set of live session IDs
}

var _ realtimeauth.SessionStore = (*SessionStore)(nil)

// sessionGrace is how long Redis keeps a session past its ExpiresAt, so
// that an instance whose clock is a little behind still finds it.
const sessionGrace = time.Second

// NewSessionStore returns a SessionStore. Option: WithPrefix.
func NewSessionStore(client redis.UniversalClient, opts ...Option) (*SessionStore, error) {
	c, err := newConfig(client, opts)
	if err != nil {
		return nil, err
	}
	return &SessionStore{
		client:  client,
		session: c.key("session"),
		subject: c.key("subject"),
		live:    "{" + c.prefix + "}:sessions",
	}, nil
}

// sessionLua is shared by the session scripts. A session's hash holds ip,
// sub, c, e, l (times, see luaTime), r (refreshes) and v ("1" when revoked).
// Sorted sets score session IDs by expiry in Unix microseconds. trim drops
// the IDs that have expired at now, deciding the ties of the same
// microsecond from the session's exact expiry; the session hashes it reads
// share the store's hash tag, so they sit in the declared keys' slot.
const sessionLua = luaTime + `
local SP = ARGV[1]
local function live(h, now) return h and before(now, T(h)) end
local function trim(key, now)
  local us = string.format('%.0f', micros(now))
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. us)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', key, us, us)) do
    if not live(redis.call('HGET', SP .. id, 'e'), now) then redis.call('ZREM', key, id) end
  end
end
local FIELDS = {'ip', 'sub', 'c', 'e', 'l', 'r', 'v'}
`

// createScript: KEYS session, live set, subject set (or the live set again
// when there is no subject); ARGV prefix, id, the fields, now (CreatedAt),
// maxPerSubject, TTL (ms).
var createScript = redis.NewScript(sessionLua + `
local now = T(ARGV[10])
local old = redis.call('HGET', KEYS[1], 'e')
if old then
  if live(old, now) then return 'exists' end
  redis.call('DEL', KEYS[1])
end
trim(KEYS[2], now)
local sub, max = ARGV[4], tonumber(ARGV[11])
if sub ~= '' and max > 0 then
  trim(KEYS[3], now)
  local n = 0
  for _, id in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
    local h = redis.call('HMGET', SP .. id, 'e', 'v')
    if not h[1] then
      redis.call('ZREM', KEYS[3], id)
    elseif h[2] ~= '1' and live(h[1], now) then
      n = n + 1
    end
  end
  if n >= max then return 'too_many' end
end
redis.call('HSET', KEYS[1], 'ip', ARGV[3], 'sub', sub, 'c', ARGV[5], 'e', ARGV[6], 'l', ARGV[7], 'r', ARGV[8], 'v', ARGV[9])
redis.call('PEXPIRE', KEYS[1], ARGV[12])
local score = string.format('%.0f', micros(T(ARGV[6])))
if ARGV[9] ~= '1' then redis.call('ZADD', KEYS[2], score, ARGV[2]) end
if sub ~= '' then
  redis.call('ZADD', KEYS[3], score, ARGV[2])
  if redis.call('PTTL', KEYS[3]) < tonumber(ARGV[12]) then redis.call('PEXPIRE', KEYS[3], ARGV[12]) end
end
return 'ok'
`)

// Create implements realtimeauth.SessionStore.
func (s *SessionStore) Create(ctx context.Context, sess realtimeauth.Session, maxPerSubject int) error {
	subjectKey := s.live
	if sess.Subject != "" {
		subjectKey = s.subject + sess.Subject
	}
	revoked := "0"
	if sess.Revoked {
		revoked = "1"
	}
	ttl := ceilMillis(sess.ExpiresAt.Sub(sess.CreatedAt) + sessionGrace)
	res, err := createScript.Run(ctx, s.client, []string{s.session + sess.ID, s.live, subjectKey},
		s.session, sess.ID, sess.ClientIP, sess.Subject, encodeTime(sess.CreatedAt), encodeTime(sess.ExpiresAt),
		encodeTime(sess.LastIssuedAt), sess.Refreshes, revoked, encodeTime(sess.CreatedAt), maxPerSubject, ttl,
	).Text()
	if err != nil {
		return wrap("session create", err)
	}
	switch res {
	case "ok":
		return nil
	case "exists":
		return realtimeauth.ErrSessionExists
	case "too_many":
		return realtimeauth.ErrTooManySessions
	}
	return wrap("session create", fmt.Errorf("unexpected reply %q", res))
}

// Get implements realtimeauth.SessionStore.
func (s *SessionStore) Get(ctx context.Context, id string, now time.Time) (realtimeauth.Session, error) {
	v, err := s.client.HMGet(ctx, s.session+id, "ip", "sub", "c", "e", "l", "r", "v").Result()
	if err != nil {
		return realtimeauth.Session{}, wrap("session get", err)
	}
	if v[3] == nil {
		return realtimeauth.Session{}, realtimeauth.ErrSessionNotFound
	}
	sess, err := decodeSession(id, v)
	if err != nil {
		return realtimeauth.Session{}, wrap("session get", err)
	}
	if !now.Before(sess.ExpiresAt) {
		return realtimeauth.Session{}, realtimeauth.ErrSessionNotFound
	}
	return sess, nil
}

// updateScript: KEYS session, live set; ARGV prefix, id, now, ClientIP,
// Subject, MaxRefreshes, MinInterval (ns), AddRefreshes, LastIssuedAt,
// IfLastIssuedAt, Revoke ("1"). It returns {result, fields...}, the fields
// as stored afterwards (unchanged when a condition failed).
var updateScript = redis.NewScript(sessionLua + `
local h = redis.call('HMGET', KEYS[1], unpack(FIELDS))
local now = T(ARGV[3])
if not live(h[4], now) then return {'not_found'} end
local function reply(res) table.insert(h, 1, res) return h end
if h[7] == '1' then return reply('revoked') end
if (ARGV[4] ~= '' and h[1] ~= ARGV[4]) or (ARGV[5] ~= '' and h[2] ~= ARGV[5]) then return reply('mismatch') end
local maxr, minint = tonumber(ARGV[6]), tonumber(ARGV[7])
if maxr > 0 and tonumber(h[6]) >= maxr then return reply('limit') end
if minint > 0 and h[5] ~= '' and before(now, add(T(h[5]), minint)) then return reply('too_soon') end
h[6] = tostring(math.max(0, tonumber(h[6]) + tonumber(ARGV[8])))
if ARGV[9] ~= '' and (ARGV[10] == '' or h[5] == ARGV[10]) then h[5] = ARGV[9] end
if ARGV[11] == '1' then
  h[7] = '1'
  redis.call('ZREM', KEYS[2], ARGV[2])
end
redis.call('HSET', KEYS[1], 'l', h[5], 'r', h[6], 'v', h[7])
return reply('ok')
`)

var updateErrors = map[string]error{
	"revoked":  realtimeauth.ErrSessionRevoked,
	"mismatch": realtimeauth.ErrSessionMismatch,
	"limit":    realtimeauth.ErrRefreshLimit,
	"too_soon": realtimeauth.ErrRefreshTooSoon,
}

// Update implements realtimeauth.SessionStore.
func (s *SessionStore) Update(ctx context.Context, id string, u realtimeauth.SessionUpdate) (realtimeauth.Session, error) {
	revoke := "0"
	if u.Revoke {
		revoke = "1"
	}
	v, err := updateScript.Run(ctx, s.client, []string{s.session + id, s.live},
		s.session, id, encodeTime(u.Now), u.ClientIP, u.Subject, u.MaxRefreshes, int64(u.MinInterval),
		u.AddRefreshes, encodeTime(u.LastIssuedAt), encodeTime(u.IfLastIssuedAt), revoke,
	).Slice()
	if err != nil {
		return realtimeauth.Session{}, wrap("session update", err)
	}
	res, _ := v[0].(string)
	if res == "not_found" {
		return realtimeauth.Session{}, realtimeauth.ErrSessionNotFound
	}
	sess, err := decodeSession(id, v[1:])
	if err != nil {
		return realtimeauth.Session{}, wrap("session update", err)
	}
	if res == "ok" {
		return sess, nil
	}
	if e, ok := updateErrors[res]; ok {
		return sess, e
	}
	return realtimeauth.Session{}, wrap("session update", fmt.Errorf("unexpected reply %q", res))
}

// decodeSession reads the fields ip, sub, c, e, l, r, v as redis returned
// them.
func decodeSession(id string, v []any) (realtimeauth.Session, error) {
	if len(v) != 7 {
		return realtimeauth.Session{}, fmt.Errorf("malformed session %q", id)
	}
	str := make([]string, 7)
	for i, x := range v {
		s, ok := x.(string)
		if !ok {
			return realtimeauth.Session{}, fmt.Errorf("malformed session %q", id)
		}
		str[i] = s
	}
	sess := realtimeauth.Session{ID: id, ClientIP: str[0], Subject: str[1], Revoked: str[6] == "1"}
	var errs [4]error
	sess.CreatedAt, errs[0] = decodeTime(str[2])
	sess.ExpiresAt, errs[1] = decodeTime(str[3])
	sess.LastIssuedAt, errs[2] = decodeTime(str[4])
	sess.Refreshes, errs[3] = strconv.Atoi(str[5])
	if err := errors.Join(errs[:]...); err != nil {
		return realtimeauth.Session{}, fmt.Errorf("malformed session %q: %w", id, err)
	}
	return sess, nil
}

// Delete implements realtimeauth.SessionStore. The ID may stay in its
// subject's sorted set until the next Create for that subject drops it.
func (s *SessionStore) Delete(ctx context.Context, id string) error {
	_, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, s.session+id)
		p.ZRem(ctx, s.live, id)
		return nil
	})
	if err != nil {
		return wrap("session delete", err)
	}
	return nil
}

// countScript: KEYS live set; ARGV prefix, now.
var countScript = redis.NewScript(sessionLua + `
trim(KEYS[1], T(ARGV[2]))
return redis.call('ZCARD', KEYS[1])
`)

// Count implements realtimeauth.SessionStore: one script, which trims the
// live set of the sessions expired since the last trim and counts the rest.
func (s *SessionStore) Count(ctx context.Context, now time.Time) (int, error) {
	n, err := countScript.Run(ctx, s.client, []string{s.live}, s.session, encodeTime(now)).Int()
	if err != nil {
		return 0, wrap("session count", err)
	}
	return n, nil
}

// revokeSubjectScript: KEYS subject set, live set; ARGV prefix, now.
var revokeSubjectScript = redis.NewScript(sessionLua + `
local now = T(ARGV[2])
trim(KEYS[1], now)
local n = 0
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local h = redis.call('HMGET', SP .. id, 'e', 'v')
  if h[1] and h[2] ~= '1' and live(h[1], now) then
    redis.call('HSET', SP .. id, 'v', '1')
    redis.call('ZREM', KEYS[2], id)
    n = n + 1
  end
end
return n
`)

// RevokeSubject implements realtimeauth.SessionStore, atomically.
func (s *SessionStore) RevokeSubject(ctx context.Context, subject string, now time.Time) (int, error) {
	n, err := revokeSubjectScript.Run(ctx, s.client, []string{s.subject + subject, s.live}, s.session, encodeTime(now)).Int()
	if err != nil {
		return 0, wrap("session revoke subject", err)
	}
	return n, nil
}
