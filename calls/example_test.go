package calls_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/realtimeauth/realtimeauth/calls"
)

// Example follows one call through a Registry as the relay drives it: a
// slot reserved under the client's cap, bound to the upstream's call ID,
// the cap refusing a second call, and the call claimed at its deadline and
// ended.
func Example() {
	ctx := context.Background()
	reg, err := calls.NewMemoryRegistry(0)
	if err != nil {
		log.Fatal(err)
	}
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	res := calls.Reservation{
		Now: now, HoldUntil: now.Add(30 * time.Second),
		ClientIP: "203.0.113.7", Client: "203.0.113.7",
		MaxPerClient: 1,
	}

	slot, err := reg.Reserve(ctx, res) // before the call is placed upstream
	if err != nil {
		log.Fatal(err)
	}
	c, err := reg.Bind(ctx, calls.Start{ // the upstream answered with its call ID
		Slot: slot, ID: "rtc_123", SessionID: "s1",
		StartedAt: now, Deadline: now.Add(15 * time.Minute), ExpiresAt: now.Add(61 * time.Minute),
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("live:", c.ID, "until", c.Deadline.Format(time.Kitchen))

	_, err = reg.Reserve(ctx, res)
	fmt.Println("second call:", errors.Is(err, calls.ErrTooMany))

	due, _ := reg.ClaimDue(ctx, now.Add(15*time.Minute), 10*time.Second, 10)
	fmt.Println("due:", len(due), due[0].ID)
	ended, _ := reg.End(ctx, due[0].ID, now.Add(15*time.Minute)) // after the hang-up
	fmt.Println("ended:", ended.ID, calls.EndMaxDuration)
	_, err = reg.End(ctx, "rtc_123", now.Add(15*time.Minute))
	fmt.Println("again:", errors.Is(err, calls.ErrNotFound))
	// Output:
	// live: rtc_123 until 12:15PM
	// second call: true
	// due: 1 rtc_123
	// ended: rtc_123 max_duration
	// again: true
}
