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
// passes (never Redis's clock), exactly as realtimeauth.NewMemoryStore's does
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
	o := opening{id: id, ttl: ceilMillis(req.ExpiresAt.Sub(req.Now) + sessionGrace), expires: encodeTime(req.ExpiresAt),
		score: micros(req.ExpiresAt), verdict: "ok"}
	o.clientPos, o.subjPos = split(req.Allowances, req.Subject)
	o.member = id + " " + o.expires
	if err := s.openSubject(ctx, req, &o); err != nil {
		return realtimeauth.Session{}, nil, err
	}
	v, err := s.openInBucket(ctx, req, b, &o)
	if err != nil {
		return realtimeauth.Session{}, nil, err
	}
	if err := o.refusal(req, v); err != nil {
		return realtimeauth.Session{}, nil, err
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

// opening is an Open under way: the new session's ID, its keys' TTL (ms),
// its expiry encoded and as a score, its member of the subject's index,
// the allowances' positions, and the subject step's outcome.
type opening struct {
	id, expires, member string
	ttl, score          int64
	clientPos, subjPos  []int
	verdict             string   // the subject step's: "ok", "limit:<position>:<wait>" or its refusal
	subjKeys            []string // the subject step's keys, nil when it reserved nothing
	subjCharged         []any
}

// openSubject is the subject's step: its allowances and cap, reserved. A
// refusal is left in o.verdict for the bucket's step.
func (s *SessionStore) openSubject(ctx context.Context, req realtimeauth.OpenRequest, o *opening) error {
	if req.Subject == "" {
		return nil
	}
	utag := s.cfg.tag(s.cfg.bucketOf(req.Subject))
	keys, args, err := s.allowanceKeys([]string{utag + ":u:" + req.Subject}, []any{encodeTime(req.Now), o.member, o.score, o.ttl, req.MaxPerSubject},
		utag, req.Allowances, o.subjPos, req.Now)
	if err != nil {
		return err
	}
	v, err := subjectOpenScript.Run(ctx, s.client, keys, args...).Slice()
	if err != nil {
		return wrap("session open", err)
	}
	switch res, _ := v[0].(string); res {
	case "ok":
		o.subjKeys, o.subjCharged = keys, v[1].([]any)
	case "limit":
		o.verdict = "limit:" + strconv.Itoa(o.subjPos[toInt(v[1])-1]) + ":" + strconv.FormatInt(toInt64(v[2]), 10)
	default:
		o.verdict = res
	}
	return nil
}

// openInBucket is the client's bucket's step, which opens the session
// unless the subject's step refused; it takes the subject's step back
// unless the session opened, and returns the script's reply.
func (s *SessionStore) openInBucket(ctx context.Context, req realtimeauth.OpenRequest, b int, o *opening) ([]any, error) {
	tag := s.cfg.tag(b)
	keys := []string{tag + ":live", tag + ":load", tag + ":s:" + o.id, tag + ":c:" + req.Client}
	capB := 0
	if req.MaxSessions > 0 {
		capB = (req.MaxSessions + s.cfg.buckets - 1) / s.cfg.buckets
	}
	args := []any{tag, encodeTime(req.Now), o.id, req.ClientIP, req.Client, req.Subject, o.expires, o.score, o.ttl,
		req.MaxPerClient, capB, o.verdict}
	keys, args, err := s.allowanceKeys(keys, args, tag, req.Allowances, o.clientPos, req.Now)
	if err != nil {
		s.undoSubject(ctx, o.subjKeys, o.member, o.subjCharged)
		return nil, err
	}
	v, err := openScript.Run(ctx, s.client, keys, args...).Slice()
	if err != nil {
		s.undoSubject(ctx, o.subjKeys, o.member, o.subjCharged)
		return nil, wrap("session open", err)
	}
	if res, _ := v[0].(string); res != "ok" {
		s.undoSubject(ctx, o.subjKeys, o.member, o.subjCharged)
	}
	return v, nil
}

// refusal is the error of the bucket step's reply v, nil when the session
// opened.
func (o *opening) refusal(req realtimeauth.OpenRequest, v []any) error {
	switch res, _ := v[0].(string); {
	case res == "ok":
		return nil
	case res == "limit":
		// The first refusing allowance in the request's order, as the
		// memory store reports it: the client's, or the subject's before it.
		i, wait := o.clientPos[toInt(v[1])-1], toInt64(v[2])
		if si, swait, ok := subjectLimit(o.verdict); ok && si < i {
			i, wait = si, swait
		}
		return &realtimeauth.LimitError{Key: req.Allowances[i].Key, RetryAfter: time.Duration(wait)}
	case strings.HasPrefix(res, "limit:"):
		i, wait, _ := subjectLimit(res)
		return &realtimeauth.LimitError{Key: req.Allowances[i].Key, RetryAfter: time.Duration(wait)}
	case res == "too_many":
		return realtimeauth.ErrTooManySessions
	case res == "full":
		return realtimeauth.ErrStoreFull
	default:
		return wrap("session open", fmt.Errorf("unexpected reply %q", res))
	}
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
	tag := s.cfg.tag(b)
	sess, v, err := s.refreshInBucket(ctx, req, tag, clientPos)
	if err != nil || len(subjPos) == 0 {
		return sess, err
	}
	// The subject's allowances, in its bucket; refused, the refresh and the
	// client's charges are taken back.
	if err := s.allowSubject(ctx, req, subjPos); err != nil {
		s.undoRefresh(ctx, req, tag, clientPos, v)
		return realtimeauth.Session{}, err
	}
	return sess, nil
}

// refreshInBucket is the session's bucket's step: the session's checks
// and the client's allowances. It returns the session refreshed, and the
// script's reply for undoRefresh.
func (s *SessionStore) refreshInBucket(ctx context.Context, req realtimeauth.RefreshRequest, tag string, clientPos []int) (realtimeauth.Session, []any, error) {
	// The allowances are read in the session's bucket: its owner's. A
	// refresh from another client, whose allowances live elsewhere, is
	// answered ErrSessionMismatch before any allowance is read.
	keys := []string{tag + ":live", tag + ":load", tag + ":s:" + req.ID}
	args := []any{tag, encodeTime(req.Now), req.ID, req.ClientIP, req.Subject, req.MaxRefreshes, int64(req.MinInterval)}
	keys, args, err := s.allowanceKeys(keys, args, tag, req.Allowances, clientPos, req.Now)
	if err != nil {
		return realtimeauth.Session{}, nil, err
	}
	v, err := refreshScript.Run(ctx, s.client, keys, args...).Slice()
	if err != nil {
		return realtimeauth.Session{}, nil, wrap("session refresh", err)
	}
	res, _ := v[0].(string)
	if res == "not_found" {
		return realtimeauth.Session{}, nil, realtimeauth.ErrSessionNotFound
	}
	sess, err := decodeSession(req.ID, v[1])
	if err != nil {
		return realtimeauth.Session{}, nil, wrap("session refresh", err)
	}
	switch res {
	case "ok":
		return sess, v, nil
	case "rate":
		a := req.Allowances[clientPos[toInt(v[2])-1]]
		return realtimeauth.Session{}, nil, &realtimeauth.LimitError{Key: a.Key, RetryAfter: time.Duration(toInt64(v[3]))}
	case "too_soon":
		return sess, nil, realtimeauth.ErrRefreshTooSoon
	default:
		if e, ok := refreshErrors[res]; ok {
			return realtimeauth.Session{}, nil, e
		}
		return realtimeauth.Session{}, nil, wrap("session refresh", fmt.Errorf("unexpected reply %q", res))
	}
}

// allowSubject charges the subject's allowances at subjPos, in its
// bucket, all or none.
func (s *SessionStore) allowSubject(ctx context.Context, req realtimeauth.RefreshRequest, subjPos []int) error {
	utag := s.cfg.tag(s.cfg.bucketOf(req.Subject))
	ukeys, uargs, err := s.allowanceKeys(nil, nil, utag, req.Allowances, subjPos, req.Now)
	if err != nil {
		return err
	}
	u, err := allowScript.Run(ctx, s.client, ukeys, uargs...).Slice()
	if err != nil {
		return wrap("session refresh", err)
	}
	if r, _ := u[0].(string); r == "ok" {
		return nil
	}
	a := req.Allowances[subjPos[toInt(u[1])-1]]
	return &realtimeauth.LimitError{Key: a.Key, RetryAfter: time.Duration(toInt64(u[2]))}
}

// undoRefresh takes back the bucket's step of a refresh (its reply v):
// the refresh and the client's charges. It runs even when the request's
// context has ended, bounded by its own.
func (s *SessionStore) undoRefresh(ctx context.Context, req realtimeauth.RefreshRequest, tag string, clientPos []int, v []any) {
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
