package bench

// The attacks of issue 10: what each one sends, and the most mints and
// log lines it may cause (docs/limits.md). attack.go runs them.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/realtimeauth/realtimeauth"
)

var attacks = []attack{
	{
		name: "slow-body",
		what: "token and refresh requests from one address whose bodies trickle in over 2 s (a third of the run if shorter), under an upstream budget of 2/s (burst 20)",
		opts: func(AttackConfig) []realtimeauth.Option {
			return []realtimeauth.Option{realtimeauth.WithLimits(realtimeauth.Limits{UpstreamRate: 2, UpstreamBurst: 20})}
		},
		run: runSlowBody,
		formula: func(_ AttackConfig, d time.Duration) (int, string) {
			perClient := MostAdmitted(defaultMints, limitWindow, d)
			budget := 20 + int(2*d.Seconds())
			return min(perClient, budget), fmt.Sprintf("min(mints/client %d, budget 20+2/s·%v = %d)", perClient, d.Round(100*time.Millisecond), budget)
		},
	},
	{
		name: "refresh-loop",
		what: "one address opens sessions at its limit and refreshes every one at the minimum interval (1 s here)",
		run:  runRefreshLoop,
		formula: func(_ AttackConfig, d time.Duration) (int, string) {
			n := MostAdmitted(defaultMints, limitWindow, d)
			return n, fmt.Sprintf("mints/client M(30/min) over %v = %d", d.Round(100*time.Millisecond), n)
		},
	},
	{
		name: "one-address",
		what: "token requests as fast as they are answered, from one address",
		run:  runOneAddress,
		formula: func(_ AttackConfig, d time.Duration) (int, string) {
			n := MostAdmitted(defaultNewSessions, limitWindow, d)
			return n, fmt.Sprintf("new sessions/client M(10/min) over %v = %d", d.Round(100*time.Millisecond), n)
		},
	},
	{
		name: "many-addresses",
		what: "12 token requests from each of many addresses (127.10.x.y) in turn, over and over, into a store capped at half of what one turn asks",
		opts: func(cfg AttackConfig) []realtimeauth.Option {
			return maxSessionsOption(cfg.Addresses * defaultNewSessions / 2)
		},
		run: runManyAddresses,
		formula: func(cfg AttackConfig, d time.Duration) (int, string) {
			n := cfg.Addresses * MostAdmitted(defaultNewSessions, limitWindow, d)
			return n, fmt.Sprintf("%d addresses × M(10/min) over %v = %d", cfg.Addresses, d.Round(100*time.Millisecond), n)
		},
	},
	{
		name: "one-48",
		what: "a token request from each /64 of one IPv6 /48 (2001:db8:48::/48) in turn, through a trusted proxy's X-Forwarded-For",
		opts: func(AttackConfig) []realtimeauth.Option {
			return []realtimeauth.Option{realtimeauth.WithTrustedProxies("127.0.0.1/32")}
		},
		run: runOnePrefix,
		formula: func(cfg AttackConfig, d time.Duration) (int, string) {
			perPrefix := MostAdmitted(defaultPrefixShare*defaultNewSessions, limitWindow, d)
			each := cfg.Prefixes * MostAdmitted(defaultNewSessions, limitWindow, d)
			return min(perPrefix, each), fmt.Sprintf("new sessions/48 M(16×10/min) over %v = %d", d.Round(100*time.Millisecond), perPrefix)
		},
	},
	{
		name: "refusal-flood",
		what: "refusals that are not strikes (foreign origin, over the rate limit, refresh too soon) from one address, as fast as answered",
		run:  runRefusalFlood,
		formula: func(_ AttackConfig, d time.Duration) (int, string) {
			n := MostAdmitted(defaultMints, limitWindow, d)
			return n, fmt.Sprintf("mints/client M(30/min) over %v = %d", d.Round(100*time.Millisecond), n)
		},
		logFormula: func(_ AttackConfig, d time.Duration) int64 {
			// Per event kind and client, 10 lines a minute and one
			// "suppressed" line for the rest; five kinds here
			// (origin_rejected, rate_limited, refresh_too_soon,
			// token_issued, token_refreshed), in every minute begun and
			// the one after, where the last summary may fall.
			minutes := int64(math.Ceil(d.Minutes())) + 1
			return 5 * 11 * minutes
		},
	},
	{
		name: "health-flood",
		what: "GET /health as fast as answered, from many connections",
		run:  runHealthFlood,
		formula: func(AttackConfig, time.Duration) (int, string) {
			return 0, "health mints nothing: 0"
		},
		logFormula: func(AttackConfig, time.Duration) int64 { return 0 },
	},
}

var attackerAddr = netip.MustParseAddr("127.50.0.1")

// sessionOf returns the sessionId of a token answer, or "".
func sessionOf(r response) string {
	var v struct {
		SessionID string `json:"sessionId"`
	}
	_ = json.Unmarshal(r.body, &v)
	return v.SessionID
}

// runSlowBody: half the workers send token requests, half refresh
// requests of a session opened first, every body trickled in a byte at a
// time over about 2 s.
func runSlowBody(ctx context.Context, rig *attackRig, cfg AttackConfig) {
	c := &client{server: rig.addr, t: newTally()}
	r, _ := c.send(kindToken, attackerAddr, reqToken, false)
	c.close()
	rig.merge(c.t)
	session := sessionOf(r)
	workers(ctx, rig, cfg.Concurrency, func(ctx context.Context, c *client, w int) {
		body := `{` + strings.Repeat(" ", 19) + `}`
		if w%2 == 1 && session != "" {
			body = `{"sessionId":"` + session + `"}`
		}
		for ctx.Err() == nil {
			path := BasePath + "/token"
			if w%2 == 1 && session != "" {
				path = BasePath + "/refresh-token"
			}
			slowRequest(ctx, c, path, body, min(slowBodyTrickle, cfg.Duration/3))
		}
	})
}

// slowRequest sends headers at once and the body a byte at a time over
// about d, then reads the answer, on a connection of its own.
func slowRequest(ctx context.Context, c *client, path, body string, d time.Duration) {
	c.t.sent++
	conn, err := dialFrom(c.server, attackerAddr)
	if err != nil {
		c.t.lost++
		return
	}
	defer conn.Close()
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: load.test\r\nOrigin: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, Origin, len(body))
	_ = conn.c.SetDeadline(time.Now().Add(d + requestTimeout))
	if _, err := io.WriteString(conn.c, head); err != nil {
		c.t.lost++
		return
	}
	step := d / time.Duration(len(body))
	for i := range len(body) {
		select {
		case <-ctx.Done():
			c.t.sent-- // not an answer: the attack is over
			return
		case <-time.After(step):
		}
		if _, err := conn.c.Write([]byte{body[i]}); err != nil {
			c.t.lost++
			return
		}
	}
	var buf []byte
	r, err := conn.do(nil, requestTimeout, &buf)
	if err != nil {
		c.t.lost++
		return
	}
	c.t.count(kindToken, r.status)
}

// runRefreshLoop: one address opens sessions as fast as its limit allows
// (waiting out each Retry-After, so it earns no strikes) and refreshes
// every one of them as soon as the minimum interval allows, over and over:
// the most mints one client could buy before every mint was charged.
func runRefreshLoop(ctx context.Context, rig *attackRig, _ AttackConfig) {
	workers(ctx, rig, 1, func(ctx context.Context, c *client, _ int) {
		type session struct {
			id  string
			due time.Time
		}
		var sessions []session
		nextToken := time.Now()
		for ctx.Err() == nil {
			now := time.Now()
			if !now.Before(nextToken) {
				r, ok := c.send(kindToken, attackerAddr, reqToken, false)
				switch {
				case ok && r.status == 200:
					sessions = append(sessions, session{sessionOf(r), now.Add(attackRefreshEvery)})
				case ok && r.status == 429:
					nextToken = now.Add(retryAfterOf(r))
				default:
					nextToken = now.Add(time.Second)
				}
			}
			next := nextToken
			kept := sessions[:0]
			for _, s := range sessions {
				if !now.Before(s.due) {
					r, ok := c.send(kindRefresh, attackerAddr, refreshRequest(s.id), false)
					switch {
					case ok && r.status == 429:
						s.due = now.Add(retryAfterOf(r))
					case ok && r.status != 200:
						continue // evicted, expired or used up: forget it
					default:
						s.due = now.Add(attackRefreshEvery)
					}
				}
				kept = append(kept, s)
				if s.due.Before(next) {
					next = s.due
				}
			}
			sessions = kept
			pause(ctx, min(max(time.Until(next), time.Millisecond), 50*time.Millisecond))
		}
	})
}

// retryAfterOf is an answer's Retry-After, 1s when it has none.
func retryAfterOf(r response) time.Duration {
	var s int
	if _, err := fmt.Sscan(r.retryAfter, &s); err != nil || s < 1 {
		s = 1
	}
	return time.Duration(s) * time.Second
}

func pause(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// runOneAddress: token requests as fast as answered, from one address.
func runOneAddress(ctx context.Context, rig *attackRig, cfg AttackConfig) {
	workers(ctx, rig, cfg.Concurrency, func(ctx context.Context, c *client, _ int) {
		for ctx.Err() == nil {
			c.send(kindFlood, attackerAddr, reqToken, false)
		}
	})
}

// runManyAddresses: 12 token requests from each of cfg.Addresses source
// addresses, 127.10.0.0 onwards, and again from the first when all have
// had their turn, until the time is up: the store stays full while the
// legitimate client arrives.
func runManyAddresses(ctx context.Context, rig *attackRig, cfg AttackConfig) {
	var next atomic.Int64
	workers(ctx, rig, cfg.Concurrency, func(ctx context.Context, c *client, _ int) {
		for ctx.Err() == nil {
			i := (next.Add(1) - 1) % int64(cfg.Addresses)
			src := netip.AddrFrom4([4]byte{127, 10, byte(i >> 8), byte(i)})
			for range defaultNewSessions + 2 {
				c.send(kindFlood, src, reqToken, false)
			}
			c.close()
		}
	})
}

// runOnePrefix: one token request from each of cfg.Prefixes /64s of
// 2001:db8:48::/48 in turn (again from the first when all have had their
// turn, until the time is up), all from the trusted proxy 127.0.0.1 with
// the /64's address in X-Forwarded-For.
func runOnePrefix(ctx context.Context, rig *attackRig, cfg AttackConfig) {
	var next atomic.Int64
	proxy := netip.MustParseAddr("127.0.0.1")
	workers(ctx, rig, cfg.Concurrency, func(ctx context.Context, c *client, _ int) {
		for ctx.Err() == nil {
			i := (next.Add(1) - 1) % int64(cfg.Prefixes)
			xff := fmt.Sprintf("2001:db8:48:%x::1", i)
			c.send(kindFlood, proxy, buildRequest("POST", BasePath+"/token", [][2]string{hdrOrigin, {"X-Forwarded-For", xff}}, ""), false)
		}
	})
}

// runRefusalFlood: from one address, in turn: a token request with a
// foreign origin, one over the rate limit (after the first ten), and a
// refresh too soon of its own session.
func runRefusalFlood(ctx context.Context, rig *attackRig, cfg AttackConfig) {
	foreign := buildRequest("POST", BasePath+"/token", [][2]string{{"Origin", "https://evil.example"}}, "")
	var session atomic.Value
	session.Store("")
	workers(ctx, rig, min(cfg.Concurrency, 8), func(ctx context.Context, c *client, w int) {
		for i := 0; ctx.Err() == nil; i++ {
			switch (i + w) % 3 {
			case 0:
				c.send(kindBadOrigin, attackerAddr, foreign, false)
			case 1:
				if r, ok := c.send(kindFlood, attackerAddr, reqToken, false); ok && r.status == 200 {
					session.Store(sessionOf(r))
				}
			default:
				if id := session.Load().(string); id != "" {
					c.send(kindRefresh, attackerAddr, refreshRequest(id), false)
				}
			}
		}
	})
}

// runHealthFlood: GET /health as fast as answered, from 127.60.0.x.
func runHealthFlood(ctx context.Context, rig *attackRig, cfg AttackConfig) {
	workers(ctx, rig, cfg.Concurrency, func(ctx context.Context, c *client, w int) {
		src := netip.AddrFrom4([4]byte{127, 60, 0, byte(w%250) + 1})
		for ctx.Err() == nil {
			c.send(kindHealth, src, reqHealth, false)
		}
	})
}
