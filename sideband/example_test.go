package sideband_test

import (
	"log"
	"net/http"
	"os"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/sideband"
)

// Example gives the relay a sideband watcher, so that a call the user ends
// by closing the tab stops counting against the call caps within seconds,
// and a maximum call length. It is compiled, not run (it needs an API key).
func Example() {
	minter, err := realtimeauth.NewOpenAIMinter(os.Getenv("OPENAI_API_KEY"), realtimeauth.OpenAIConfig{})
	if err != nil {
		log.Fatal(err)
	}
	watcher, err := sideband.New()
	if err != nil {
		log.Fatal(err)
	}
	defer watcher.Close()
	h, err := realtimeauth.New(minter,
		realtimeauth.WithAllowedOrigins("https://app.example.com"),
		realtimeauth.WithCallWatcher(watcher),
		realtimeauth.WithLimits(realtimeauth.Limits{MaxCallDuration: 30 * time.Minute}),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	log.Fatal(http.ListenAndServe("localhost:4321", h))
}
