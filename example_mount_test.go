package realtimeauth_test

import (
	"errors"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/realtimeauth/realtimeauth"
)

// userID stands for the application's own check of its session cookie or
// bearer token.
func userID(r *http.Request) (string, error) {
	c, err := r.Cookie("session")
	if err != nil {
		return "", errors.New("not signed in")
	}
	return c.Value, nil
}

// Example_mount is the README's "Mounting it in your server" snippet: the
// handler with the OpenAI minter, for signed-in users only, in an existing
// http.ServeMux. It is compiled, not run (it needs an API key).
func Example_mount() {
	minter, err := realtimeauth.NewOpenAIMinter(os.Getenv("OPENAI_API_KEY"), realtimeauth.OpenAIConfig{})
	if err != nil {
		log.Fatal(err)
	}
	h, err := realtimeauth.New(minter,
		realtimeauth.WithAllowedOrigins("https://app.example.com"),
		// Mint only for your signed-in users; the subject keys the per-user limits.
		realtimeauth.WithAuthenticator(func(r *http.Request) (string, error) {
			return userID(r) // your app's session or JWT check
		}),
		realtimeauth.WithLimits(realtimeauth.Limits{
			SubjectMints:          realtimeauth.Rate{N: 30, Per: time.Hour},
			MaxSessionsPerSubject: 3,
		}),
	)
	if err != nil {
		log.Fatal(err) // names every option and field at fault
	}
	defer h.Close()

	mux := http.NewServeMux()
	mux.Handle("/api/voice-agent/", h)
	_ = http.ListenAndServe("localhost:8080", mux)
}
