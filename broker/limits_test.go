package broker

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTenantConnBudget(t *testing.T) {
	for _, tc := range []struct {
		name    string
		nofile  uint64
		reserve int
		want    int64
		wantErr bool
	}{
		{"typical systemd", 524288, 1024, 261632, false},
		{"small", 4096, 1024, 1536, false},
		{"too small", 1024, 1024, 0, true},
		{"just enough", 1024 + 2*minTenantConns, 1024, minTenantConns, false},
		{"infinity", ^uint64(0), 1024, (1<<30 - 1024) / 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tenantConnBudget(tc.nofile, tc.reserve)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Fatalf("got %d, %v; want %d, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestConnGateAdmit(t *testing.T) {
	g := newConnGate(3)
	a, b := &tenantServer{}, &tenantServer{}
	var rel []func()
	for i := 0; i < 2; i++ {
		r, msg := g.admit(a, 2)
		if msg != "" {
			t.Fatalf("connection %d refused: %s", i, msg)
		}
		rel = append(rel, r)
	}
	if _, msg := g.admit(a, 2); !strings.Contains(msg, "--max-conns-per-socket") {
		t.Fatalf("third connection of a: %q, want the per-socket limit", msg)
	}
	r, msg := g.admit(b, 2)
	if msg != "" {
		t.Fatalf("b's first connection refused: %s", msg)
	}
	if _, msg := g.admit(b, 2); !strings.Contains(msg, "tenant connections") {
		t.Fatalf("b's second connection: %q, want the broker-wide limit", msg)
	}
	r()
	r() // releasing twice gives back one slot
	rel[0]()
	if a.conns.Load() != 1 || b.conns.Load() != 0 || g.total.Load() != 1 {
		t.Fatalf("counts a=%d b=%d total=%d, want 1 0 1", a.conns.Load(), b.conns.Load(), g.total.Load())
	}
}

func TestRequestSlot(t *testing.T) {
	s := &tenantServer{}
	r1, ok1 := s.requestSlot(1)
	_, ok2 := s.requestSlot(1)
	if !ok1 || ok2 {
		t.Fatalf("slots: %v %v, want true false", ok1, ok2)
	}
	r1()
	r1()
	if _, ok := s.requestSlot(1); !ok || s.inflight.Load() != 1 {
		t.Fatalf("after release: ok %v inflight %d", ok, s.inflight.Load())
	}
}

// TestConnGateReject: a refused connection gets a complete HTTP answer
// with a Docker error body, even when the client sent a request first
// that nobody reads.
func TestConnGateReject(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	g := newConnGate(10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			g.reject(c, http.StatusTooManyRequests, "sockguard: too many connections")
		}
	}()
	for i := 0; i < 20; i++ {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		must(t, c.SetDeadline(time.Now().Add(5*time.Second)))
		io.WriteString(c, "GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("reading the answer: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var m struct{ Message string }
		if resp.StatusCode != http.StatusTooManyRequests || json.Unmarshal(body, &m) != nil || m.Message != "sockguard: too many connections" {
			t.Fatalf("answer %d %q", resp.StatusCode, body)
		}
		c.Close()
	}
}

func TestErrorResponse(t *testing.T) {
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(errorResponse(http.StatusForbidden, `a "quoted" message`))), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if resp.StatusCode != 403 || !resp.Close || resp.Header.Get("Content-Type") != "application/json" ||
		string(body) != `{"message":"a \"quoted\" message"}`+"\n" {
		t.Fatalf("got %d close=%v %q", resp.StatusCode, resp.Close, body)
	}
}
