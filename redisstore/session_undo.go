package redisstore

// What the handler's undo calls when a mint or a call fails after the
// store said yes: GiveBack, Restore and Refund.

import (
	"context"
	"strings"
	"time"

	"github.com/realtimeauth/realtimeauth"
)

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
