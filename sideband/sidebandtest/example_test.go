package sidebandtest_test

import (
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
	"github.com/realtimeauth/realtimeauth/sideband"
	"github.com/realtimeauth/realtimeauth/sideband/sidebandtest"
)

// Example runs the whole relay without OpenAI: a fake upstream with a fake
// sideband, a handler whose watcher follows the call, and the call ending
// upstream (the user closed the tab), which the handler learns from the
// sideband.
func Example() {
	up := &realtimeauthtest.Upstream{Key: "sk-example"}
	up.Sideband = &sidebandtest.Handler{Upstream: up}
	srv := httptest.NewServer(up)
	defer srv.Close()

	minter, err := realtimeauth.NewOpenAIMinter("sk-example", realtimeauth.OpenAIConfig{BaseURL: srv.URL + "/v1"})
	if err != nil {
		log.Fatal(err)
	}
	watcher, err := sideband.New(sideband.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		log.Fatal(err)
	}
	defer watcher.Close()
	ended := make(chan realtimeauth.Event, 1)
	h, err := realtimeauth.New(minter,
		realtimeauth.WithCallWatcher(watcher),
		realtimeauth.WithLogger(slog.New(slog.DiscardHandler)),
		realtimeauth.WithEventHook(func(ev realtimeauth.Event) {
			if ev.Name == realtimeauth.EventCallEnded {
				ended <- ev
			}
		}),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()

	offer := "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n"
	req := httptest.NewRequest(http.MethodPost, "/api/voice-agent/calls", strings.NewReader(offer))
	req.Header.Set("Content-Type", "application/sdp")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	location := w.Header().Get("Location")
	fmt.Println(w.Code, w.Header().Get("Content-Type"), location)

	up.End(path.Base(location)) // the call ends upstream
	select {
	case ev := <-ended:
		fmt.Println(ev.Name, ev.Reason)
	case <-time.After(10 * time.Second):
		fmt.Println("no call_ended")
	}
	// Output:
	// 201 application/sdp /api/voice-agent/calls/rtc_fake_1
	// call_ended upstream
}
