package realtimeauth

import (
	"hash/maphash"
	"time"
)

// The MemoryStore's allowances: one counterTable per window length, keyed
// by the allowance key's hash, under the store's lock.

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
func (m *MemoryStore) charge(as []Allowance, now time.Time) error {
	m.undo = m.undo[:0]
	for _, a := range as {
		if a.Limit < 1 || a.Limit > maxLimit || a.Window <= 0 || a.Window%4 != 0 {
			m.rollback()
			return checkLimit("Allowance "+a.Key, a.Limit, a.Window)
		}
		t := m.allow[a.Window]
		if t == nil {
			t = &counterTable{}
			m.allow[a.Window] = t
		}
		hk := maphash.String(m.seed, a.Key)
		d, old, had := t.allow(newWindowRule(a.Limit, a.Window), hk, now, m.maxKeys)
		if !d.Allowed {
			m.rollback()
			return &LimitError{Key: a.Key, RetryAfter: d.RetryAfter}
		}
		m.undo = append(m.undo, undoEntry{t, hk, old, had})
	}
	return nil
}

// rollback undoes the last charge.
func (m *MemoryStore) rollback() {
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
