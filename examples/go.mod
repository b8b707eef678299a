module github.com/realtimeauth/realtimeauth/examples

go 1.26.0

require (
	github.com/prometheus/client_golang v1.25.0
	github.com/realtimeauth/realtimeauth v0.0.0
	github.com/realtimeauth/realtimeauth/metrics v0.0.0
	github.com/realtimeauth/realtimeauth/redisstore v0.0.0
	github.com/realtimeauth/realtimeauth/sideband v0.0.0
	github.com/redis/go-redis/v9 v9.23.0
	github.com/stretchr/testify v1.12.1
	golang.org/x/time v0.16.0
)

require (
	github.com/beorn7/perks v1.0.1 // indirect
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/coder/websocket v1.8.15 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/munnerz/goautoneg v0.0.0-20191010083416-a7dc8b61c822 // indirect
	github.com/prometheus/client_model v0.6.3 // indirect
	github.com/prometheus/common v0.72.0 // indirect
	github.com/prometheus/procfs v0.22.0 // indirect
	github.com/rs/cors v1.11.1 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	golang.org/x/sys v0.48.0 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)

replace (
	github.com/realtimeauth/realtimeauth => ../
	github.com/realtimeauth/realtimeauth/metrics => ../metrics
	github.com/realtimeauth/realtimeauth/redisstore => ../redisstore
	github.com/realtimeauth/realtimeauth/sideband => ../sideband
)
