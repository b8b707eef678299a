package redisstore

// Ending sessions: Revoke, RevokeSubject and Delete.

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/redis/go-redis/v9"
)

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
