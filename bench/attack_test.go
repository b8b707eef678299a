package bench

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestMostAdmitted(t *testing.T) {
	for _, tc := range []struct {
		n    int
		d    time.Duration
		want int
	}{
		{10, time.Second, 12}, {10, time.Minute, 12}, {10, 61 * time.Second, 24},
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
