package bench

import "github.com/realtimeauth/realtimeauth"

// defaultLimitOptions names the handler's default allowances, so that the
// attacks' formulas and the handler's configuration say the same thing.
func defaultLimitOptions() []realtimeauth.Option {
	return []realtimeauth.Option{
		realtimeauth.WithRateLimit(defaultNewSessions, limitWindow),
		realtimeauth.WithMintLimit(defaultMints, limitWindow),
		realtimeauth.WithPrefixShare(defaultPrefixShare),
		realtimeauth.WithMaxSessionsPerClient(defaultClientCap),
	}
}

// maxSessionsOption caps the store's live sessions at n.
func maxSessionsOption(n int) []realtimeauth.Option {
	return []realtimeauth.Option{realtimeauth.WithMaxSessions(n)}
}
