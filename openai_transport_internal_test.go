package realtimeauth

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestUpstreamTransportDefaults pins the default transport's bounds: the
// idle pool per host covers the concurrency a token server sees, and every
// phase of a call is bounded.
func TestUpstreamTransportDefaults(t *testing.T) {
	tr := newUpstreamTransport()
	assert.GreaterOrEqual(t, tr.MaxIdleConnsPerHost, 64, "idle pool per host")
	assert.GreaterOrEqual(t, tr.MaxIdleConns, tr.MaxIdleConnsPerHost)
	assert.Zero(t, tr.MaxConnsPerHost, "no cap on live connections: the upstream timeout bounds the wait instead")
	assert.False(t, tr.DisableKeepAlives)
	assert.Positive(t, tr.IdleConnTimeout)
	assert.Positive(t, tr.TLSHandshakeTimeout)
	assert.LessOrEqual(t, tr.TLSHandshakeTimeout, 10*time.Second)
	assert.Positive(t, tr.ResponseHeaderTimeout)
	assert.True(t, tr.ForceAttemptHTTP2)
	assert.NotNil(t, tr.DialContext)
	assert.NotNil(t, tr.Proxy)
}
