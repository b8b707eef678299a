package bench_test

import (
	"fmt"
	"time"

	"github.com/realtimeauth/realtimeauth/bench"
)

// ExampleMostAdmitted gives the worst cases of docs/limits.md under the
// default allowances: one client's mints (30 a minute), one IPv6 /48's
// (16 clients' worth), in any minute and in any hour.
func ExampleMostAdmitted() {
	fmt.Println(bench.MostAdmitted(30, time.Minute, time.Minute))
	fmt.Println(bench.MostAdmitted(16*30, time.Minute, time.Minute))
	fmt.Println(bench.MostAdmitted(30, time.Minute, time.Hour))
	fmt.Println(bench.MostAdmitted(16*30, time.Minute, time.Hour))
	// Output:
	// 37
	// 600
	// 1807
	// 28920
}
