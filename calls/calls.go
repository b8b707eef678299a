// Package calls holds the records and contracts of the WebRTC calls that
// realtimeauth relays: the Registry of live calls and its in-memory
// implementation, the Upstream that places and hangs up calls, and the
// Watcher that tells when a call has ended upstream. It imports nothing of
// realtimeauth, which uses it: a registry or a watcher in another module
// (redisstore, sideband) needs only this package.
//
// # A call's life in a Registry
//
// A call's ID is known only once the upstream answers, so the relay
// reserves a slot first (Reserve: the caps are checked and counted then,
// and a call over a cap reaches no upstream), places the call, and binds
// the upstream's ID to the slot (Bind), or releases the slot when no call
// came of it (Release). The call is then live until it is ended (End) or
// expires (its ExpiresAt); a slot that is never bound frees itself at its
// HoldUntil, so that an instance that dies between Reserve and Bind does
// not hold it forever.
//
// # What every Registry promises
//
//   - Every method is atomic (a map under a mutex in memory, one Lua script
//     in Redis) and safe for concurrent use by many handler instances
//     sharing the registry.
//   - It decides with the time it is given, never its own clock; times are
//     kept to the microsecond at least.
//   - A slot or call is live from Reserve until Release, End, its HoldUntil
//     (slot) or its ExpiresAt (call), and counts against the caps of its
//     client, its prefix and its subject all that time, slots and bound
//     calls alike.
//   - N concurrent Reserves against one cap of L succeed exactly min(N, L)
//     times; the others fail with ErrTooMany.
//   - Of any number of concurrent Ends of one call exactly one succeeds;
//     the others, and any later one, get ErrNotFound.
//   - A call due for hang-up is handed by ClaimDue to one claimant at a
//     time, for a lease: if the claimant dies before it Ends the call, the
//     lease runs out and another instance claims the call.
//   - Its refusals are ErrNotFound, ErrTooMany and ErrFull (compare with
//     errors.Is); a backend failure is an error that is none of them.
//
// The conformance suite realtimeauthtest.TestCallRegistry checks these
// promises; every implementation runs it (the in-memory one and
// redisstore's alike).
//
// NewMemoryRegistry is the Registry of one process, realtimeauth's
// default; redisstore.NewCallRegistry shares the calls between instances,
// so that the caps hold across them and a call whose instance went away
// is still hung up at its deadline.
package calls

import (
	"context"
	"errors"
	"time"
)

// The refusals of a Registry. Compare with errors.Is.
var (
	// ErrNotFound: no live call (or reserved slot) has that ID: it is
	// unknown, has ended, or has expired.
	ErrNotFound = errors.New("calls: call not found")
	// ErrTooMany: the client, its prefix or the subject already holds the
	// maximum number of live calls and slots.
	ErrTooMany = errors.New("calls: too many calls")
	// ErrFull: the registry holds as many live calls and slots as it can.
	ErrFull = errors.New("calls: registry full")
)

// Call is the server's record of one relayed WebRTC call.
type Call struct {
	// ID is the upstream's call ID ("rtc_…"), known once the upstream has
	// answered the offer (Bind).
	ID string
	// SessionID is the handler's session the call was admitted with.
	SessionID string
	// ClientIP is the full address the call was placed from; only it may
	// hang the call up.
	ClientIP string
	// Client is the client key the call is counted against (the IPv4
	// address or the IPv6 /64).
	Client string
	// Subject is the authenticated user, or "".
	Subject string
	// StartedAt is when the upstream answered.
	StartedAt time.Time
	// Deadline is when the server hangs the call up (its maximum call
	// duration); zero means never.
	Deadline time.Time
	// ExpiresAt is when the registry forgets the call even if nobody ended
	// it: by then the upstream has ended it on its own (OpenAI's maximum
	// call length). Zero means never.
	ExpiresAt time.Time
}

// Reservation asks for a slot for a call about to be placed (see the
// package doc for a call's life).
type Reservation struct {
	// Now is the decision time.
	Now time.Time
	// HoldUntil is when the slot frees itself unless it has been bound.
	// It must be after Now.
	HoldUntil time.Time
	ClientIP  string
	Client    string
	Subject   string
	// Prefix is an IPv6 client's /48 ("" for IPv4), which holds many
	// clients (its /64s).
	Prefix string
	// MaxPerClient caps the client's live calls and slots (0: no cap).
	MaxPerClient int
	// MaxPerPrefix caps the live calls and slots of all the clients of
	// Prefix together (0, or Prefix "": no cap). realtimeauth's handler
	// sets it to its prefix share times its per-client cap, so that one
	// /48 holds no more calls than that many clients.
	MaxPerPrefix int
	// MaxPerSubject caps the subject's live calls and slots (0, or
	// Subject "": no cap).
	MaxPerSubject int
}

// Start binds a reserved slot to the call the upstream placed.
type Start struct {
	Slot string
	ID   string
	// SessionID is the handler's session the call was admitted with.
	SessionID string
	StartedAt time.Time
	// Deadline and ExpiresAt are the Call's (zero: none).
	Deadline, ExpiresAt time.Time
}

// Registry records the live calls: who placed them, when they must end,
// and how many each client, prefix and subject holds. The package doc
// says what every implementation promises.
type Registry interface {
	// Reserve holds a slot for a call and returns the slot's opaque ID. It
	// fails with ErrTooMany, changing nothing, when the client, its
	// prefix or the subject holds its cap of live calls and slots at
	// req.Now. A registry that is full fails with ErrFull.
	Reserve(ctx context.Context, req Reservation) (slot string, err error)
	// Bind turns a reserved slot into a live call and returns the call.
	// A slot that is unknown, already bound or past its HoldUntil at
	// s.StartedAt is ErrNotFound.
	Bind(ctx context.Context, s Start) (Call, error)
	// Release frees a slot no call came of. An unknown or bound slot is
	// not an error and changes nothing.
	Release(ctx context.Context, slot string) error
	// Get returns the live call id, or ErrNotFound.
	Get(ctx context.Context, id string, now time.Time) (Call, error)
	// End removes the live call id and returns it. Of any number of
	// concurrent Ends of one call exactly one succeeds; the others, and
	// any later one, get ErrNotFound.
	End(ctx context.Context, id string, now time.Time) (Call, error)
	// SessionCalls returns the live calls of a session, oldest first.
	SessionCalls(ctx context.Context, sessionID string, now time.Time) ([]Call, error)
	// SubjectCalls returns the live calls of a subject, oldest first.
	SubjectCalls(ctx context.Context, subject string, now time.Time) ([]Call, error)
	// ClaimDue returns up to limit live calls whose Deadline is not after
	// now, earliest first, and claims them for lease: no ClaimDue of any
	// instance returns them again before now+lease. The claimant hangs the
	// call up and Ends it; if it dies first, the lease runs out and another
	// instance claims the call. lease must be positive.
	ClaimDue(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]Call, error)
	// Count returns the number of live calls (bound, not reserved slots).
	Count(ctx context.Context, now time.Time) (int, error)
}

// EndReason says why a relayed call ended (realtimeauth's Event.Reason of
// call_ended).
type EndReason string

// The reasons a call ends.
const (
	// EndClient: the client that made it hung it up (DELETE).
	EndClient EndReason = "client"
	// EndMaxDuration: it reached the handler's maximum call duration.
	EndMaxDuration EndReason = "max_duration"
	// EndRevoked: its session or subject was revoked.
	EndRevoked EndReason = "revoked"
	// EndUpstream: it ended upstream (the Watcher said so).
	EndUpstream EndReason = "upstream"
)
