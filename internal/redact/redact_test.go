package redact_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/realtimeauth/realtimeauth/internal/redact"
	"github.com/stretchr/testify/assert"
)

// TestString: String catches the forms the minter's redaction does,
// and a secret it cannot search for by form is still replaced as written.
func TestString(t *testing.T) {
	const k = "sk-proj-AbC/def&12"
	for _, s := range []string{k, url.QueryEscape(k), url.PathEscape(k), strings.ReplaceAll(k, "/", `\/`), strings.ReplaceAll(k, "&", `\u0026`)} {
		assert.Equal(t, "a [redacted] b", redact.String("a "+s+" b", k), s)
	}
	assert.Equal(t, "x [redacted] y", redact.String(`x a\b c y`, `a\b c`))
	assert.Equal(t, "unchanged", redact.String("unchanged", ""))
}
