package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/realtimeauth/realtimeauth/calls"
)

// CallRegistry is a calls.Registry in Redis, shared by every
// instance: the caps on live calls hold across instances, and ClaimDue
// hands each call due for hang-up to exactly one instance at a time, so
// that a call whose instance has gone away is hung up by another.
//
// Every method is one Lua script. Calls are few next to sessions (each
// lasts minutes, and a client holds two at most by default), so all the
// keys of one prefix share one hash tag, "{prefix:calls}", hence one Redis
// Cluster slot: the per-client, per-/48 and per-subject caps and the due index are
// checked in one script. With T = "{prefix:calls}":
//
//	T:seq             counter of slot IDs
//	T:k:<slot>        hash: the call (id, n session, ip, c client, p prefix, u subject, s, d, e, h hold, m claim)
//	T:i:<call ID>     string: the call's slot
//	T:c:<client>      sorted set: the client's slots, by the time they stop being live
//	T:p:<prefix>      sorted set: the IPv6 /48's slots, likewise
//	T:u:<subject>     sorted set: the subject's slots, likewise
//	T:s:<session>     sorted set: the session's calls, by start
//	T:gone            sorted set: every slot, by the time it stops being live
//	T:live            sorted set: the bound calls, likewise (Count)
//	T:due             sorted set: the calls with a deadline, by deadline or lease end
//
// Times are whole Unix microseconds. Each script first drops up to 100
// slots and calls that have stopped being live, so that the keys follow the
// live calls; the caps count from the indexes' scores, exact whatever is
// left to drop.
type CallRegistry struct {
	client redis.UniversalClient
	tag    string
}

var _ calls.Registry = (*CallRegistry)(nil)

// NewCallRegistry returns a CallRegistry. It checks maxmemory-policy (see
// WithoutPolicyCheck), as the other constructors do: an evicted call would
// free its caps early and lose its hang-up deadline. Options: WithPrefix,
// WithoutPolicyCheck.
func NewCallRegistry(ctx context.Context, client redis.UniversalClient, opts ...Option) (*CallRegistry, error) {
	c, err := checkedConfig(ctx, client, opts)
	if err != nil {
		return nil, err
	}
	return &CallRegistry{client: client, tag: "{" + c.prefix + ":calls}:"}, nil
}

// callLua is shared by the call scripts; ARGV[1] is the tag.
const callLua = `
local T = ARGV[1]
local INF = '+inf'
local function remove(slot)
  local r = redis.call('HMGET', T .. 'k:' .. slot, 'id', 'c', 'u', 'n', 'p')
  redis.call('DEL', T .. 'k:' .. slot)
  if r[1] and r[1] ~= '' then redis.call('DEL', T .. 'i:' .. r[1]) end
  if r[2] then redis.call('ZREM', T .. 'c:' .. r[2], slot) end
  if r[3] and r[3] ~= '' then redis.call('ZREM', T .. 'u:' .. r[3], slot) end
  if r[4] and r[4] ~= '' then redis.call('ZREM', T .. 's:' .. r[4], slot) end
  if r[5] and r[5] ~= '' then redis.call('ZREM', T .. 'p:' .. r[5], slot) end
  redis.call('ZREM', T .. 'gone', slot)
  redis.call('ZREM', T .. 'live', slot)
  redis.call('ZREM', T .. 'due', slot)
end
local function sweep(now)
  for _, slot in ipairs(redis.call('ZRANGEBYSCORE', T .. 'gone', '-inf', now, 'LIMIT', 0, 100)) do
    remove(slot)
  end
end
local FIELDS = {'id', 'n', 'ip', 'c', 'u', 's', 'd', 'e'}
local function load(slot, now)
  local r = redis.call('HMGET', T .. 'k:' .. slot, 'id', 'n', 'ip', 'c', 'u', 's', 'd', 'e', 'h')
  if not r[1] then return nil end
  local gone = r[9] ~= '' and r[9] or r[8]
  if gone ~= '' and tonumber(gone) <= tonumber(now) then return nil end
  return r
end
local function call(r) return {r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8]} end
`

// reserveScript: ARGV tag, now, hold, ip, client, subject, maxClient,
// maxSubject, prefix, maxPrefix.
var reserveScript = redis.NewScript(callLua + `
local now, hold = ARGV[2], ARGV[3]
sweep(now)
local ck, uk, pk = T .. 'c:' .. ARGV[5], T .. 'u:' .. ARGV[6], T .. 'p:' .. ARGV[9]
local maxc, maxu, maxp = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[10])
if maxc > 0 and redis.call('ZCOUNT', ck, '(' .. now, INF) >= maxc then return 'toomany' end
if ARGV[9] ~= '' and maxp > 0 and redis.call('ZCOUNT', pk, '(' .. now, INF) >= maxp then return 'toomany' end
if ARGV[6] ~= '' and maxu > 0 and redis.call('ZCOUNT', uk, '(' .. now, INF) >= maxu then return 'toomany' end
local slot = tostring(redis.call('INCR', T .. 'seq'))
redis.call('HSET', T .. 'k:' .. slot, 'id', '', 'n', '', 'ip', ARGV[4], 'c', ARGV[5], 'p', ARGV[9], 'u', ARGV[6],
  's', '', 'd', '', 'e', '', 'h', hold, 'm', '')
redis.call('ZADD', ck, hold, slot)
if ARGV[9] ~= '' then redis.call('ZADD', pk, hold, slot) end
if ARGV[6] ~= '' then redis.call('ZADD', uk, hold, slot) end
redis.call('ZADD', T .. 'gone', hold, slot)
return 'ok:' .. slot
`)

// Reserve implements calls.Registry.
func (r *CallRegistry) Reserve(ctx context.Context, req calls.Reservation) (string, error) {
	if !req.HoldUntil.After(req.Now) {
		return "", errors.New("redisstore: CallRegistry.Reserve: HoldUntil must be after Now")
	}
	res, err := reserveScript.Run(ctx, r.client,
		[]string{r.tag + "c:" + req.Client, r.tag + "u:" + req.Subject, r.tag + "p:" + req.Prefix},
		r.tag, us(req.Now), us(req.HoldUntil), req.ClientIP, req.Client, req.Subject,
		req.MaxPerClient, req.MaxPerSubject, req.Prefix, req.MaxPerPrefix).Text()
	if err != nil {
		return "", wrap("reserving a call", err)
	}
	if res == "toomany" {
		return "", calls.ErrTooMany
	}
	slot, ok := strings.CutPrefix(res, "ok:")
	if !ok {
		return "", fmt.Errorf("redisstore: reserving a call: unexpected answer %q", res)
	}
	return slot, nil
}

// bindScript: ARGV tag, slot, id, session, start, deadline, expires.
var bindScript = redis.NewScript(callLua + `
local slot, id, sess, start, dl, exp = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
sweep(start)
local k = T .. 'k:' .. slot
local r = redis.call('HMGET', k, 'id', 'h', 'c', 'u', 'p')
if not r[1] or r[1] ~= '' or tonumber(r[2]) <= tonumber(start) then return {'notfound'} end
if redis.call('EXISTS', T .. 'i:' .. id) == 1 then return {'dup'} end
redis.call('HSET', k, 'id', id, 'n', sess, 's', start, 'd', dl, 'e', exp, 'h', '')
redis.call('SET', T .. 'i:' .. id, slot)
local gone = exp ~= '' and exp or INF
redis.call('ZADD', T .. 'c:' .. r[3], gone, slot)
if r[4] ~= '' then redis.call('ZADD', T .. 'u:' .. r[4], gone, slot) end
if r[5] and r[5] ~= '' then redis.call('ZADD', T .. 'p:' .. r[5], gone, slot) end
if sess ~= '' then redis.call('ZADD', T .. 's:' .. sess, start, slot) end
if exp ~= '' then redis.call('ZADD', T .. 'gone', exp, slot) else redis.call('ZREM', T .. 'gone', slot) end
redis.call('ZADD', T .. 'live', gone, slot)
if dl ~= '' then redis.call('ZADD', T .. 'due', dl, slot) end
return {'ok', call(redis.call('HMGET', k, unpack(FIELDS)))}
`)

// Bind implements calls.Registry.
func (r *CallRegistry) Bind(ctx context.Context, s calls.Start) (calls.Call, error) {
	if s.ID == "" {
		return calls.Call{}, errors.New("redisstore: CallRegistry.Bind: empty call ID")
	}
	if _, err := strconv.ParseUint(s.Slot, 10, 64); err != nil {
		return calls.Call{}, calls.ErrNotFound
	}
	v, err := bindScript.Run(ctx, r.client, []string{r.tag + "k:" + s.Slot, r.tag + "i:" + s.ID},
		r.tag, s.Slot, s.ID, s.SessionID, us(s.StartedAt), us(s.Deadline), us(s.ExpiresAt)).Slice()
	if err != nil {
		return calls.Call{}, wrap("binding a call", err)
	}
	switch st, _ := v[0].(string); st {
	case "notfound":
		return calls.Call{}, calls.ErrNotFound
	case "dup":
		return calls.Call{}, fmt.Errorf("redisstore: CallRegistry.Bind: call ID %q is already bound", s.ID)
	}
	return decodeCall(v[1])
}

// releaseScript: ARGV tag, slot.
var releaseScript = redis.NewScript(callLua + `
if redis.call('HGET', T .. 'k:' .. ARGV[2], 'id') == '' then remove(ARGV[2]) end
return 0
`)

// Release implements calls.Registry.
func (r *CallRegistry) Release(ctx context.Context, slot string) error {
	if _, err := strconv.ParseUint(slot, 10, 64); err != nil {
		return nil
	}
	if err := releaseScript.Run(ctx, r.client, []string{r.tag + "k:" + slot}, r.tag, slot).Err(); err != nil {
		return wrap("releasing a call slot", err)
	}
	return nil
}

// getScript: ARGV tag, id, now, "1" to end the call.
var getScript = redis.NewScript(callLua + `
local now = ARGV[3]
sweep(now)
local slot = redis.call('GET', T .. 'i:' .. ARGV[2])
if not slot then return {'notfound'} end
local r = load(slot, now)
if not r then return {'notfound'} end
if ARGV[4] == '1' then remove(slot) end
return {'ok', call(r)}
`)

// Get implements calls.Registry.
func (r *CallRegistry) Get(ctx context.Context, id string, now time.Time) (calls.Call, error) {
	return r.get(ctx, id, now, false)
}

// End implements calls.Registry.
func (r *CallRegistry) End(ctx context.Context, id string, now time.Time) (calls.Call, error) {
	return r.get(ctx, id, now, true)
}

func (r *CallRegistry) get(ctx context.Context, id string, now time.Time, end bool) (calls.Call, error) {
	flag := "0"
	if end {
		flag = "1"
	}
	v, err := getScript.Run(ctx, r.client, []string{r.tag + "i:" + id}, r.tag, id, us(now), flag).Slice()
	if err != nil {
		return calls.Call{}, wrap("reading a call", err)
	}
	if st, _ := v[0].(string); st != "ok" {
		return calls.Call{}, calls.ErrNotFound
	}
	return decodeCall(v[1])
}

// listScript: KEYS index; ARGV tag, now.
var listScript = redis.NewScript(callLua + `
local now = ARGV[2]
sweep(now)
local out = {}
for _, slot in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local r = load(slot, now)
  if r and r[1] ~= '' then out[#out + 1] = call(r) end
end
return out
`)

// SessionCalls implements calls.Registry.
func (r *CallRegistry) SessionCalls(ctx context.Context, sessionID string, now time.Time) ([]calls.Call, error) {
	return r.list(ctx, r.tag+"s:"+sessionID, now)
}

// SubjectCalls implements calls.Registry.
func (r *CallRegistry) SubjectCalls(ctx context.Context, subject string, now time.Time) ([]calls.Call, error) {
	return r.list(ctx, r.tag+"u:"+subject, now)
}

func (r *CallRegistry) list(ctx context.Context, key string, now time.Time) ([]calls.Call, error) {
	v, err := listScript.Run(ctx, r.client, []string{key}, r.tag, us(now)).Slice()
	if err != nil {
		return nil, wrap("listing calls", err)
	}
	out, err := decodeCalls(v)
	slices.SortStableFunc(out, func(a, b calls.Call) int { return a.StartedAt.Compare(b.StartedAt) })
	return out, err
}

// claimScript: ARGV tag, now, lease end, limit.
var claimScript = redis.NewScript(callLua + `
local now, until_, limit = ARGV[2], ARGV[3], tonumber(ARGV[4])
sweep(now)
local out = {}
for _, slot in ipairs(redis.call('ZRANGEBYSCORE', T .. 'due', '-inf', now, 'LIMIT', 0, limit)) do
  local r = load(slot, now)
  if r and r[1] ~= '' then
    redis.call('HSET', T .. 'k:' .. slot, 'm', until_)
    redis.call('ZADD', T .. 'due', until_, slot)
    out[#out + 1] = call(r)
  else
    redis.call('ZREM', T .. 'due', slot)
  end
end
return out
`)

// ClaimDue implements calls.Registry.
func (r *CallRegistry) ClaimDue(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]calls.Call, error) {
	if lease <= 0 {
		return nil, errors.New("redisstore: CallRegistry.ClaimDue: lease must be positive")
	}
	if limit <= 0 {
		return nil, nil
	}
	v, err := claimScript.Run(ctx, r.client, []string{r.tag + "due"}, r.tag, us(now), us(now.Add(lease)), limit).Slice()
	if err != nil {
		return nil, wrap("claiming due calls", err)
	}
	return decodeCalls(v)
}

// countScript of calls: ARGV tag, now.
var callCountScript = redis.NewScript(callLua + `
sweep(ARGV[2])
return redis.call('ZCOUNT', T .. 'live', '(' .. ARGV[2], INF)
`)

// Count implements calls.Registry.
func (r *CallRegistry) Count(ctx context.Context, now time.Time) (int, error) {
	n, err := callCountScript.Run(ctx, r.client, []string{r.tag + "live"}, r.tag, us(now)).Int()
	if err != nil {
		return 0, wrap("counting calls", err)
	}
	return n, nil
}

// us is t in whole Unix microseconds, "" for the zero time.
func us(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return strconv.FormatInt(t.UnixMicro(), 10)
}

func fromUS(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("redisstore: malformed call time %q in redis", s)
	}
	return time.UnixMicro(n).UTC(), nil
}

func decodeCalls(v []any) ([]calls.Call, error) {
	out := make([]calls.Call, 0, len(v))
	for _, e := range v {
		c, err := decodeCall(e)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func decodeCall(v any) (calls.Call, error) {
	f, ok := v.([]any)
	if !ok || len(f) != 8 {
		return calls.Call{}, errors.New("redisstore: malformed call in redis")
	}
	s := make([]string, 8)
	for i, x := range f {
		s[i], _ = x.(string)
	}
	c := calls.Call{ID: s[0], SessionID: s[1], ClientIP: s[2], Client: s[3], Subject: s[4]}
	var errs [3]error
	c.StartedAt, errs[0] = fromUS(s[5])
	c.Deadline, errs[1] = fromUS(s[6])
	c.ExpiresAt, errs[2] = fromUS(s[7])
	return c, errors.Join(errs[:]...)
}
