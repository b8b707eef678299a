package tokenclient_test

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/tokenclient"
)

// BenchmarkTokenCached measures Token when the current token is good: the
// path every caller takes between refreshes.
func BenchmarkTokenCached(b *testing.B) {
	h, err := realtimeauth.New(realtimeauth.NewDevMinter(nil), realtimeauth.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	srv := httptest.NewServer(h)
	defer srv.Close()
	c, err := tokenclient.New(srv.URL + basePath)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if _, err := c.Token(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Token(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
