package redirect_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"

	"github.com/realtimeauth/realtimeauth/internal/redirect"
)

// Example shows what counts as one origin, and a client that follows a
// redirect within its origin but not to another one.
func Example() {
	for _, s := range []string{"https://API.openai.com/v1", "https://api.openai.com:443/x", "http://api.openai.com/v1"} {
		u, _ := url.Parse(s)
		fmt.Println(redirect.Origin(u))
	}

	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/here":
			http.Redirect(w, r, "/there", http.StatusFound)
		case "/away":
			http.Redirect(w, r, other.URL+"/", http.StatusFound)
		}
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	hc := redirect.SameOrigin(http.DefaultClient, redirect.Origin(u))
	for _, p := range []string{"/here", "/away"} {
		resp, err := hc.Get(srv.URL + p)
		if err != nil {
			fmt.Println(p, "error")
			continue
		}
		resp.Body.Close()
		fmt.Println(p, resp.StatusCode, resp.Request.URL.Path)
	}
	// Output:
	// https://api.openai.com:443
	// https://api.openai.com:443
	// http://api.openai.com:80
	// /here 200 /there
	// /away 302 /away
}
