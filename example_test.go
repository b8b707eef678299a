package realtimeauth_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
)

// ExampleNew serves the handler and asks it for a token, as a browser on
// an allowed origin would, then from an origin that is not allowed.
func ExampleNew() {
	// In production: realtimeauth.NewOpenAIMinter(os.Getenv("OPENAI_API_KEY"), realtimeauth.OpenAIConfig{}).
	minter := &realtimeauthtest.Minter{}
	h, err := realtimeauth.New(minter,
		realtimeauth.WithAllowedOrigins("https://app.example.com"),
		realtimeauth.WithLimits(realtimeauth.Limits{Sessions: realtimeauth.Rate{N: 10, Per: time.Minute}}),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	srv := httptest.NewServer(h)
	defer srv.Close()

	for _, origin := range []string{"https://app.example.com", "https://evil.example.net"} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/api/voice-agent/token", strings.NewReader(`{"model":"gpt-realtime"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Origin", origin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		var body struct {
			Success bool   `json:"success"`
			Token   string `json:"token"`
			Code    string `json:"code"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode, body.Success, body.Token, body.Code, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	// Output:
	// 200 true ek_test_1  https://app.example.com
	// 403 false  origin_not_allowed
}

// Example_serveMux mounts the handler in an existing http.ServeMux, beside
// the application's own routes.
func Example_serveMux() {
	h, err := realtimeauth.New(realtimeauth.NewDevMinter(nil),
		realtimeauth.WithAllowedOrigins("http://localhost:4321"))
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()

	mux := http.NewServeMux()
	mux.Handle("/api/voice-agent/", h)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "the app") })
	srv := httptest.NewServer(mux)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/api/voice-agent/health")
	if err != nil {
		log.Fatal(err)
	}
	var health struct {
		Status string `json:"status"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&health)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, health.Status)

	resp, err = http.Post(srv.URL+"/api/voice-agent/token", "", nil)
	if err != nil {
		log.Fatal(err)
	}
	var tok struct {
		Token string `json:"token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, strings.HasPrefix(tok.Token, "ek_dev_"))
	// Output:
	// 200 healthy
	// 200 true
}

// ExampleNewMemoryLimiter shows the sub-window counter at fixed times: two
// events per minute, how long the third must wait, and the event admitted
// exactly then.
func ExampleNewMemoryLimiter() {
	l, err := realtimeauth.NewMemoryLimiter(2, time.Minute)
	if err != nil {
		panic(err)
	}
	now := time.Date(2026, 1, 1, 0, 0, 10, 0, time.UTC)
	for range 3 {
		d, _ := l.Allow(context.Background(), "203.0.113.7", now)
		fmt.Println(d.Allowed, d.RetryAfter)
	}
	d, _ := l.Allow(context.Background(), "203.0.113.7", now.Add(50*time.Second))
	fmt.Println(d.Allowed, d.RetryAfter)
	// Output:
	// true 0s
	// true 0s
	// false 50s
	// true 0s
}

// ExampleWithLimits sets a few limits, the others keeping their defaults.
// Repeated WithLimits merge; New names every field at fault.
func ExampleWithLimits() {
	minter := &realtimeauthtest.Minter{}
	h, err := realtimeauth.New(minter,
		realtimeauth.WithLimits(realtimeauth.Limits{
			Sessions: realtimeauth.Rate{N: 5, Per: time.Minute},
			TokenTTL: 2 * time.Minute,
		}),
		realtimeauth.WithLimits(realtimeauth.Limits{MaxRefreshes: 30}), // Sessions and TokenTTL stay
	)
	if err != nil {
		log.Fatal(err)
	}
	h.Close()

	_, err = realtimeauth.New(minter, realtimeauth.WithLimits(realtimeauth.Limits{
		Mints:                 realtimeauth.Rate{N: 60}, // no Per
		MaxSessionsPerSubject: 3,                        // no WithAuthenticator
	}))
	fmt.Println(err)
	// Output:
	// realtimeauth: Limits.Mints: window 0s must be positive and a multiple of 4ns
	// realtimeauth: Limits.MaxSessionsPerSubject needs WithAuthenticator: without it there is no subject
}

// ExampleNewOpenAIMinter configures the minter for an Azure OpenAI
// deployment with a session template; every field left zero keeps its
// default. It is compiled, not run (it needs a key).
func ExampleNewOpenAIMinter() {
	minter, err := realtimeauth.NewOpenAIMinter(os.Getenv("AZURE_OPENAI_API_KEY"), realtimeauth.OpenAIConfig{
		AzureResource: "my-resource",
		Model:         "my-realtime-deployment", // the deployment name: no default with Azure
		Session:       json.RawMessage(`{"instructions":"You are a helpful assistant."}`),
		MaxRetries:    -1, // no retries
	})
	if err != nil {
		log.Fatal(err) // names the field at fault, never the key
	}
	h, err := realtimeauth.New(minter, realtimeauth.WithAllowedOrigins("https://app.example.com"))
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	http.Handle("/api/voice-agent/", h)
}
