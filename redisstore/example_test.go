package redisstore_test

import (
	"context"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/realtimeauth/realtimeauth"
	"github.com/realtimeauth/realtimeauth/redisstore"
)

// Example keeps a handler's sessions, allowances, caps and blocks in Redis,
// so that every instance behind a load balancer shares them. It is compiled,
// not run (it needs a Redis).
func Example() {
	ctx := context.Background()
	opt, err := redis.ParseURL(os.Getenv("REDIS_URL")) // redis://[user:password@]host:port[/db]
	if err != nil {
		log.Fatal(err)
	}
	opt.ContextTimeoutEnabled = true // no Redis call outlives the request's context
	rdb := redis.NewClient(opt)      // or redis.NewClusterClient: any redis.UniversalClient
	defer rdb.Close()

	store, err := redisstore.NewSessionStore(ctx, rdb) // refuses a Redis that may evict its keys
	if err != nil {
		log.Fatal(err)
	}
	guard, err := redisstore.NewAbuseGuard(ctx, rdb, 10, 10*time.Minute, 15*time.Minute)
	if err != nil {
		log.Fatal(err)
	}
	h, err := realtimeauth.New(realtimeauth.NewDevMinter(nil),
		realtimeauth.WithAllowedOrigins("https://app.example.com"),
		realtimeauth.WithSessionStore(store),
		realtimeauth.WithAbuseGuard(guard),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	log.Fatal(http.ListenAndServe("localhost:4321", h))
}
