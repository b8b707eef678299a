package metrics

import "time"

// SetClock makes c's Middleware time requests on now (a test clock, the
// handler's) instead of time.Now.
func SetClock(c *Collector, now func() time.Time) { c.now = now }
