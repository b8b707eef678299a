package bench

import "github.com/realtimeauth/realtimeauth"

// defaultLimitOptions names the handler's default allowances, so that the
// attacks' formulas and the handler's configuration say the same thing.
func defaultLimitOptions() []realtimeauth.Option {
	return []realtimeauth.Option{
		realtimeauth.WithLimits(realtimeauth.Limits{
			Sessions:             realtimeauth.Rate{N: defaultNewSessions, Per: limitWindow},
			Mints:                realtimeauth.Rate{N: defaultMints, Per: limitWindow},
			PrefixShare:          defaultPrefixShare,
			MaxSessionsPerClient: defaultClientCap,
		}),
	}
}

// maxSessionsOption caps the store's live sessions at n.
func maxSessionsOption(n int) []realtimeauth.Option {
	return []realtimeauth.Option{realtimeauth.WithLimits(realtimeauth.Limits{MaxSessions: n})}
}
