package broker

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// TestHealthSocketBoundsConnections: the health socket is open to every
// local user, so it must not accept connections without bound. Unbounded,
// a user with no rights at all opened 20000 connections and took every
// descriptor the broker had: tenant sockets and the admin socket stopped
// answering ("socket: too many open files" dialing dockerd).
func TestHealthSocketBoundsConnections(t *testing.T) {
	dir, err := os.MkdirTemp("/tmp", "sgh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "h.sock")
	ln, err := listenHealth(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	// Dial more than the bound; the kernel queues them in the backlog.
	for range maxHealthConns + 1 {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	accepted := make(chan net.Conn, maxHealthConns+1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	var held []net.Conn
	for range maxHealthConns {
		held = append(held, <-accepted)
	}
	// The one past the bound waits until a slot is given back. (A broken
	// bound fails this at once; a working one passes after the wait.)
	select {
	case <-accepted:
		t.Fatalf("accepted more than %d health connections at once", maxHealthConns)
	case <-time.After(200 * time.Millisecond):
	}
	held[0].Close()
	(<-accepted).Close()
	for _, c := range held[1:] {
		c.Close()
	}
}

// TestHealthSocketWatchesApart: every local user may open Watch streams on
// the health socket; filling them must not refuse the admin API's own
// health watches (they shared one pool of maxHealthWatches).
func TestHealthSocketWatchesApart(t *testing.T) {
	dir, upPath := testDir(t)
	healthSock := filepath.Join(dir, "health.sock")
	tb := startBroker(t, dir, "unix://"+upPath, func(c *Config) { c.HealthSocket = healthSock })
	defer tb.stop(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Fill every watch slot through the open socket: 8 streams per
	// connection, so several connections.
	exhausted := false
	for c := 0; c < maxHealthWatches/8+1 && !exhausted; c++ {
		cc, err := grpc.NewClient("unix://"+healthSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		for range 8 {
			w, err := healthpb.NewHealthClient(cc).Watch(ctx, &healthpb.HealthCheckRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Recv(); status.Code(err) == codes.ResourceExhausted {
				exhausted = true
				break
			} else if err != nil {
				t.Fatal(err)
			}
		}
	}
	if !exhausted {
		t.Fatalf("the health socket took more than %d watches", maxHealthWatches)
	}
	admin, err := grpc.NewClient("unix://"+tb.admin, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	w, err := healthpb.NewHealthClient(admin).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); err != nil {
		t.Fatalf("admin health watch while the health socket's are full: %v", err)
	}
}

// TestLimitListenerCloseEndsWaitingAccept: with every slot held, Close
// must end an Accept waiting for one. grpc's Stop waits for Serve to
// return before it closes connections, so a client holding every health
// connection (any local user) hung the broker's shutdown.
func TestLimitListenerCloseEndsWaitingAccept(t *testing.T) {
	dir, err := os.MkdirTemp("/tmp", "sgh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ln, err := listenHealth(filepath.Join(dir, "h.sock"))
	if err != nil {
		t.Fatal(err)
	}
	for range maxHealthConns {
		c, err := net.Dial("unix", filepath.Join(dir, "h.sock"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		a, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
	}
	done := make(chan error, 1)
	go func() {
		_, err := ln.Accept() // waits: every slot is held
		done <- err
	}()
	ln.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) { // a hang here is the bug
		t.Fatalf("Accept after Close: %v", err)
	}
}
