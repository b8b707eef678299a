package redirect

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOrigin(t *testing.T) {
	for in, want := range map[string]string{
		"https://API.example.com/v1":   "https://api.example.com:443",
		"https://api.example.com:443/": "https://api.example.com:443",
		"http://127.0.0.1/x":           "http://127.0.0.1:80",
		"http://[::1]:8080/":           "http://[::1]:8080",
		"wss://h/realtime":             "wss://h:443",
	} {
		u, err := url.Parse(in)
		require.NoError(t, err)
		assert.Equal(t, want, Origin(u), in)
	}
}

// TestSameOrigin: a redirect within the origin is followed, one to another
// port or scheme is not (its answer is the redirect), and the given
// client's own CheckRedirect still applies and is left in place.
func TestSameOrigin(t *testing.T) {
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the other origin was reached: %s", r.URL)
	}))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/in":
			http.Redirect(w, r, "/done", http.StatusFound)
		case "/out":
			http.Redirect(w, r, other.URL+"/stolen", http.StatusFound)
		case "/done":
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	calls := 0
	own := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { calls++; return nil }}
	hc := SameOrigin(own, Origin(u))

	resp, err := hc.Get(srv.URL + "/in")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	assert.Equal(t, 1, calls, "the client's own CheckRedirect ran")

	resp, err = hc.Get(srv.URL + "/out")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusFound, resp.StatusCode, "the redirect is the answer")
	assert.Equal(t, 1, calls)
	assert.NotNil(t, own.CheckRedirect)

	resp, err = (&http.Client{CheckRedirect: Refuse}).Get(srv.URL + "/in")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusFound, resp.StatusCode)
}
