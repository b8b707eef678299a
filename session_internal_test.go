package realtimeauth

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// hasPointers reports whether values of t hold anything the garbage
// collector must trace.
func hasPointers(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Array:
		return t.Len() > 0 && hasPointers(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if hasPointers(t.Field(i).Type) {
				return true
			}
		}
		return false
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return false
	}
	return true
}

// TestMemoryStoreEntriesHoldNoPointers: what the store keeps per session
// (the ID map, the slab, the expiry index) is invisible to the collector;
// only the per-client and per-subject side tables hold strings.
func TestMemoryStoreEntriesHoldNoPointers(t *testing.T) {
	m := newMemoryStore(memoryMaxKeys)
	for _, v := range []any{m.sessions, m.entries, m.free, m.expiry.buckets, m.expiry.seconds, m.cinfo, m.sinfo, m.heavy.heads} {
		typ := reflect.TypeOf(v)
		switch typ.Kind() {
		case reflect.Map:
			assert.False(t, hasPointers(typ.Key()) || hasPointers(typ.Elem()), "%v", typ)
		default:
			assert.False(t, hasPointers(typ.Elem()), "%v", typ)
		}
	}
	assert.True(t, hasPointers(reflect.TypeOf("")), "the check itself")
}

// check verifies every index of the store against its entries.
func (m *memoryStore) check(t *testing.T) {
	t.Helper()
	live, clientRefs, subjectRefs, subjectLive := 0, map[int32]int32{}, map[int32]int32{}, map[int32]int32{}
	for id, slot := range m.sessions {
		e := m.entries[slot]
		require.Equal(t, id, e.id)
		clientRefs[e.client]++
		if e.subject != none {
			subjectRefs[e.subject]++
			if !e.revoked {
				subjectLive[e.subject]++
			}
		}
		if !e.revoked {
			live++
		}
	}
	require.Equal(t, live, m.live, "live")
	inHeap := map[int64]bool{}
	for _, k := range m.expiry.seconds {
		require.False(t, inHeap[k], "second %d twice", k)
		inHeap[k] = true
	}
	linked := 0
	for k, b := range m.expiry.buckets {
		require.True(t, inHeap[k], "bucket %d not in the heap", k)
		prev := int32(none)
		for s := b.head; s != none; s = m.entries[s].enext {
			e := m.entries[s]
			require.Equal(t, k, expirySecond(e.expires))
			require.Equal(t, prev, e.eprev)
			if prev != none {
				require.LessOrEqual(t, m.entries[prev].expires, e.expires, "expiry order")
			}
			prev = s
			linked++
		}
		require.Equal(t, prev, b.tail)
	}
	require.Equal(t, len(m.sessions), linked, "sessions in the expiry index")
	inBuckets := 0
	for n, h := range m.heavy.heads {
		prev := int32(none)
		for ci := h; ci != none; ci = m.cinfo[ci].bnext {
			require.Equal(t, int32(n), m.cinfo[ci].live, "bucket %d", n)
			require.Equal(t, prev, m.cinfo[ci].bprev)
			prev = ci
			inBuckets++
		}
	}
	most := int32(0)
	for ci, key := range m.clients.keys {
		if key == "" {
			continue
		}
		c := m.cinfo[ci]
		require.Equal(t, clientRefs[int32(ci)], m.clients.refs[ci], "client %s refs", key)
		n, prev := int32(0), int32(none)
		for s := c.head; s != none; s = m.entries[s].next {
			e := m.entries[s]
			require.False(t, e.revoked)
			require.Equal(t, int32(ci), e.client)
			require.Equal(t, prev, e.prev)
			if prev != none {
				require.LessOrEqual(t, m.entries[prev].lastIssued, e.lastIssued, "LRU order")
			}
			prev = s
			n++
		}
		require.Equal(t, prev, c.tail)
		require.Equal(t, c.live, n, "client %s live", key)
		most = max(most, n)
	}
	require.Equal(t, most, m.heavy.max, "heaviest")
	nonzero := 0
	for ci, key := range m.clients.keys {
		if key != "" && m.cinfo[ci].live > 0 {
			nonzero++
		}
	}
	require.Equal(t, nonzero, inBuckets)
	for si, key := range m.subjects.keys {
		if key == "" {
			continue
		}
		require.Equal(t, subjectRefs[int32(si)], m.subjects.refs[si], "subject %s refs", key)
		require.Equal(t, subjectLive[int32(si)], m.sinfo[si].live, "subject %s live", key)
		n := int32(0)
		for s := m.sinfo[si].head; s != none; s = m.entries[s].snext {
			require.Equal(t, int32(si), m.entries[s].subject)
			n++
		}
		require.Equal(t, subjectRefs[int32(si)], n)
	}
}

// TestMemoryStoreIndexes drives the store with random operations and checks
// every index after each.
func TestMemoryStoreIndexes(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(5, 8))
	m := newMemoryStore(memoryMaxKeys)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var opened []Session
	pick := func() Session {
		if len(opened) == 0 || rng.IntN(20) == 0 {
			return Session{ID: "00000000-0000-4000-8000-000000000000"}
		}
		return opened[rng.IntN(len(opened))]
	}
	ips := []string{"192.0.2.1", "2001:db8::1", "not an address", "2001:DB8::1"}
	for step := range 5000 {
		now = now.Add(time.Duration(rng.IntN(3000)) * time.Millisecond)
		switch op := rng.IntN(10); {
		case op < 4:
			s, _, err := m.Open(ctx, OpenRequest{
				Now: now, ExpiresAt: now.Add(time.Duration(1+rng.IntN(600)) * time.Second),
				ClientIP: ips[rng.IntN(len(ips))], Client: fmt.Sprint("c", rng.IntN(6)),
				Subject:      []string{"", "alice", "bob"}[rng.IntN(3)],
				MaxPerClient: rng.IntN(4), MaxPerSubject: rng.IntN(5), MaxSessions: rng.IntN(15),
			})
			if err == nil {
				opened = append(opened, s)
			}
		case op < 6:
			p := pick()
			s, err := m.Refresh(ctx, RefreshRequest{Now: now, ID: p.ID, ClientIP: p.ClientIP, Subject: p.Subject, MaxRefreshes: 5})
			if err == nil && rng.IntN(2) == 0 {
				require.NoError(t, m.GiveBack(ctx, s.ID, s.LastIssuedAt, now.Add(-time.Duration(rng.IntN(60_000))*time.Millisecond)))
			}
		case op == 6:
			_, _ = m.Revoke(ctx, pick().ID, now)
		case op == 7:
			_, _ = m.RevokeSubject(ctx, "alice", now)
		case op == 8:
			require.NoError(t, m.Delete(ctx, pick().ID))
		default:
			_, _ = m.Count(ctx, now)
		}
		m.check(t)
		if t.Failed() {
			t.Fatalf("step %d", step)
		}
	}
	require.NotEmpty(t, opened)
}

func TestParseID(t *testing.T) {
	id, ok := parseID("0123abcd-ef01-4567-89ab-cdef01234567")
	require.True(t, ok)
	assert.Equal(t, [16]byte{0x01, 0x23, 0xab, 0xcd, 0xef, 0x01, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67}, id)
	for _, bad := range []string{"", "0123ABCD-ef01-4567-89ab-cdef01234567", "{0123abcd-ef01-4567-89ab-cdef01234567}",
		"0123abcd0ef01-4567-89ab-cdef01234567", "0123abcd-ef01-4567-89ab-cdef0123456g", "0123abcdef0145678-9ab-cdef01234567"} {
		_, ok := parseID(bad)
		assert.False(t, ok, bad)
	}
}
