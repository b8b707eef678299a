package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAttackRedisURLPasswordInError: parseRedisURL drops url.Error's quote
// of the whole URL, but url.Parse's own message still quotes what it took
// for a port. A password holding an unescaped '/', '?' or '#' (common in
// generated secrets, base64 has '/') ends the authority early, so
// everything before that character after the ':' is "the port": the
// start-up error, which main logs, quotes the start of the password.
// The message should say the URL is malformed without quoting any of it.
func TestAttackRedisURLPasswordInError(t *testing.T) {
	for _, v := range []string{
		"redis://:Sup3rS3cret/rest@10.0.0.1:6379/0",
		"redis://app:Sup3rS3cret?rest@10.0.0.1:6379",
		"redis://app:Sup3rS3cret#rest@10.0.0.1:6379",
	} {
		t.Run(v, func(t *testing.T) {
			_, err := loadConfig(env(map[string]string{"REDIS_URL": v}))
			require.Error(t, err)
			assert.NotContains(t, err.Error(), "Sup3rS3cret", "the password's start in the start-up error")
		})
	}
}
