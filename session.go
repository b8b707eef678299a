package realtimeauth

import (
	"context"
	"time"
)

// Session is the server's record of one voice session.
type Session struct {
	// ID is the unguessable session ID the client presents to refresh: a
	// canonical lower-case UUID, assigned by the store in Open.
	ID string
	// ClientIP is the full address the session was opened from; refreshes
	// must come from it.
	ClientIP string
	// Client is the client key the session is counted against: the IPv4
	// address, or the IPv6 /64 (see Limits).
	Client string
	// Subject is the authenticated user (WithAuthenticator), or "".
	Subject string
	// CreatedAt and ExpiresAt bound the session's life.
	CreatedAt, ExpiresAt time.Time
	// LastIssuedAt is when the session's newest token was issued; it is also
	// the session's recency for least-recently-used eviction.
	LastIssuedAt time.Time
	// Refreshes counts the tokens issued by refresh (the first is not one).
	Refreshes int
	// Revoked sessions stay stored until they expire, so that their refresh
	// is answered session_revoked, but no longer count as live.
	Revoked bool
}

// Allowance is one per-window limit that an admission is charged against:
// at most Limit admissions per Window for Key, by the rule NewMemoryLimiter
// documents. Keys are built by the handler with a prefix naming the kind
// ("n:" new sessions and "m:" mints per client, "np:" new sessions and "mp:"
// mints per IPv6 /48, "s:" mints per subject), so they never collide.
type Allowance struct {
	Key    string
	Limit  int
	Window time.Duration
}

// OpenRequest is a new session and the limits it must pass.
type OpenRequest struct {
	// Now is the decision time: CreatedAt and LastIssuedAt of the session.
	Now       time.Time
	ExpiresAt time.Time
	ClientIP  string
	Client    string
	Subject   string
	// Allowances are checked together and charged together: either every
	// one admits and each counts one event, or none counts anything and
	// Open fails with a *LimitError.
	Allowances []Allowance
	// MaxPerClient caps the client's live sessions (0: no cap). At the cap,
	// Open evicts (deletes) the client's least recently used live session
	// to make room; it never refuses for this cap.
	MaxPerClient int
	// MaxPerSubject caps the subject's live sessions (0, or Subject "": no
	// cap). At the cap, Open fails with ErrTooManySessions.
	MaxPerSubject int
	// MaxSessions caps the store's live sessions (0: no cap). When it is
	// full, and the client holds fewer live sessions than the heaviest
	// client, Open evicts the heaviest client's least recently used
	// session; when the client is itself among the heaviest, Open fails
	// with ErrStoreFull. A store that partitions itself (Redis Cluster) may
	// apply the cap per partition, with MaxSessions split evenly; it says
	// so in its doc.
	MaxSessions int
}

// RefreshRequest is one refresh of a stored session.
type RefreshRequest struct {
	Now          time.Time
	ID           string
	ClientIP     string        // must equal the session's ClientIP
	Subject      string        // must equal the session's Subject
	MaxRefreshes int           // Refreshes must be below it
	MinInterval  time.Duration // LastIssuedAt must be at least this old; 0: no minimum
	Allowances   []Allowance
}

// RefundRequest gives back what one Open or Refresh charged when no token
// came of it (the upstream budget refused, the mint failed, the client went
// away): the Client and Subject of the session, which say where a store
// keeps the allowances, the Allowances as the Open or Refresh was given
// them, and its Now.
type RefundRequest struct {
	Client     string
	Subject    string
	Allowances []Allowance
	ChargedAt  time.Time
}

// SessionStore keeps sessions and the allowances they are charged against.
// Every method is atomic (a map under a mutex, one Lua script in Redis), is
// safe for concurrent use, takes the request's context first, decides with
// the time it is given (never its own clock), and returns a backend failure
// as an error that is none of the package's sentinel errors.
type SessionStore interface {
	// Open stores a new session for req and returns it (with its new ID)
	// and the sessions it evicted to make room (see OpenRequest). The
	// checks run in this order and the first failing one refuses without
	// changing anything: the allowances (*LimitError), the subject cap
	// (ErrTooManySessions), the total cap (ErrStoreFull). N concurrent Opens
	// against one cap or allowance of L succeed exactly min(N, L) times.
	Open(ctx context.Context, req OpenRequest) (s Session, evicted []Session, err error)
	// Refresh records one more token for a session: Refreshes+1,
	// LastIssuedAt = req.Now. The checks run in this order, the first
	// failing one refuses without changing anything: the session exists and
	// has not expired at Now (ErrSessionNotFound), is not revoked
	// (ErrSessionRevoked), belongs to req.ClientIP and req.Subject
	// (ErrSessionMismatch), has Refreshes < MaxRefreshes (ErrRefreshLimit),
	// has LastIssuedAt+MinInterval <= Now unless MinInterval is 0
	// (ErrRefreshTooSoon), and the
	// allowances admit (*LimitError). It returns the session as stored
	// afterwards, or, on ErrRefreshTooSoon, as stored (for the Retry-After).
	Refresh(ctx context.Context, req RefreshRequest) (Session, error)
	// GiveBack undoes the refresh issued at issuedAt when no token came of
	// it: Refreshes-1 and LastIssuedAt = restore, unless a newer refresh
	// has replaced it meanwhile (LastIssuedAt != issuedAt), in which case
	// it changes nothing. Allowances stay charged (Refund gives them back).
	// An unknown, expired or revoked session is not an error.
	GiveBack(ctx context.Context, id string, issuedAt, restore time.Time) error
	// Refund uncounts one event from each of req.Allowances in the
	// sub-window of req.ChargedAt: a reservation that is not used is given
	// back, so that a client whose mint failed is not charged for it. An
	// allowance whose sub-window of ChargedAt has shifted out of its counts
	// (or holds no event) is left as it is, as is an unknown key; Refund
	// never counts an event below zero, and N concurrent charges and
	// refunds of one allowance leave exactly the charges less the refunds.
	// It is best called once per charge: refunding twice may uncount
	// another admission of the same sub-window.
	Refund(ctx context.Context, req RefundRequest) error
	// Restore puts back sessions an Open evicted (as Open returned them)
	// when that Open is undone because no token came of it: each is stored
	// again as it was (ID, fields, recency), unless it has expired at now
	// or its ID is stored again. It checks no cap: the undone Open's
	// Delete freed their room (a concurrent Open may have taken it
	// meanwhile, which leaves a cap over by one until the next Open of
	// that client or store evicts again). Allowances are not touched.
	Restore(ctx context.Context, sessions []Session, now time.Time) error
	// Revoke marks a live session revoked and returns it; an unknown or
	// expired one is ErrSessionNotFound; revoking twice is not an error.
	Revoke(ctx context.Context, id string, now time.Time) (Session, error)
	// RevokeSubject revokes every live session of subject and returns them.
	RevokeSubject(ctx context.Context, subject string, now time.Time) ([]Session, error)
	// Delete removes a session (a mint that failed); unknown is not an error.
	Delete(ctx context.Context, id string) error
	// Count returns the number of live (unexpired, unrevoked) sessions.
	Count(ctx context.Context, now time.Time) (int, error)
}
