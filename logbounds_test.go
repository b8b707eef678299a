package realtimeauth_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/realtimeauth/realtimeauth"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Attacks on the log's allowance that the security review found on the
// first version of the admission path.

// logLines counts the lines and bytes written to it, and the longest line.
type logLines struct {
	mu                        sync.Mutex
	lines, bytes, longest, at int
}

func (c *logLines) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bytes += len(p)
	for _, b := range p {
		c.at++
		if b == '\n' {
			c.lines++
			c.longest = max(c.longest, c.at)
			c.at = 0
		}
	}
	return len(p), nil
}

func (c *logLines) counts() (lines, bytes, longest int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lines, c.bytes, c.longest
}

// TestAttackLogFloodFromOneSlash48: one IPv6 /48 sending one refused
// request (no strike: a refused origin) from each of 2,000 of its /64s
// writes the 10 lines a minute of one client, not a line each.
func TestAttackLogFloodFromOneSlash48(t *testing.T) {
	lc := &logLines{}
	r := newRig(t, realtimeauth.WithLogger(newTextLogger(lc)))
	evil := map[string]string{"Origin": "https://evil.example.net"}
	for i := range 2000 {
		w := serveReq(r.h, req{path: tokenURL, remote: fmt.Sprintf("[2001:db8:7:%x::1]:443", i), headers: evil})
		require.Equal(t, http.StatusForbidden, w.Code)
	}
	lines, bytes, _ := lc.counts()
	assert.Equal(t, 10, lines, "one /48 wrote %d lines (%d bytes) in one minute", lines, bytes)
}

// TestAttackLogLineSizeIsBounded: an event's line carries the User-Agent
// cut to 256 bytes, so ten lines stay small whatever the client sends.
func TestAttackLogLineSizeIsBounded(t *testing.T) {
	lc := &logLines{}
	ev := &events{}
	r := newRig(t, realtimeauth.WithLogger(newTextLogger(lc)), realtimeauth.WithEventHook(ev.Hook))
	ua := strings.Repeat("A", 256<<10)
	for range 10 {
		w := serveReq(r.h, req{path: tokenURL, headers: map[string]string{"Origin": "https://evil.example.net", "User-Agent": ua}})
		require.Equal(t, http.StatusForbidden, w.Code)
	}
	lines, bytes, longest := lc.counts()
	require.Equal(t, 10, lines)
	assert.LessOrEqual(t, longest, 1024, "a %d-byte log line; %d bytes for ten", longest, bytes)
	for _, e := range ev.All() {
		assert.Len(t, e.UserAgent, 256)
	}
}

// TestAttackLogFloodHidesOthersEvents: a flood of one kind from 10,000
// addresses fills that kind's table of clients, not the others': thirty
// clients blocked afterwards each get their client_blocked line.
func TestAttackLogFloodHidesOthersEvents(t *testing.T) {
	for _, tc := range []struct {
		name   string
		remote func(i int) string
	}{
		{"one /48", func(i int) string { return fmt.Sprintf("[2001:db8:9:%x::1]:443", i) }},
		{"ipv4", func(i int) string { return fmt.Sprintf("10.%d.%d.1:1", i/250, i%250) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs := &syncBuffer{}
			r := newRig(t, realtimeauth.WithLogger(newTextLogger(logs)))
			evil := map[string]string{"Origin": "https://evil.example.net"}
			for i := range 10_001 {
				serveReq(r.h, req{path: tokenURL, remote: tc.remote(i), headers: evil})
			}
			for c := range 30 {
				for range 10 { // ten strikes: malformed JSON
					serveReq(r.h, req{path: tokenURL, remote: fmt.Sprintf("192.0.2.%d:1", c+1), body: "{"})
				}
			}
			assert.Equal(t, 30, strings.Count(logs.String(), "event=client_blocked"), "client_blocked lines of 30 blocked clients")
		})
	}
}
