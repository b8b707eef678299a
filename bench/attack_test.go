package bench

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAttacks replays every attack of issue 10 for a short while, scaled
// down, against the handler with its default allowances: the legitimate
// client beside each gets every token and refresh it asks for, and no
// attack causes more upstream mints (or, where it is about logs, more log
// lines) than its formula allows.
func TestAttacks(t *testing.T) {
	if testing.Short() {
		t.Skip("attacks: about 15 s of load; skipped with -short")
	}
	rs, err := RunAttacks(AttackConfig{Duration: 2 * time.Second, Addresses: 300, Prefixes: 4096, Concurrency: 8})
	require.NoError(t, err)
	PrintAttacks(os.Stdout, rs)
	require.Len(t, rs, len(Attacks()))
	for _, r := range rs {
		assert.Positive(t, r.LegitRequests, r.Name)
		assert.Equal(t, r.LegitRequests, r.LegitOK, "%s: the legitimate client's failures: %v", r.Name, r.LegitFailures)
		assert.LessOrEqual(t, r.AttackerMints(), int64(r.Formula), "%s: mints over %s", r.Name, r.FormulaText)
		if r.LogFormula >= 0 {
			assert.LessOrEqual(t, r.LogLines-r.LegitLogLines, r.LogFormula, "%s: log lines", r.Name)
		}
		assert.Positive(t, r.Requests, r.Name)
		assert.True(t, r.OK(), r.Name)
	}
}

func TestMostAdmitted(t *testing.T) {
	for _, tc := range []struct {
		n    int
		d    time.Duration
		want int
	}{
		{10, time.Second, 12}, {10, time.Minute, 12}, {10, 61 * time.Second, 22}, {30, time.Hour, 59*30 + 37},
		{30, 5 * time.Second, 37}, {3, time.Minute, 4}, {1, time.Minute, 2}, {160, time.Minute, 200},
	} {
		assert.Equal(t, tc.want, MostAdmitted(tc.n, time.Minute, tc.d), "%d in %v", tc.n, tc.d)
	}
}

func TestRunAttacksValidates(t *testing.T) {
	_, err := RunAttacks(AttackConfig{Duration: time.Millisecond})
	assert.Error(t, err)
	_, err = RunAttacks(AttackConfig{Duration: time.Second, Only: []string{"nope"}})
	assert.ErrorContains(t, err, "nope")
	_, err = RunAttacks(AttackConfig{Duration: time.Second, Addresses: 70000})
	assert.Error(t, err)
}
