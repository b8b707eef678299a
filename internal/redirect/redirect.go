// Package redirect keeps credentials from following HTTP redirects. The
// minter (API key), the Go token client (its extra headers) and the
// sideband watcher (API key) share it.
package redirect

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Refuse is a CheckRedirect that follows no redirect: the redirect itself
// is the answer, and the request's headers go nowhere else.
func Refuse(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// SameOrigin returns a copy of hc that follows a redirect only within
// origin (see Origin), under hc's own CheckRedirect; any other redirect is
// refused before its request is made. hc itself is left as it was.
func SameOrigin(hc *http.Client, origin string) *http.Client {
	cp := *hc
	next := hc.CheckRedirect
	cp.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if Origin(req.URL) != origin {
			return http.ErrUseLastResponse
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	return &cp
}

// Origin is u's scheme://host:port, lower case, with the scheme's default
// port made explicit, so that https://h and https://H:443 compare equal.
func Origin(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443", "ws": "80", "wss": "443"}[scheme]
	}
	return scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}
