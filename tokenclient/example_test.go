package tokenclient_test

import (
	"context"
	"fmt"
	"log"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/tokenclient"
)

func ExampleNew() {
	// A realtimeauth handler with the development minter, on loopback.
	h, err := realtimeauth.New(realtimeauth.NewDevMinter(nil))
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	srv := httptest.NewServer(h)
	defer srv.Close()

	c, err := tokenclient.New(srv.URL+"/api/voice-agent",
		tokenclient.WithEvents(tokenclient.Events{
			Refreshed: func(d tokenclient.TokenData) { fmt.Println("new token for", d.ExpiresIn.Round(time.Minute)) },
			Error:     func(e *tokenclient.Error) { fmt.Println("failed:", e) },
		}),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	tok, err := c.Token(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(strings.HasPrefix(tok.Token, "ek_dev_"))
	again, _ := c.Token(context.Background()) // still valid: no request
	fmt.Println(again.Token == tok.Token)
	fmt.Println(tok.String() != "" && !strings.Contains(tok.String(), tok.Token))
	// Output:
	// new token for 1m0s
	// true
	// true
	// true
}
