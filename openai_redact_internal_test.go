package realtimeauth

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRedactForms: redact finds the key through every encoding of each of
// its characters, mixed, twice escaped and next to look-alikes, and leaves
// everything else alone.
func TestRedactForms(t *testing.T) {
	const key = "sk-a/b+c=d&e%41%f\"g"
	m := &openAIMinter{apiKey: key}
	jsonEsc := strconv.Quote(key)
	jsonEsc = jsonEsc[1 : len(jsonEsc)-1]
	var u strings.Builder
	for i := 0; i < len(key); i++ {
		fmt.Fprintf(&u, `\u%04X`, key[i])
	}
	for _, form := range []string{
		key,
		jsonEsc,
		strings.ReplaceAll(jsonEsc, "/", `\/`),
		u.String(),
		strings.ReplaceAll(u.String(), `\`, `\\`),   // quoted once more
		strings.ReplaceAll(u.String(), `\`, `\\\\`), // and again
		url.QueryEscape(key),
		strings.ToLower(url.QueryEscape(key)),
		url.PathEscape(key),
		url.QueryEscape(url.QueryEscape(key)), // %2525 for %
		strings.Trim(strconv.Quote(url.QueryEscape(key)), `"`),
		`s\x6b-a\/b%2Bc=d&e%41%25f\"g`,
	} {
		got := m.redact("before " + form + " after")
		assert.Equal(t, "before [redacted] after", got, "%s", form)
	}
	for _, keep := range []string{"", "nothing here", key[:len(key)-1], "sk-a/b+c=d&e%42%f\"g", `sk-a\/b`} {
		assert.Equal(t, keep, m.redact(keep))
	}
	assert.Equal(t, "[redacted][redacted]", m.redact(key+url.PathEscape(key)))
	assert.Equal(t, "x", (&openAIMinter{}).redact("x"))
}

// TestRedactedErrorKeepsItsMeaning: a redacted cause still answers
// errors.Is and Timeout, but cannot be unwrapped to the raw text.
func TestRedactedErrorKeepsItsMeaning(t *testing.T) {
	m := &openAIMinter{apiKey: "sk-secret"}
	raw := &url.Error{Op: "Post", URL: "http://x/?k=sk-secret", Err: context.DeadlineExceeded}
	err := m.scrubErr(raw)
	require.NotSame(t, raw, err)
	assert.NotContains(t, err.Error(), "sk-secret")
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.True(t, isDeadline(err))
	var ue *url.Error
	assert.False(t, errors.As(err, &ue), "the raw error stays hidden")
	plain := errors.New("no key here")
	assert.Same(t, plain, m.scrubErr(plain))
	assert.NoError(t, m.scrubErr(nil))
	assert.False(t, (&redactedError{msg: "x", err: errors.New("y")}).Timeout())
}

// TestRedactStaysLinear: a key of many %s against a text of many escaped
// %s, none of them the key, is searched without blowing up.
func TestRedactStaysLinear(t *testing.T) {
	m := &openAIMinter{apiKey: strings.Repeat("%", 40) + "x"}
	text := strings.Repeat("%25", 4000) + strings.Repeat("%", 4000)
	assert.Equal(t, text, m.redact(text))
	assert.Equal(t, "a[redacted]b", m.redact("a"+strings.Repeat("%2525", 40)+"%78b"))
}
