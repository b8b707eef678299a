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

// Example feeds a collector from a handler's hooks and reads one series back
// from a registry, as a scrape would.
func Example() {
	c := metrics.New()
	h, err := realtimeauth.New(&realtimeauth.DevMinter{},
		realtimeauth.WithEventHook(c.Event),
		realtimeauth.WithMeasurementHook(c.Measure),
		realtimeauth.WithLogger(slog.New(slog.DiscardHandler)),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	c.Watch(h)

	for range 3 {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/api/voice-agent/token", nil))
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
		}
	}
	// Output:
	// realtimeauth_active_sessions 3
	// realtimeauth_events_total token_issued 3
}
