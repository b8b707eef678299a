package metrics_test

import (
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/metrics"
)

// Example feeds a collector from a handler's event hook and its own
// middleware, and reads series back from a registry, as a scrape would.
func Example() {
	c := metrics.New()
	h, err := realtimeauth.New(realtimeauth.NewDevMinter(nil),
		realtimeauth.WithEventHook(c.Event),
		realtimeauth.WithLogger(slog.New(slog.DiscardHandler)),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	c.Watch(h)
	srv := c.Middleware(h) // times the token, refresh and call requests

	for range 3 {
		srv.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/api/voice-agent/token", nil))
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	families, err := reg.Gather()
	if err != nil {
		log.Fatal(err)
	}
	for _, f := range families {
		switch f.GetName() {
		case "realtimeauth_events_total":
			for _, m := range f.GetMetric() {
				fmt.Println(f.GetName(), m.GetLabel()[1].GetValue(), m.GetCounter().GetValue())
			}
		case "realtimeauth_active_sessions":
			fmt.Println(f.GetName(), f.GetMetric()[0].GetGauge().GetValue())
		case "realtimeauth_request_duration_seconds", "realtimeauth_mint_duration_seconds":
			for _, m := range f.GetMetric() {
				fmt.Println(f.GetName(), m.GetLabel()[0].GetValue(), m.GetHistogram().GetSampleCount())
			}
		}
	}
	// Output:
	// realtimeauth_active_sessions 3
	// realtimeauth_events_total token_issued 3
	// realtimeauth_mint_duration_seconds ok 3
	// realtimeauth_request_duration_seconds 2xx 3
}
