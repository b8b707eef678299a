package realtimeauth

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

const (
	// maxForwardedHops bounds how many X-Forwarded-For entries are examined
	// from the right: the cost of a request does not grow with a forged
	// chain, only with the trusted hops in front of the client.
	maxForwardedHops = 16
	// maxForwardedBytes is how much of each X-Forwarded-For line is read,
	// from its right end.
	maxForwardedBytes = 1024
)

// ipResolver finds a request's client address.
type ipResolver struct {
	trusted []netip.Prefix
}

func parseTrustedProxies(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var errs []error
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("realtimeauth: WithTrustedProxies: %q is not a CIDR or an address", s))
				continue
			}
			if p.Addr().Is4In6() {
				p = netip.PrefixFrom(p.Addr().Unmap(), max(0, p.Bits()-96))
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("realtimeauth: WithTrustedProxies: %q is not a CIDR or an address", s))
			continue
		}
		a = a.Unmap().WithZone("")
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

func (p *ipResolver) isTrusted(a netip.Addr) bool {
	for _, t := range p.trusted {
		if t.Contains(a) {
			return true
		}
	}
	return false
}

// peerAddr parses r.RemoteAddr; an unparsable one (a Unix socket, a test
// without RemoteAddr) counts as the unspecified address.
func peerAddr(r *http.Request) netip.Addr {
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr().Unmap().WithZone("")
	}
	if a, err := netip.ParseAddr(r.RemoteAddr); err == nil {
		return a.Unmap().WithZone("")
	}
	return netip.IPv4Unspecified()
}

// clientAddr returns the client's address and whether the request reached
// the first trusted proxy over HTTPS (by X-Forwarded-Proto from a trusted
// peer).
func (p *ipResolver) clientAddr(r *http.Request) (addr netip.Addr, forwardedTLS bool) {
	peer := peerAddr(r)
	if len(p.trusted) == 0 || !p.isTrusted(peer) {
		return peer, false
	}
	return p.forwardedFor(r, peer), strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

// forwardedFor walks X-Forwarded-For from the right, from the trusted peer,
// to the first hop that is not a trusted proxy.
func (p *ipResolver) forwardedFor(r *http.Request, peer netip.Addr) netip.Addr {
	last := peer // the nearest hop we trust so far
	hops := 0
	lines := r.Header["X-Forwarded-For"]
	for i := len(lines) - 1; i >= 0; i-- {
		line := lines[i]
		if len(line) > maxForwardedBytes {
			line = line[len(line)-maxForwardedBytes:]
		}
		for line != "" {
			if hops++; hops > maxForwardedHops {
				return last
			}
			var entry string
			if j := strings.LastIndexByte(line, ','); j >= 0 {
				entry, line = line[j+1:], line[:j]
			} else {
				entry, line = line, ""
			}
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue
			}
			a, ok := parseForwardedAddr(entry)
			if !ok {
				// A trusted proxy passed on something unparsable: go no
				// further than the hop that sent it.
				return last
			}
			if !p.isTrusted(a) {
				return a
			}
			last = a
		}
	}
	return last
}

// client is who a request comes from, resolved once per request.
type client struct {
	ip      string // full address
	key     string // the client's limit and block key: IPv4 address or IPv6 /64
	prefix  string // an IPv6 client's /48, "" for IPv4
	tls     bool   // arrived over TLS (directly or at a trusted proxy)
	proxied bool   // through a trusted proxy, whose X-Request-Id is believed
}

// client resolves r's client.
func (p *ipResolver) client(r *http.Request) client {
	peer := peerAddr(r)
	addr, c := peer, client{tls: r.TLS != nil}
	if len(p.trusted) > 0 && p.isTrusted(peer) {
		addr, c.proxied = p.forwardedFor(r, peer), true
		c.tls = c.tls || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
	}
	c.ip = addrString(addr, r.RemoteAddr)
	c.key = c.ip
	if addr.Is6() {
		c.key = limitKey(addr)
		c.prefix = netip.PrefixFrom(addr, 48).Masked().String()
	}
	return c
}

// parseForwardedAddr accepts "1.2.3.4", "1.2.3.4:80", "::1" and "[::1]:80".
func parseForwardedAddr(s string) (netip.Addr, bool) {
	if len(s) > 64 {
		return netip.Addr{}, false
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	return netip.Addr{}, false
}

// addrString returns a's text form. When remote (a RemoteAddr,
// "host:port") holds exactly that text as its host, it returns that
// substring instead of a new string: for a direct client, the common case,
// this saves an allocation per request.
func addrString(a netip.Addr, remote string) string {
	var buf [64]byte
	b := a.AppendTo(buf[:0])
	if i := strings.LastIndexByte(remote, ':'); i > 0 {
		host := remote[:i]
		if len(host) > 2 && host[0] == '[' && host[len(host)-1] == ']' {
			host = host[1 : len(host)-1]
		}
		if host == string(b) {
			return host
		}
	}
	return string(b)
}

// limitKey is the key a client is limited and blocked by: an IPv4 address
// as is, an IPv6 address by its /64, since one host commonly holds a whole
// /64 and could otherwise rotate through it.
func limitKey(a netip.Addr) string {
	if a.Is6() {
		return netip.PrefixFrom(a, 64).Masked().String()
	}
	return a.String()
}

// logKey is whom log suppression counts a line against: the client, or an
// IPv6 client's /48, so that rotating through the /64s of one site does not
// buy a fresh allowance of log lines each.
func (c client) logKey() string {
	if c.prefix != "" {
		return c.prefix
	}
	return c.key
}
