package realtimeauth

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestErrorTableDocumented keeps docs/http.md's error table in step with
// errorTable: every (status, code, event, strike) of the one is a row of the
// other.
func TestErrorTableDocumented(t *testing.T) {
	b, err := os.ReadFile("docs/http.md")
	require.NoError(t, err)
	row := regexp.MustCompile("(?m)^\\| (\\d{3}) \\| `([a-z_]+)` \\| .* \\| (none[^|]*|`[a-z_]+`) \\| (yes|no) \\|$")
	documented := map[string]bool{}
	for _, m := range row.FindAllStringSubmatch(string(b), -1) {
		event := strings.Trim(m[3], "`")
		if strings.HasPrefix(event, "none") {
			event = ""
		}
		documented[fmt.Sprintf("%s %s %s %s", m[1], m[2], event, m[4])] = true
	}
	require.NotEmpty(t, documented, "docs/http.md has an error table")
	implemented := map[string]bool{}
	for _, r := range errorTable {
		strike := map[bool]string{true: "yes", false: "no"}[r.strike]
		implemented[fmt.Sprintf("%d %s %s %s", r.status, r.code, r.event, strike)] = true
	}
	keys := func(m map[string]bool) []string {
		var out []string
		for k := range m {
			out = append(out, k)
		}
		sort.Strings(out)
		return out
	}
	assert.Equal(t, keys(implemented), keys(documented),
		"docs/http.md's error table (status code event strike) differs from errorTable")
}
