// Package e2e tests realtimeauth's browser client in a real browser:
// Debian's chromium, headless, driven with chromedp. It holds only tests.
//
//	go test ./e2e/...
//
// Without chromium the tests skip (apt-get install chromium), except under
// CI=true, where they fail.
package e2e
