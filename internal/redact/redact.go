// Package redact removes a secret from text however each of its characters
// is written: as itself, as a JSON escape (\uXXXX with hex of either case,
// \/ \" \\), as a backslash escape \xXX, or URL-escaped (%XX of either
// case, as url.QueryEscape and url.PathEscape write it), escaped more than
// once, or any mix of them. The OpenAI minter (its API key) and the
// sideband watcher (the credentials of its headers) share it.
package redact

import "strings"

// mark replaces the secret wherever it is found.
const mark = "[redacted]"

// String returns s with every occurrence of secret replaced by
// "[redacted]", however each of its characters is written (see the package
// doc). It is for text an upstream wrote next to a request that carried
// the secret. A secret of anything but printable ASCII without backslash is
// only replaced where it is written as itself.
func String(s, secret string) string {
	for i := 0; i < len(secret); i++ {
		if c := secret[i]; c <= ' ' || c > '~' || c == '\\' {
			return strings.ReplaceAll(s, secret, mark)
		}
	}
	return Key(s, secret)
}

// Key is String for a key of printable ASCII without backslash (what
// NewOpenAIMinter accepts), which it does not check.
func Key(s, key string) string {
	if key == "" || s == "" {
		return s
	}
	var b strings.Builder
	last := 0
	for i := 0; i < len(s); {
		if n := matchKey(s[i:], key); n > 0 {
			b.WriteString(s[last:i])
			b.WriteString(mark)
			i += n
			last = i
			continue
		}
		i++
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// matchKey returns the length of the encoding of key at the start of s, or
// 0 if s does not start with one. An encoded character that could also be
// the literal character (a % in the key) is tried both ways; at most one
// way survives the next character, so the search stays linear in the key
// (Key is given no backslash, the one byte that would not).
func matchKey(s, key string) int {
	if key == "" {
		return 0
	}
	c := key[0]
	for _, n := range encodedLens(s, c) {
		if n == 0 {
			continue
		}
		if len(key) == 1 {
			return n
		}
		if rest := matchKey(s[n:], key[1:]); rest > 0 {
			return n + rest
		}
	}
	return 0
}

// encodedLens returns the lengths of the encodings of the ASCII byte c that
// s starts with (0 for none): the literal byte, and one escape. An escape
// may itself have been escaped, as quoting an error text does (strconv.Quote
// writes \u0026 for \u0026) and as URL-escaping twice does (%2526): any run
// of backslashes before a \u or \x escape, and any number of 25s after a %,
// are taken as part of it.
func encodedLens(s string, c byte) [4]int {
	var out [4]int
	if s == "" {
		return out
	}
	if s[0] == c {
		out[0] = 1
	}
	switch s[0] {
	case '\\':
		n := 1
		if len(s) >= 2 && s[1] == c && (c == '/' || c == '"' || c == '\\') {
			out[n] = 2
			n++
		}
		i := 1
		for i < len(s) && s[i] == '\\' {
			i++
		}
		e := s[i:]
		switch {
		case len(e) >= 5 && e[0] == 'u' && e[1] == '0' && e[2] == '0' && hexByte(e[3], e[4]) == int(c):
			out[n] = i + 5
		case len(e) >= 3 && e[0] == 'x' && hexByte(e[1], e[2]) == int(c):
			out[n] = i + 3
		case len(e) >= 1 && e[0] == c && (c == '/' || c == '"') && i > 1:
			out[n] = i + 1
		}
	case '%':
		// Every depth that decodes to c is a candidate: %25 is a % and
		// also the start of a twice-escaped byte.
		n := 1
		for i := 1; len(s) >= i+2 && n < len(out); i += 2 {
			if hexByte(s[i], s[i+1]) == int(c) {
				out[n] = i + 2
				n++
			}
			if s[i:i+2] != "25" {
				break
			}
		}
	}
	return out
}

// hexByte decodes two hex digits of either case, or returns -1.
func hexByte(hi, lo byte) int {
	h, l := unhex(hi), unhex(lo)
	if h < 0 || l < 0 {
		return -1
	}
	return h<<4 | l
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}
