module github.com/realtimeauth/realtimeauth/examples

go 1.26.0

require (
	github.com/realtimeauth/realtimeauth v0.0.0
	golang.org/x/time v0.16.0
)

require (
	github.com/google/uuid v1.6.0 // indirect
	github.com/rs/cors v1.11.1 // indirect
)

replace github.com/realtimeauth/realtimeauth => ../
