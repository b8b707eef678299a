// Package redistest starts a real redis-server, or a real three-master
// Redis Cluster, for tests: on free loopback ports, without persistence,
// stopped when the test ends. redisstore's tests
// use it, and so can the tests of an application that uses redisstore.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Server is one redis-server process started by Start.
type Server struct {
	// Addr is the server's host:port on loopback.
	Addr string

	t    testing.TB
	bin  string
	dir  string
	args []string
	cmd  *exec.Cmd
}

// Start starts a redis-server on a free loopback port and stops it when t
// ends; args are passed on to redis-server (for example "--requirepass",
// "secret"). Without the binary the test is skipped with an install hint,
// except under CI=true, where it fails.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		msg := "redis-server not found on PATH; install it with: apt-get install redis-server"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	addr := freeAddr(t, slices.Contains(args, "--cluster-enabled"))
	s := &Server{Addr: addr, t: t, bin: bin, dir: t.TempDir(), args: args}
	s.Restart()
	t.Cleanup(s.Stop)
	return s
}

// Cluster is a Redis Cluster of three masters started by StartCluster.
type Cluster struct {
	// Addrs are the masters' host:port on loopback.
	Addrs []string
	// Servers are the masters' processes.
	Servers []*Server
}

// freeAddr returns a free loopback host:port; for a cluster node, one whose
// cluster bus port (the port + 10000) is free too.
func freeAddr(t testing.TB, bus bool) string {
	t.Helper()
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("redistest: finding a free port: %v", err)
		}
		addr := ln.Addr().(*net.TCPAddr)
		if !bus {
			_ = ln.Close()
			return addr.String()
		}
		if addr.Port+10000 <= 65535 {
			if bl, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", addr.Port+10000)); err == nil {
				_ = bl.Close()
				_ = ln.Close()
				return addr.String()
			}
		}
		_ = ln.Close()
	}
	t.Fatal("redistest: no free port with a free cluster bus port")
	return ""
}

// StartCluster starts a Redis Cluster of three masters (redis-server
// --cluster-enabled yes, joined by redis-cli --cluster create, no replicas)
// on free loopback ports, and stops it when t ends. It waits until every
// node reports cluster_state:ok. It skips or fails as Start does, and also
// without redis-cli.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		msg := "redis-cli not found on PATH; install it with: apt-get install redis-server"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	c := &Cluster{}
	for range 3 {
		s := Start(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "5000")
		c.Servers = append(c.Servers, s)
		c.Addrs = append(c.Addrs, s.Addr)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redistest: redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, addr := range c.Addrs {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		for !strings.Contains(command(conn, "CLUSTER", "INFO"), "cluster_state:ok") {
			if time.Now().After(deadline) {
				_ = conn.Close()
				t.Fatal("redistest: the cluster did not reach cluster_state:ok")
			}
			time.Sleep(20 * time.Millisecond) // bounded polling for the cluster to settle
		}
		_ = conn.Close()
	}
	return c
}

// command sends one command and returns the start of its reply.
func command(c net.Conn, args ...string) string {
	_ = c.SetDeadline(time.Now().Add(time.Second))
	req := fmt.Sprintf("*%d\r\n", len(args))
	for _, a := range args {
		req += fmt.Sprintf("$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(req)); err != nil {
		return err.Error()
	}
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		return err.Error()
	}
	return string(buf[:n])
}

// Stop kills the server and waits for it to exit. Stopping a stopped server
// does nothing.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGCONT) // a paused server must run to die
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Pause freezes the server (SIGSTOP): connections stay open but nothing
// answers, the way a stalled server behaves. Resume undoes it.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume lets a paused server run again (SIGCONT).
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig os.Signal) {
	s.t.Helper()
	if s.cmd == nil {
		s.t.Fatal("redistest: the server is not running")
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("redistest: signalling redis-server: %v", err)
	}
}

// Restart starts the server again on the same port (empty: there is no
// persistence), and waits until it accepts connections.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	_, port, _ := net.SplitHostPort(s.Addr)
	args := append([]string{
		"--bind", "127.0.0.1", "--port", port,
		"--save", "", "--appendonly", "no",
		"--dir", s.dir, "--logfile", filepath.Join(s.dir, "redis.log"),
	}, s.args...)
	cmd := exec.Command(s.bin, args...)
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("redistest: starting redis-server: %v", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr, 200*time.Millisecond)
		if err == nil {
			ok := ping(c)
			_ = c.Close()
			if ok {
				return
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			s.Stop()
			s.t.Fatalf("redistest: redis-server did not come up on %s: %v\n%s", s.Addr, err, log)
		}
		time.Sleep(20 * time.Millisecond) // bounded polling for the server to come up
	}
}

func ping(c net.Conn) bool {
	// PONG, or NOAUTH under --requirepass: either way, it is up.
	reply := command(c, "PING")
	return strings.HasPrefix(reply, "+PONG") || strings.HasPrefix(reply, "-NOAUTH")
}

// URL returns a redis:// URL for database db.
func (s *Server) URL(db int) string { return fmt.Sprintf("redis://%s/%d", s.Addr, db) }
