package realtimeauth_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// echoKey has the characters that the encoders below write differently:
// / + = & < > ~ % so that no two of its forms coincide.
const echoKey = "sk-proj-TE/ST+KEY=a&b<c>~9f%41_Zq"

// keyForms is every way an upstream can echo key, computed from it: raw,
// as Go's encoding/json writes it (\u0026 for &), with / escaped (\/, PHP),
// every byte \u-escaped (lower and upper case hex), every other byte
// escaped, \x-escaped, and URL-escaped by QueryEscape (upper and lower
// case hex) and PathEscape.
func keyForms(key string) map[string]string {
	j, _ := json.Marshal(key)
	goJSON := string(j[1 : len(j)-1])
	var uLower, uUpper, mixed, xEsc strings.Builder
	for i := 0; i < len(key); i++ {
		fmt.Fprintf(&uLower, `\u%04x`, key[i])
		fmt.Fprintf(&uUpper, `\u%04X`, key[i])
		fmt.Fprintf(&xEsc, `\x%02x`, key[i])
		if i%2 == 0 {
			mixed.WriteByte(key[i])
		} else {
			fmt.Fprintf(&mixed, `\u%04x`, key[i])
		}
	}
	q := url.QueryEscape(key)
	lowerHex := regexp.MustCompile(`%[0-9A-F]{2}`).ReplaceAllStringFunc(q, strings.ToLower)
	forms := map[string]string{
		"raw":            key,
		"json":           goJSON,
		"json slash":     strings.ReplaceAll(goJSON, "/", `\/`),
		"json all lower": uLower.String(),
		"json all upper": uUpper.String(),
		"json mixed":     mixed.String(),
		"x escapes":      xEsc.String(),
		"query":          q,
		"query lower":    lowerHex,
		"path":           url.PathEscape(key),
	}
	return forms
}

func TestKeyFormsDiffer(t *testing.T) {
	seen := map[string]string{}
	for name, f := range keyForms(echoKey) {
		assert.NotContains(t, seen, f, "%s and %s coincide", name, seen[f])
		seen[f] = name
	}
}

// echo is where the fake upstream puts the key.
type echo struct {
	name   string
	answer func(w http.ResponseWriter, r *http.Request, form string)
}

func echoes() []echo {
	jsonMsg := func(status int) func(http.ResponseWriter, *http.Request, string) {
		return func(w http.ResponseWriter, r *http.Request, form string) {
			jsonAnswer(status, `{"error":{"message":"Incorrect API key provided: `+form+`. See https://platform.openai.com"}}`)(w, r)
		}
	}
	return []echo{
		{"json message 401", jsonMsg(401)},
		{"json message 500 (retried)", jsonMsg(500)},
		{"json message 429", jsonMsg(429)},
		{"plain body", func(w http.ResponseWriter, _ *http.Request, form string) {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(502)
			fmt.Fprintf(w, "bad gateway for key %s\n", form)
		}},
		{"json string body", func(w http.ResponseWriter, r *http.Request, form string) {
			jsonAnswer(400, `"key `+form+`"`)(w, r)
		}},
		{"x-request-id", func(w http.ResponseWriter, r *http.Request, form string) {
			jsonAnswer(500, `{"error":{"message":"oops"}}`, "x-request-id", form)(w, r)
		}},
		{"x-request-id prefixed", func(w http.ResponseWriter, r *http.Request, form string) {
			jsonAnswer(401, `{"error":{"message":"oops"}}`, "x-request-id", "req_"+form+"_tail")(w, r)
		}},
		{"other headers", func(w http.ResponseWriter, r *http.Request, form string) {
			jsonAnswer(403, `{}`, "X-Echo", form, "WWW-Authenticate", `Bearer realm="`+form+`"`,
				"Retry-After", form, "retry-after-ms", form)(w, r)
		}},
		{"redirect location", func(w http.ResponseWriter, r *http.Request, form string) {
			w.Header().Set("Location", "http://127.0.0.1:1/steal/"+form+"?k="+form)
			w.WriteHeader(http.StatusFound)
		}},
		{"malformed header line", func(w http.ResponseWriter, _ *http.Request, form string) {
			// The transport's error quotes the broken line.
			conn, rw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				panic(err)
			}
			defer conn.Close()
			fmt.Fprintf(rw, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n%s\r\n\r\n{}", form)
			_ = rw.Flush()
		}},
		{"garbage 200", func(w http.ResponseWriter, r *http.Request, form string) {
			jsonAnswer(200, `{"value":"`+form+`","expires_at":"`+form+`"}`)(w, r)
		}},
	}
}

// errorTexts returns the text of err and of every error in its chain.
func errorTexts(err error) []string {
	if err == nil {
		return nil
	}
	out := []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		out = append(out, errorTexts(u.Unwrap())...)
	case interface{ Unwrap() []error }:
		for _, e := range u.Unwrap() {
			out = append(out, errorTexts(e)...)
		}
	}
	return out
}

// TestNoEchoedKeyInLogsErrorsOrEvents: a fake upstream echoes the key in
// each of its forms (keyForms) in each place it can (echoes): the error
// message, a plain body, x-request-id, other headers, a redirect's
// Location, a header line that breaks the transport. Through the whole
// handler (text log, the minter's JSON retry log, events) and straight
// from Mint (every error of the chain), no form of the key appears.
func TestNoEchoedKeyInLogsErrorsOrEvents(t *testing.T) {
	var mu sync.Mutex
	var cur func(w http.ResponseWriter, r *http.Request)
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		a := cur
		mu.Unlock()
		a(w, r)
	})
	set := func(a func(w http.ResponseWriter, r *http.Request)) {
		mu.Lock()
		cur = a
		mu.Unlock()
	}
	handlerLogs, minterLogs := &syncBuffer{}, &syncBuffer{}
	m, err := realtimeauth.NewOpenAIMinter(echoKey, realtimeauth.OpenAIConfig{BaseURL: u.srv.URL, MaxRetries: 1,
		RetryBackoff: time.Millisecond, MaxRetryBackoff: time.Millisecond, Logger: slog.New(slog.NewJSONHandler(minterLogs, nil))})
	require.NoError(t, err)
	ev := &events{}
	h, err := realtimeauth.New(m, realtimeauth.WithAllowedOrigins(origin),
		realtimeauth.WithLogger(newTextLogger(handlerLogs)), realtimeauth.WithEventHook(ev.Hook))
	require.NoError(t, err)
	t.Cleanup(func() { _ = h.Close() })

	forms := keyForms(echoKey)
	names := make([]string, 0, len(forms))
	for n := range forms {
		names = append(names, n)
	}
	sort.Strings(names)
	var errs []string
	ip := 0
	for _, e := range echoes() {
		for _, name := range names {
			form := forms[name]
			set(func(w http.ResponseWriter, r *http.Request) { e.answer(w, r, form) })
			ip++
			w := serveReq(h, req{path: tokenURL, remote: fmt.Sprintf("198.51.%d.%d:1", ip/250, ip%250+1)})
			assert.NotEqual(t, http.StatusOK, w.Code, "%s, %s", e.name, name)
			errs = append(errs, w.Body.String())
			for k, v := range w.Header() {
				errs = append(errs, k+": "+strings.Join(v, ","))
			}
			_, err := m.Mint(context.Background(), realtimeauth.MintRequest{SessionID: "s", TTL: time.Minute})
			require.Error(t, err, "%s, %s", e.name, name)
			errs = append(errs, errorTexts(err)...)
			var ue *realtimeauth.UpstreamError
			if errors.As(err, &ue) {
				errs = append(errs, ue.RequestID, ue.Message)
			}
		}
	}

	logs := handlerLogs.String() + minterLogs.String()
	assert.Contains(t, logs, "upstream_status=401", "the failures were logged")
	assert.Contains(t, logs, "upstream_status=302")
	assert.Contains(t, logs, "retrying mint", "the retry log ran")
	assert.Contains(t, logs, "redacted", "the echoes reached the logs, redacted")
	var evs []string
	for _, e := range ev.All() {
		evs = append(evs, fmt.Sprintf("%#v", e))
	}
	require.NotEmpty(t, evs)
	for name, form := range forms {
		assert.NotContains(t, logs, form, "form %s in a log line", name)
		for _, s := range errs {
			if !assert.NotContains(t, s, form, "form %s in an error or answer", name) {
				break
			}
		}
		for _, s := range evs {
			if !assert.NotContains(t, s, form, "form %s in an event", name) {
				break
			}
		}
	}
	// No line keeps more than a sliver of the key: its middle part in any
	// form is gone too.
	for _, sliver := range []string{"TE/ST+KEY", "TE%2FST%2BKEY"} {
		assert.Empty(t, lastLineWith(logs, sliver), "a sliver of the key in a log line")
	}
}

// TestOpenAIRequestIDBounded: the x-request-id kept for logs is cut to 128
// bytes of letters, digits and - _ . : (OpenAI's own IDs pass unchanged),
// and the key is redacted before the cut.
func TestOpenAIRequestIDBounded(t *testing.T) {
	for _, tc := range []struct{ sent, want string }{
		{"req_0123456789abcdef", "req_0123456789abcdef"},
		{"req-a.b:c_D", "req-a.b:c_D"},
		{"req id\twith \"quotes\" é", "req_id_with__quotes____"},
		{strings.Repeat("x", 120) + echoKey, strings.Repeat("x", 120) + "_redacte"},
		{strings.Repeat("a", 5000), strings.Repeat("a", 128)},
	} {
		u := newUpstream(t, jsonAnswer(401, `{}`, "x-request-id", tc.sent))
		m, err := realtimeauth.NewOpenAIMinter(echoKey, realtimeauth.OpenAIConfig{BaseURL: u.srv.URL})
		require.NoError(t, err)
		_, err = m.Mint(context.Background(), realtimeauth.MintRequest{SessionID: "s", TTL: time.Minute})
		var ue *realtimeauth.UpstreamError
		require.ErrorAs(t, err, &ue)
		assert.Equal(t, tc.want, ue.RequestID)
		assert.LessOrEqual(t, len(ue.RequestID), 128)
	}
}

// TestOpenAIKeyCharset: the key must be printable ASCII without a
// backslash, the bytes whose every encoding the redaction knows.
func TestOpenAIKeyCharset(t *testing.T) {
	for _, k := range []string{"sk-é-key", "sk-\x7f-key", "sk-\t-key", "sk key", `sk-\-key`} {
		_, err := realtimeauth.NewOpenAIMinter(k, realtimeauth.OpenAIConfig{})
		assert.ErrorContains(t, err, "API key", "%q", k)
	}
	_, err := realtimeauth.NewOpenAIMinter(echoKey, realtimeauth.OpenAIConfig{})
	assert.NoError(t, err)
}
