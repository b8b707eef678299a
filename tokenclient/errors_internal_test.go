package tokenclient

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/realtimeauth/realtimeauth"
)

// The copied codes stay equal to the server's.
func TestCodesMatchServer(t *testing.T) {
	assert.Equal(t, string(realtimeauth.CodeSessionNotFound), codeSessionNotFound)
	assert.Equal(t, string(realtimeauth.CodeRefreshLimitReached), codeRefreshLimitReached)
	assert.Equal(t, string(realtimeauth.CodeSessionRevoked), codeSessionRevoked)
	assert.Equal(t, string(realtimeauth.CodeSessionMismatch), codeSessionMismatch)
}

func TestRetryable(t *testing.T) {
	tests := []struct {
		status int
		code   string
		retry  bool
		gone   bool
	}{
		{0, "", true, false},
		{200, "", true, false},
		{302, "", false, false},
		{308, "", false, false},
		{400, string(realtimeauth.CodeInvalidRequest), false, false},
		{401, string(realtimeauth.CodeUnauthorized), false, false},
		{401, string(realtimeauth.CodeSessionRevoked), false, true},
		{403, string(realtimeauth.CodeOriginNotAllowed), false, false},
		{403, string(realtimeauth.CodeBlocked), false, false},
		{403, string(realtimeauth.CodeSessionMismatch), false, true},
		{403, string(realtimeauth.CodeRefreshLimitReached), false, true},
		{404, string(realtimeauth.CodeSessionNotFound), false, true},
		{404, string(realtimeauth.CodeNotFound), false, false},
		{408, "", true, false},
		{413, string(realtimeauth.CodePayloadTooLarge), false, false},
		{429, string(realtimeauth.CodeRateLimited), true, false},
		{429, string(realtimeauth.CodeRefreshTooSoon), true, false},
		{500, string(realtimeauth.CodeInternal), true, false},
		{502, string(realtimeauth.CodeUpstreamError), true, false},
		{503, string(realtimeauth.CodeUpstreamRateLimited), true, false},
		{504, string(realtimeauth.CodeUpstreamTimeout), true, false},
		{403, string(realtimeauth.CodeSessionNotFound), false, false}, // a code under the wrong status is not trusted
	}
	for _, tt := range tests {
		e := &Error{Status: tt.status, Code: tt.code}
		assert.Equal(t, tt.retry, e.Retryable(), "%d %s", tt.status, tt.code)
		assert.Equal(t, tt.gone, e.SessionGone(), "%d %s", tt.status, tt.code)
	}
}

func TestRetryAfterHeader(t *testing.T) {
	date := "Thu, 26 Nov 2026 18:00:00 GMT"
	tests := []struct {
		h    http.Header
		want time.Duration
	}{
		{http.Header{}, 0},
		{http.Header{"Retry-After": {"7"}}, 7 * time.Second},
		{http.Header{"Retry-After": {" 0 "}}, 0},
		{http.Header{"Retry-After": {"-3"}}, 0},
		{http.Header{"Retry-After": {"999999"}}, 0},
		{http.Header{"Retry-After": {"soon"}}, 0},
		{http.Header{"Retry-After": {"Thu, 26 Nov 2026 18:00:09 GMT"}, "Date": {date}}, 9 * time.Second},
		{http.Header{"Retry-After": {"Thu, 26 Nov 2026 18:00:09 GMT"}}, 0}, // no Date: the local clock is not trusted
		{http.Header{"Retry-After": {"Thu, 26 Nov 2026 17:59:00 GMT"}, "Date": {date}}, 0},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, retryAfter(tt.h), "%v", tt.h)
	}
}
