package broker

import (
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
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
