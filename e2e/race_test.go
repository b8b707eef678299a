//go:build race

package e2e

// raceEnabled: the example server is built with -race too, which reuses
// the test's compiled packages and checks the server for races.
const raceEnabled = true
