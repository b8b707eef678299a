package main

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
	"github.com/realtimeauth/realtimeauth/redisstore"
	"github.com/realtimeauth/realtimeauth/redisstore/redistest"
)

// pair is two example servers sharing one Redis database, minting at one
// fake OpenAI that counts the mints.
type pair struct {
	addrs [2]string
	mints *atomic.Int64
	store *redisstore.SessionStore // for Count, on the servers' database
}

// startPair starts two example servers (run, in-process, each on its own
// 127.0.0.1 port) on database db of rds, with vars on top of the common
// settings.
func startPair(t *testing.T, rds *redistest.Server, db int, vars map[string]string) pair {
	t.Helper()
	up := &realtimeauthtest.Upstream{Key: "sk-two-servers"}
	mints := &atomic.Int64{}
	up.Fail = func(r *http.Request) int {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/realtime/client_secrets") {
			mints.Add(1)
		}
		return 0
	}
	upSrv := httptest.NewServer(up)
	t.Cleanup(upSrv.Close)
	env := map[string]string{
		"ADDR": "127.0.0.1:0", "OPENAI_API_KEY": "sk-two-servers", "OPENAI_BASE_URL": upSrv.URL + "/v1",
		"REDIS_URL": fmt.Sprintf("redis://%s/%d", rds.Addr, db),
		// Going over an allowance is a strike: a threshold this high keeps
		// the Redis abuse guard in every request's path without blocking
		// the clients that the test refuses on purpose.
		"VOICE_AGENT_BLOCK_THRESHOLD": "100000",
	}
	for k, v := range vars {
		env[k] = v
	}
	var p pair
	p.addrs[0], _, _ = startServer(t, env)
	p.addrs[1], _, _ = startServer(t, env)
	p.mints = mints
	rdb := redis.NewClient(&redis.Options{Addr: rds.Addr, DB: db})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	store, err := redisstore.NewSessionStore(ctx, rdb)
	require.NoError(t, err)
	p.store = store
	return p
}

// live is the number of live sessions in the servers' Redis.
func (p pair) live(t *testing.T) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := p.store.Count(ctx, time.Now())
	require.NoError(t, err)
	return n
}

// loopClient is an HTTP client whose connections come from one loopback
// address, which the servers (no trusted proxies) take as the client's.
type loopClient struct {
	ip string
	c  *http.Client
}

func from(t *testing.T, ip string) *loopClient {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &loopClient{ip: ip, c: &http.Client{Transport: tr, Timeout: 20 * time.Second}}
}

// answer is what a token or refresh request got.
type answer struct {
	status    int
	code      string
	sessionID string
}

func (c *loopClient) post(t *testing.T, addr, path, body string) answer {
	t.Helper()
	res, err := c.c.Post("http://"+addr+"/api/voice-agent"+path, "application/json", strings.NewReader(body))
	if !assert.NoError(t, err, "%s from %s", path, c.ip) {
		return answer{}
	}
	defer res.Body.Close()
	var m struct {
		Code      string `json:"code"`
		SessionID string `json:"sessionId"`
	}
	assert.NoError(t, json.NewDecoder(res.Body).Decode(&m))
	return answer{res.StatusCode, m.Code, m.SessionID}
}

func (c *loopClient) token(t *testing.T, addr string) answer { return c.post(t, addr, "/token", "") }

func (c *loopClient) refresh(t *testing.T, addr, id string) answer {
	return c.post(t, addr, "/refresh-token", `{"sessionId":"`+id+`"}`)
}

// concurrently runs n requests at once (at most 32 in flight, released
// together) and tallies their answers by status and code.
func concurrently(n int, do func(i int) answer) (map[string]int, []answer) {
	got := make([]answer, n)
	start := make(chan struct{})
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			sem <- struct{}{}
			defer func() { <-sem }()
			got[i] = do(i)
		})
	}
	close(start)
	wg.Wait()
	tally := map[string]int{}
	for _, a := range got {
		tally[fmt.Sprintf("%d %s", a.status, a.code)]++
	}
	return tally, got
}

// TestTwoServersOneRedisHoldEveryCap runs pairs of example servers on one
// real Redis (a database per pair) and drives concurrent requests split
// across the two: every allowance and cap holds exactly across instances,
// counted at the servers' answers, at the fake OpenAI's mints and in Redis.
func TestTwoServersOneRedisHoldEveryCap(t *testing.T) {
	rds := redistest.Start(t)
	began := time.Now()
	t.Cleanup(func() { t.Logf("%v for all four", time.Since(began).Round(time.Millisecond)) })

	t.Run("new-session allowance", func(t *testing.T) {
		const n = 20
		p := startPair(t, rds, 1, map[string]string{"VOICE_AGENT_RATE_LIMIT": fmt.Sprint(n),
			"VOICE_AGENT_MINT_LIMIT": fmt.Sprint(4 * n), "VOICE_AGENT_MAX_SESSIONS_PER_CLIENT": fmt.Sprint(n)})
		c := from(t, "127.0.0.2")
		tally, _ := concurrently(2*n, func(i int) answer { return c.token(t, p.addrs[i%2]) })
		assert.Equal(t, map[string]int{"200 ": n, "429 rate_limited": n}, tally)
		assert.Equal(t, int64(n), p.mints.Load(), "minted")
		assert.Equal(t, n, p.live(t), "live sessions")
		t.Logf("%d token requests from one client: %v; %d minted", 2*n, tally, p.mints.Load())
	})

	t.Run("mint allowance", func(t *testing.T) {
		const m, opened, refreshes = 12, 4, 36
		p := startPair(t, rds, 2, map[string]string{"VOICE_AGENT_MINT_LIMIT": fmt.Sprint(m),
			"VOICE_AGENT_RATE_LIMIT": fmt.Sprint(m), "VOICE_AGENT_REFRESH_MIN_INTERVAL": "0s"})
		c := from(t, "127.0.0.3")
		var ids []string
		for i := range opened {
			a := c.token(t, p.addrs[i%2])
			require.Equal(t, http.StatusOK, a.status, a.code)
			ids = append(ids, a.sessionID)
		}
		tally, _ := concurrently(refreshes, func(i int) answer {
			return c.refresh(t, p.addrs[i%2], ids[i/2%opened]) // each session on both servers
		})
		assert.Equal(t, map[string]int{"200 ": m - opened, "429 rate_limited": refreshes - (m - opened)}, tally)
		assert.Equal(t, int64(m), p.mints.Load(), "minted: the allowance, opens and refreshes together")
		t.Logf("%d opens, then %d refreshes: %v; %d minted", opened, refreshes, tally, p.mints.Load())
	})

	t.Run("per-client live-session cap", func(t *testing.T) {
		const k = 4
		p := startPair(t, rds, 3, map[string]string{"VOICE_AGENT_MAX_SESSIONS_PER_CLIENT": fmt.Sprint(k),
			"VOICE_AGENT_RATE_LIMIT": "100", "VOICE_AGENT_MINT_LIMIT": "1000", "VOICE_AGENT_REFRESH_MIN_INTERVAL": "0s"})

		// In turn, alternately on the two servers: the first three are
		// the least recently used, evicted.
		c := from(t, "127.0.0.4")
		var ids []string
		for i := range k + 3 {
			a := c.token(t, p.addrs[i%2])
			require.Equal(t, http.StatusOK, a.status, a.code)
			ids = append(ids, a.sessionID)
		}
		for i, id := range ids {
			if i < 3 {
				for _, addr := range p.addrs {
					a := c.refresh(t, addr, id)
					assert.Equal(t, answer{http.StatusNotFound, "session_not_found", ""}, a, "evicted session %d on %s", i, addr)
				}
				continue
			}
			a := c.refresh(t, p.addrs[(i+1)%2], id) // on the other server
			assert.Equal(t, http.StatusOK, a.status, "live session %d: %s", i, a.code)
		}
		assert.Equal(t, k, p.live(t))

		// At once, split over the two: all admitted, exactly k left.
		d := from(t, "127.0.0.5")
		tally, got := concurrently(k+3, func(i int) answer { return d.token(t, p.addrs[i%2]) })
		assert.Equal(t, map[string]int{"200 ": k + 3}, tally)
		left := map[string]int{}
		for i, a := range got {
			r := d.refresh(t, p.addrs[(i+1)%2], a.sessionID)
			left[fmt.Sprintf("%d %s", r.status, r.code)]++
		}
		assert.Equal(t, map[string]int{"200 ": k, "404 session_not_found": 3}, left)
		assert.Equal(t, 2*k, p.live(t))
		assert.Equal(t, int64(2*(k+3+k)), p.mints.Load(), "minted: every open and every live refresh")
		t.Logf("k=%d: %d opened in turn, 3 evicted (404 on both servers), %d refreshed; %d opened at once: refreshes %v; %d live, %d minted",
			k, k+3, k, k+3, left, p.live(t), p.mints.Load())
	})

	t.Run("total cap", func(t *testing.T) {
		// The example server keeps redisstore's default 256 buckets (it
		// has no variable for them), and redisstore applies MaxSessions
		// per bucket, ceil(MaxSessions/256) each: 256 is one session per
		// bucket, so the store holds exactly 256. The flood is two
		// addresses per bucket, found with redisstore's bucket function
		// (FNV-1a of the IPv4 address, modulo the bucket count), from
		// 127.0.1.1 on: every bucket is filled, then refilled by its
		// second client, which evicts the first (the bucket's heaviest).
		const buckets, maxSessions = redisstore.DefaultBuckets, 256
		p := startPair(t, rds, 4, map[string]string{"VOICE_AGENT_MAX_SESSIONS": fmt.Sprint(maxSessions),
			"VOICE_AGENT_REFRESH_MIN_INTERVAL": "0s"})
		bucketOf := func(ip string) int {
			h := fnv.New32a()
			_, _ = h.Write([]byte(ip))
			return int(h.Sum32() % buckets)
		}
		perBucket := make([]int, buckets)
		var flood []*loopClient
		var newcomer string
		for i := 256; len(flood) < 2*buckets; i++ {
			ip := fmt.Sprintf("127.0.%d.%d", i/256, i%256)
			if i%256 == 0 || i%256 == 255 {
				continue
			}
			if b := bucketOf(ip); perBucket[b] < 2 {
				perBucket[b]++
				flood = append(flood, from(t, ip))
			} else if newcomer == "" {
				newcomer = ip
			}
		}
		require.NotEmpty(t, newcomer)
		tally, _ := concurrently(len(flood), func(i int) answer { return flood[i].token(t, p.addrs[i%2]) })
		assert.Equal(t, map[string]int{"200 ": len(flood)}, tally, "each evicts its bucket's heaviest")
		assert.Equal(t, maxSessions, p.live(t), "full, and no fuller")
		assert.Equal(t, int64(len(flood)), p.mints.Load())

		nc := from(t, newcomer)
		first := nc.token(t, p.addrs[1])
		assert.Equal(t, http.StatusOK, first.status, "a newcomer on the other server: %s", first.code)
		assert.Equal(t, maxSessions, p.live(t), "it took its bucket's one place")
		a := nc.token(t, p.addrs[0])
		assert.Equal(t, answer{http.StatusTooManyRequests, "too_many_sessions", ""}, a,
			"then the bucket's heaviest, refused on the first server")
		a = nc.refresh(t, p.addrs[0], first.sessionID)
		assert.Equal(t, http.StatusOK, a.status, "its session lives on: %s", a.code)
		assert.Equal(t, int64(len(flood)+2), p.mints.Load(), "the flood, the newcomer's token and its refresh")
		t.Logf("flood of %d addresses (127.0.1.1–%s): %v; %d live; newcomer %s: 200, then 429 too_many_sessions; %d minted",
			len(flood), flood[len(flood)-1].ip, tally, p.live(t), newcomer, p.mints.Load())
	})
}
