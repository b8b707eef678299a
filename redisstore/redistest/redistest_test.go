package redistest

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// recorder stands in for the test, so that Start's skip and failure are
// observed instead of taken.
type recorder struct {
	testing.TB
	how, msg string
}

type stopped struct{}

func (r *recorder) Helper() {}

func (r *recorder) Skip(args ...any) {
	r.how, r.msg = "skip", args[0].(string)
	panic(stopped{})
}

func (r *recorder) Fatal(args ...any) {
	r.how, r.msg = "fatal", args[0].(string)
	panic(stopped{})
}

func startWithout(t *testing.T, ci string) *recorder {
	return runWithout(t, ci, func(r *recorder) { Start(r) })
}

func runWithout(t *testing.T, ci string, start func(r *recorder)) *recorder {
	t.Helper()
	t.Setenv("PATH", t.TempDir()) // no redis-server or redis-cli on it
	t.Setenv("CI", ci)
	r := &recorder{TB: t}
	func() {
		defer func() {
			if v := recover(); v != (stopped{}) {
				panic(v)
			}
		}()
		start(r)
	}()
	return r
}

func TestStartClusterWithoutTheBinaries(t *testing.T) {
	cluster := func(r *recorder) { StartCluster(r) }
	r := runWithout(t, "", cluster)
	assert.Equal(t, "skip", r.how)
	assert.Contains(t, r.msg, "apt-get install redis-server")

	r = runWithout(t, "true", cluster)
	assert.Equal(t, "fatal", r.how, "CI must not skip")
}

func TestStartWithoutTheBinary(t *testing.T) {
	r := startWithout(t, "")
	assert.Equal(t, "skip", r.how)
	assert.Contains(t, r.msg, "apt-get install redis-server")

	r = startWithout(t, "true")
	assert.Equal(t, "fatal", r.how, "CI must not skip")
	assert.Contains(t, r.msg, "apt-get install redis-server")
}

func TestStartStopRestart(t *testing.T) {
	s := Start(t)
	s.Stop()
	s.Stop() // twice is fine
	s.Restart()
	assert.Contains(t, s.URL(0), s.Addr)
}

func TestStartCluster(t *testing.T) {
	c := StartCluster(t)
	assert.Len(t, c.Addrs, 3)
	for _, s := range c.Servers {
		conn, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if !assert.NoError(t, err) {
			continue
		}
		info := command(conn, "CLUSTER", "INFO")
		_ = conn.Close()
		assert.Contains(t, info, "cluster_state:ok")
		assert.Contains(t, info, "cluster_known_nodes:3")
	}
}
