module github.com/realtimeauth/realtimeauth/e2e

go 1.26.0

replace (
	github.com/realtimeauth/realtimeauth => ../
	github.com/realtimeauth/realtimeauth/sideband => ../sideband
)

require (
	github.com/chromedp/cdproto v0.159.0
	github.com/chromedp/chromedp v0.23.0
	github.com/realtimeauth/realtimeauth v0.0.0
	github.com/realtimeauth/realtimeauth/sideband v0.0.0
	github.com/stretchr/testify v1.12.1
)

require (
	github.com/coder/websocket v1.8.15 // indirect
	github.com/go-json-experiment/json v0.0.0-20260213210345-44df1a37e875 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/rs/cors v1.11.1 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	golang.org/x/time v0.16.0 // indirect
)
