package realtimeauthtest_test

import (
	"encoding/json"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
)

// Example tests a handler without OpenAI and without waiting: the fake
// Minter stands in for the upstream, the fake Clock moves time, and Events
// records what the handler decided.
func Example() {
	clock := realtimeauthtest.NewClock(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
	minter := &realtimeauthtest.Minter{Now: clock.Now}
	var events realtimeauthtest.Events
	h, err := realtimeauth.New(minter,
		realtimeauth.WithClock(clock.Now),
		realtimeauth.WithEventHook(events.Hook),
		realtimeauth.WithLogger(slog.New(slog.DiscardHandler)),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()

	post := func(path, body string) (int, map[string]any) {
		req := httptest.NewRequest(http.MethodPost, "/api/voice-agent"+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		var v map[string]any
		_ = json.Unmarshal(w.Body.Bytes(), &v)
		return w.Code, v
	}

	status, tok := post("/token", "")
	fmt.Println(status, tok["token"])
	refresh := fmt.Sprintf(`{"sessionId":%q}`, tok["sessionId"])

	status, ans := post("/refresh-token", refresh) // within the minimum interval
	fmt.Println(status, ans["code"], ans["retryAfter"])

	clock.Advance(10 * time.Second)
	status, ans = post("/refresh-token", refresh)
	fmt.Println(status, ans["token"])

	fmt.Println(minter.Calls(), "mints;", events.Count(realtimeauth.EventRefreshTooSoon), "refresh_too_soon event")
	// Output:
	// 200 ek_test_1
	// 429 refresh_too_soon 10
	// 200 ek_test_2
	// 2 mints; 1 refresh_too_soon event
}
