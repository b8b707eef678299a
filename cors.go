package realtimeauth

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// originMatcher is the allow-list of browser origins. Unlike rs/cors, whose
// empty list means "allow all", an empty originMatcher allows nothing.
type originMatcher struct {
	all   bool
	exact map[string]struct{}
	wild  []wildOrigin // "https://*.example.com[:port]"
}

type wildOrigin struct {
	scheme string // "https://"
	suffix string // ".example.com"
	port   string // ":8443" or ""
}

// parseOrigins reads the allow-list; its error names every bad entry.
func parseOrigins(list []string) (*originMatcher, error) {
	m := &originMatcher{exact: make(map[string]struct{})}
	var errs []error
	for _, raw := range list {
		s := strings.TrimSpace(raw)
		if s == "*" {
			m.all = true
			continue
		}
		o, w, err := parseOrigin(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("realtimeauth: WithAllowedOrigins: %q: %v", raw, err))
			continue
		}
		if w != nil {
			m.wild = append(m.wild, *w)
		} else {
			m.exact[o] = struct{}{}
		}
	}
	if m.all && (len(m.exact) > 0 || len(m.wild) > 0) {
		errs = append(errs, fmt.Errorf(`realtimeauth: WithAllowedOrigins: "*" must stand alone`))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return m, nil
}

// normalOrigin checks that s is a browser origin ("scheme://host[:port]",
// or a "scheme://*.domain[:port]" pattern) and returns it normalised: lower
// case, without the scheme's default port.
func normalOrigin(s string) (string, error) {
	if s == "*" {
		return s, nil
	}
	o, w, err := parseOrigin(s)
	if err != nil {
		return "", err
	}
	if w != nil {
		return w.scheme + "*" + w.suffix + w.port, nil
	}
	return o, nil
}

func parseOrigin(s string) (string, *wildOrigin, error) {
	if s == "" {
		return "", nil, fmt.Errorf("empty origin")
	}
	if strings.EqualFold(s, "null") {
		return "", nil, fmt.Errorf(`the origin "null" is never allowed: sandboxed frames and file pages all share it`)
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", nil, fmt.Errorf("not an origin: %v", err)
	}
	scheme := strings.ToLower(u.Scheme)
	if scheme != "http" && scheme != "https" {
		return "", nil, fmt.Errorf("not an origin: scheme must be http or https")
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery || u.Path != "" || u.Opaque != "" {
		return "", nil, fmt.Errorf("not an origin: an origin is scheme://host[:port] with nothing after it")
	}
	if strings.HasSuffix(s, "/") {
		return "", nil, fmt.Errorf("not an origin: no trailing slash")
	}
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if host == "" {
		return "", nil, fmt.Errorf("not an origin: no host")
	}
	if port != "" {
		if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
			port = ""
		} else {
			port = ":" + port
		}
	}
	hostPart := host
	if strings.Contains(host, ":") { // IPv6 literal
		hostPart = "[" + host + "]"
	}
	if strings.Contains(host, "*") {
		rest, ok := strings.CutPrefix(host, "*.")
		if !ok || strings.Contains(rest, "*") || !strings.Contains(rest, ".") || !validHostname(rest) {
			return "", nil, fmt.Errorf(`not an origin: a wildcard must be "scheme://*.domain.tld", matching subdomains only`)
		}
		return "", &wildOrigin{scheme: scheme + "://", suffix: "." + rest, port: port}, nil
	}
	if !validHostname(host) && !strings.Contains(host, ":") {
		return "", nil, fmt.Errorf("not an origin: bad host")
	}
	return scheme + "://" + hostPart + port, nil, nil
}

func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for i := 0; i < len(h); i++ {
		b := h[i]
		if !(b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '-' || b == '.') {
			return false
		}
	}
	return !strings.HasPrefix(h, ".") && !strings.HasSuffix(h, ".") && !strings.Contains(h, "..")
}

// allowed reports whether the Origin header value o is on the list. The
// comparison is exact: browsers send origins serialised in lower case
// without default ports.
func (m *originMatcher) allowed(o string) bool {
	if o == "" || o == "null" {
		return false
	}
	if m.all {
		return true
	}
	if _, ok := m.exact[o]; ok {
		return true
	}
	for _, w := range m.wild {
		rest, ok := strings.CutPrefix(o, w.scheme)
		if !ok {
			continue
		}
		host := rest
		if w.port != "" {
			if host, ok = strings.CutSuffix(rest, w.port); !ok {
				continue
			}
		}
		if len(host) > len(w.suffix) && strings.HasSuffix(host, w.suffix) && validHostname(host) {
			return true
		}
	}
	return false
}
