package realtimeauth

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// The fuzzers run their seed corpora (testdata/fuzz/FuzzX plus the f.Add
// seeds) with every `go test`; .ci/fuzz runs each one for a bounded time:
//
//	go test -run='^$' -fuzz='^FuzzTokenBody$' -fuzztime=15s .

// fuzzMinter issues tokens without an upstream.
type fuzzMinter struct{ now func() time.Time }

func (m fuzzMinter) Mint(_ context.Context, req MintRequest) (Token, error) {
	return Token{Value: "ek_fuzz", ExpiresAt: m.now().Add(req.TTL)}, nil
}

// FuzzTokenBody posts arbitrary bodies to the token endpoint: the answer is
// always well-formed JSON, 200 exactly when the body is empty or one JSON
// object, 400 invalid_request otherwise (never a 5xx).
func FuzzTokenBody(f *testing.F) {
	for _, s := range []string{"", "{}", `{"model":"gpt-realtime"}`, "[]", "null", `{"a":`, "{}{}", `{"a":"\xff"}`,
		"\x00", " {} ", `{"a":1e999}`, strings.Repeat("[", 100)} {
		f.Add([]byte(s))
	}
	var (
		once sync.Once
		h    *Handler
		mu   sync.Mutex
		now  = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	f.Fuzz(func(t *testing.T, body []byte) {
		once.Do(func() {
			var err error
			h, err = New(fuzzMinter{clock}, WithClock(clock), WithLimits(Limits{Sessions: Rate{N: maxLimit, Per: time.Hour}}),
				WithAbuseGuard(nil), WithLogger(slog.New(slog.DiscardHandler)))
			if err != nil {
				panic(err)
			}
		})
		// Each run an hour later: sessions expire and windows roll, so
		// state does not pile up over millions of runs.
		mu.Lock()
		now = now.Add(time.Hour)
		mu.Unlock()
		r := httptest.NewRequest(http.MethodPost, "/api/voice-agent/token", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		var out struct {
			Success bool   `json:"success"`
			Code    Code   `json:"code"`
			Token   string `json:"token"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatalf("answer is not JSON: %q", w.Body.String())
		}
		wantOK := len(body) == 0 || isJSONObject(body)
		switch {
		case wantOK && (w.Code != 200 || !out.Success || out.Token != "ek_fuzz"):
			t.Fatalf("body %q: got %d %s, want 200", body, w.Code, w.Body.String())
		case !wantOK && (w.Code != 400 || out.Code != CodeInvalidRequest):
			t.Fatalf("body %q: got %d %s, want 400 invalid_request", body, w.Code, w.Body.String())
		}
		// isJSONObject agrees with encoding/json on valid UTF-8.
		var m map[string]json.RawMessage
		decoded := json.Unmarshal(body, &m) == nil && m != nil
		if isJSONObject(body) != (decoded && utf8.Valid(body)) {
			t.Fatalf("isJSONObject(%q) = %v, encoding/json decodes an object: %v", body, isJSONObject(body), decoded)
		}
	})
}

// FuzzRefreshBody checks parseRefreshBody against encoding/json: what it
// accepts is a JSON object whose one "sessionId" (exact case) is a string
// holding a well-formed ID, and it accepts every such object.
func FuzzRefreshBody(f *testing.F) {
	id := "6f1c1f0e-3c1e-4f37-9a3e-2b8d6f0d4a11"
	for _, s := range []string{"", "{}", `{"sessionId":"` + id + `"}`, `{"sessionId":"` + id + `","sessionId":"` + id + `"}`,
		`{"sessionid":"` + id + `"}`, `{"sessionId":123}`, `{"sessionId":null}`, `{"sessionId":"\u0000"}`,
		`{"x":{"sessionId":"` + id + `"},"sessionId":"` + id + `"}`, `{"sessionId":"` + strings.ToUpper(id) + `"}`,
		`{"sessionId":"6f1c1f0e\u002d3c1e-4f37-9a3e-2b8d6f0d4a11"}`, "[]", `{"sessionId":"` + id + `"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		k := &request{body: body}
		ref, ok := parseRefreshBody(k)
		sid, e := k.sessionID, errorTable[ref]
		var m map[string]json.RawMessage
		isObject := isJSONObject(body) && json.Unmarshal(body, &m) == nil
		if ok {
			if !isObject || !validSessionID(sid) {
				t.Fatalf("accepted %q (sid %q) from a body that is not an object with a valid ID", body, sid)
			}
			var want string
			if json.Unmarshal(m["sessionId"], &want) != nil || want != sid {
				t.Fatalf("body %q: parsed sid %q, encoding/json reads %q", body, sid, want)
			}
			return
		}
		if e.status != 400 || e.code != CodeInvalidRequest {
			t.Fatalf("body %q: refused with %d %s", body, e.status, e.code)
		}
		// Refused: then there is no single valid "sessionId" to accept.
		if isObject && bytes.Count(body, []byte(`"sessionId"`)) == 1 && !bytes.Contains(body, []byte(`\`)) {
			var s string
			if json.Unmarshal(m["sessionId"], &s) == nil && validSessionID(s) && !nestedKey(body) {
				t.Fatalf("refused %q, which holds the one valid sessionId %q", body, s)
			}
		}
	})
}

// nestedKey reports whether the body nests objects, where a "sessionId"
// could sit at a deeper level than the top one.
func nestedKey(b []byte) bool { return bytes.Count(b, []byte("{")) > 1 }

// FuzzValidSessionID checks validSessionID against google/uuid: an ID is
// valid exactly when it is a UUID in canonical lower-case form.
func FuzzValidSessionID(f *testing.F) {
	for _, s := range []string{"6f1c1f0e-3c1e-4f37-9a3e-2b8d6f0d4a11", "6F1C1F0E-3C1E-4F37-9A3E-2B8D6F0D4A11", "",
		"urn:uuid:6f1c1f0e-3c1e-4f37-9a3e-2b8d6f0d4a11", "{6f1c1f0e-3c1e-4f37-9a3e-2b8d6f0d4a11}",
		"6f1c1f0e3c1e4f379a3e2b8d6f0d4a11", "6f1c1f0e-3c1e-4f37-9a3e-2b8d6f0d4a1g", "6f1c1f0e-3c1e-4f37-9a3e_2b8d6f0d4a11"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := uuid.Parse(s)
		want := err == nil && u.String() == s
		if got := validSessionID(s); got != want {
			t.Fatalf("validSessionID(%q) = %v, want %v", s, got, want)
		}
	})
}

var fuzzTrusted = []string{"10.0.0.0/8", "192.168.1.1", "2001:db8::/32", "::ffff:172.16.0.0/108"}

// FuzzClientIP feeds arbitrary peers and X-Forwarded-For lines to the
// client IP resolver behind trusted proxies. It never panics; the result is
// the peer or an address from the header; and for a short header of
// addresses it is the right-most untrusted one, a trusted proxy only when
// every hop is one.
func FuzzClientIP(f *testing.F) {
	for _, s := range [][2]string{
		{"10.0.0.1:443", "203.0.113.9"},
		{"10.0.0.1:443", "1.1.1.1, 203.0.113.9, 10.0.0.2"},
		{"10.0.0.1:443", "10.0.0.3, 10.0.0.2"},
		{"198.51.100.1:443", "10.0.0.2"},
		{"[2001:db8::1]:443", "[2001:db8::2]:80, 2001:db9::1"},
		{"10.0.0.1:443", "::ffff:172.16.0.9, ::ffff:203.0.113.1"},
		{"10.0.0.1:443", "garbage, 10.0.0.2"},
		{"10.0.0.1:443", "203.0.113.9\n10.0.0.5"},
		{"192.168.1.1:1", "fe80::1%eth0"},
		{"10.0.0.1:443", strings.Repeat("10.0.0.9,", 40) + "203.0.113.4"},
		{"unix", "203.0.113.9"},
	} {
		f.Add(s[0], s[1])
	}
	trusted, err := parseTrustedProxies(fuzzTrusted)
	if err != nil {
		f.Fatal(err)
	}
	res := ipResolver{trusted: trusted}
	f.Fuzz(func(t *testing.T, remote, xff string) {
		r := &http.Request{RemoteAddr: remote, Header: http.Header{}}
		lines := strings.Split(xff, "\n")
		for _, l := range lines {
			r.Header.Add("X-Forwarded-For", l)
		}
		got, _ := res.clientAddr(r)
		peer := peerAddr(r)
		// Every entry of the header, as the resolver would parse it.
		var entries []netip.Addr
		allParse := true
		for _, l := range lines {
			for _, e := range strings.Split(l, ",") {
				if e = strings.TrimSpace(e); e == "" {
					continue
				}
				a, ok := parseForwardedAddr(e)
				if !ok {
					allParse = false
					continue
				}
				entries = append(entries, a)
			}
		}
		if got != peer && !containsAddr(entries, got) {
			t.Fatalf("peer %q, X-Forwarded-For %q: %v is neither the peer nor in the header", remote, xff, got)
		}
		if !res.isTrusted(peer) {
			if got != peer {
				t.Fatalf("untrusted peer %v, but the result is %v", peer, got)
			}
			return
		}
		if !allParse || len(entries) > maxForwardedHops || len(xff) > maxForwardedBytes {
			return // the walk stops early by design; covered by the checks above
		}
		want := peer
		for i := len(entries) - 1; i >= 0; i-- {
			want = entries[i]
			if !res.isTrusted(want) {
				break
			}
		}
		if got != want {
			t.Fatalf("peer %v, X-Forwarded-For %q: got %v, want the right-most untrusted %v", peer, xff, got, want)
		}
	})
}

func containsAddr(list []netip.Addr, a netip.Addr) bool {
	for _, x := range list {
		if x == a {
			return true
		}
	}
	return false
}

// FuzzOriginAllowed builds allow-lists from arbitrary patterns and checks
// arbitrary origins against them: a subdomain wildcard only ever matches an
// origin of its scheme and port whose host ends with "."+domain, and an
// exact pattern only its own normalised origin. "null" never matches.
func FuzzOriginAllowed(f *testing.F) {
	for _, s := range [][2]string{
		{"https://*.example.com", "https://app.example.com"},
		{"https://*.example.com", "https://evilexample.com"},
		{"https://*.example.com", "https://example.com"},
		{"https://*.example.com", "https://a.b.example.com"},
		{"https://*.example.com", "http://app.example.com"},
		{"https://*.example.com:8443", "https://app.example.com:8443"},
		{"https://*.example.com", "https://app.example.com.evil.net"},
		{"https://*.example.com", "https://.example.com"},
		{"https://*.example.com", "https://app..example.com"},
		{"https://*.example.com", "https://app.example.com/"},
		{"https://*.example.com", "null"},
		{"http://localhost:4321", "http://localhost:4321"},
		{"HTTPS://App.Example.com:443", "https://app.example.com"},
		{"https://[::1]:8080", "https://[::1]:8080"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, origin string) {
		m, err := parseOrigins([]string{pattern})
		if err != nil {
			return
		}
		if !m.allowed(origin) {
			return
		}
		if origin == "null" || origin == "" {
			t.Fatalf("pattern %q allowed %q", pattern, origin)
		}
		if m.all {
			return
		}
		for _, w := range m.wild {
			rest, ok := strings.CutPrefix(origin, w.scheme)
			if !ok {
				continue
			}
			host, ok := strings.CutSuffix(rest, w.port)
			if ok && strings.HasSuffix(host, w.suffix) && len(host) > len(w.suffix) &&
				!strings.ContainsAny(host, ":/@?#") {
				return
			}
		}
		if _, ok := m.exact[origin]; ok {
			norm, err := normalOrigin(pattern)
			if err != nil || norm != origin {
				t.Fatalf("exact pattern %q (normalised %q) allowed %q", pattern, norm, origin)
			}
			return
		}
		t.Fatalf("pattern %q allowed %q, whose host does not end with its domain", pattern, origin)
	})
}
