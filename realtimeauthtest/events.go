package realtimeauthtest

import (
	"sync"

	"github.com/realtimeauth/realtimeauth"
)

// Events records the security events a handler emits; pass its Hook to
// realtimeauth.WithEventHook. It is safe for concurrent use.
type Events struct {
	mu  sync.Mutex
	evs []realtimeauth.Event
}

// Hook records ev.
func (e *Events) Hook(ev realtimeauth.Event) {
	e.mu.Lock()
	e.evs = append(e.evs, ev)
	e.mu.Unlock()
}

// All returns a copy of every event recorded, in order.
func (e *Events) All() []realtimeauth.Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]realtimeauth.Event(nil), e.evs...)
}

// Named returns the recorded events called name, in order.
func (e *Events) Named(name realtimeauth.EventName) []realtimeauth.Event {
	var out []realtimeauth.Event
	for _, ev := range e.All() {
		if ev.Name == name {
			out = append(out, ev)
		}
	}
	return out
}

// Count returns how many recorded events are called name.
func (e *Events) Count(name realtimeauth.EventName) int { return len(e.Named(name)) }
