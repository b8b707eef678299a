package realtimeauth_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/realtimeauthtest"
)

func TestMemoryCallRegistry(t *testing.T) {
	realtimeauthtest.TestCallRegistry(t, func(t *testing.T) realtimeauth.CallRegistry {
		r, err := realtimeauth.NewMemoryCallRegistry(0)
		require.NoError(t, err)
		return r
	})
}

func TestMemoryCallRegistryBounds(t *testing.T) {
	for _, n := range []int{-1, 100_000_001} {
		_, err := realtimeauth.NewMemoryCallRegistry(n)
		require.Error(t, err, n)
	}
}
