package realtimeauth

import (
	"context"
	"hash/maphash"
	"time"
)

// The memory store's allowances: per window length, allowShards
// counterTables keyed by the allowance key's hash, under the store's lock.
// The tables are split only so that each sweeps itself (at most once per
// sub-window, when next used) in a 64th of the time: one table of a
// million keys swept at once held the lock for tens of milliseconds.
const allowShards = 64

type allowTables [allowShards]counterTable

// undoEntry is a counter state to restore when a later allowance or cap
// refuses.
type undoEntry struct {
	t   *counterTable
	hk  uint64
	old uint64
	had bool
}

// charge checks and counts every allowance, or none: on a refusal it rolls
// back what it counted and returns a *LimitError. What it counted stays
// recorded for rollback until the next charge.
func (m *memoryStore) charge(as []Allowance, now time.Time) error {
	m.undo = m.undo[:0]
	for _, a := range as {
		if a.Limit < 1 || a.Limit > maxLimit || a.Window <= 0 || a.Window%4 != 0 {
			m.rollback()
			return checkLimit("Allowance "+a.Key, a.Limit, a.Window)
		}
		ts := m.allow[a.Window]
		if ts == nil {
			ts = new(allowTables)
			m.allow[a.Window] = ts
		}
		hk := maphash.String(m.seed, a.Key)
		t := &ts[hk%allowShards]
		d, old, had := t.allow(newWindowRule(a.Limit, a.Window), hk, now, max(1, m.maxKeys/allowShards))
		if !d.Allowed {
			m.rollback()
			return &LimitError{Key: a.Key, RetryAfter: d.RetryAfter}
		}
		m.undo = append(m.undo, undoEntry{t, hk, old, had})
	}
	return nil
}

// rollback undoes the last charge.
func (m *memoryStore) rollback() {
	for i := len(m.undo) - 1; i >= 0; i-- {
		u := m.undo[i]
		if u.had {
			u.t.set(u.hk, u.old)
		} else {
			u.t.del(u.hk)
		}
	}
	m.undo = m.undo[:0]
}

// Refund implements SessionStore.
func (m *memoryStore) Refund(_ context.Context, req RefundRequest) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, a := range req.Allowances {
		if a.Limit < 1 || a.Limit > maxLimit || a.Window <= 0 || a.Window%4 != 0 {
			continue // never charged: Open and Refresh refuse it
		}
		ts := m.allow[a.Window]
		if ts == nil {
			continue
		}
		hk := maphash.String(m.seed, a.Key)
		ts[hk%allowShards].refund(newWindowRule(a.Limit, a.Window), hk, req.ChargedAt)
	}
	return nil
}
