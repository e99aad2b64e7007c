package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// cannedUpstream answers each request on a connection with the next of
// answers (raw bytes), and records what it read.
type cannedUpstream struct {
	ln      net.Listener
	answers []string
	mu      sync.Mutex
	got     []string // "METHOD URI body"
	conns   int
}

func startCanned(t *testing.T, path string, answers ...string) *cannedUpstream {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	u := &cannedUpstream{ln: ln, answers: answers}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.mu.Lock()
			u.conns++
			u.mu.Unlock()
			go u.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return u
}

func (u *cannedUpstream) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		body, _ := io.ReadAll(req.Body)
		u.mu.Lock()
		i := len(u.got)
		u.got = append(u.got, req.Method+" "+req.RequestURI+" "+string(body))
		u.mu.Unlock()
		if i >= len(u.answers) {
			return
		}
		if _, err := io.WriteString(c, u.answers[i]); err != nil {
			return
		}
		if strings.Contains(u.answers[i], "Connection: close") {
			return // a close-delimited body ends here
		}
	}
}

// TestLightProxyFraming checks that the light path copies each answer's
// framing exactly, so the next request on the same client connection gets
// its own answer, and that it refuses answers whose framing is ambiguous.
func TestLightProxyFraming(t *testing.T) {
	const next = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext"
	tests := []struct {
		name       string
		answer     string
		method     string
		body       string
		wantStatus int
		wantBody   string
		wantNext   bool // a second request on the same client connection is answered "next"
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nApi-Version: 1.41\r\n\r\nhello", "GET", "", 200, "hello", true},
		{"chunked with trailer", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n", "GET", "", 200, "abcde", true},
		{"no content", "HTTP/1.1 204 No Content\r\n\r\n", "DELETE", "", 204, "", true},
		{"head", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", "HEAD", "", 200, "", true},
		{"1xx first", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}", "POST", `{"a":1}`, 201, "{}", true},
		{"close delimited", "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil eof", "GET", "", 200, "until eof", true},
		{"both framings", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "GET", "", 502, "", true},
		{"two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", "GET", "", 502, "", true},
		{"other encoding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "GET", "", 502, "", true},
		{"bad status line", "HTTX/1.1 200 OK\r\n\r\n", "GET", "", 502, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir, err := os.MkdirTemp("/tmp", "sglp")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			up := startCanned(t, filepath.Join(dir, "up.sock"), tc.answer, next)
			lp := newLightProxy(filepath.Join(dir, "up.sock"))
			ln, err := net.Listen("unix", filepath.Join(dir, "p.sock"))
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: lp, ConnContext: lp.connContext, ConnState: lp.connState, ReadHeaderTimeout: 5 * time.Second}
			go func() { _ = srv.Serve(ln) }()
			t.Cleanup(func() { srv.Close() })

			c := newClient(filepath.Join(dir, "p.sock"), 1)
			defer c.CloseIdleConnections()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			do := func(method, body string) (int, string) {
				t.Helper()
				var rd io.Reader
				if body != "" {
					rd = strings.NewReader(body)
				}
				req, err := http.NewRequestWithContext(ctx, method, "http://docker/v1.41/x?y=1", rd)
				if err != nil {
					t.Fatal(err)
				}
				resp, err := c.Do(req)
				if err != nil {
					t.Fatalf("%s: %v", method, err)
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("%s body: %v", method, err)
				}
				return resp.StatusCode, string(b)
			}
			status, body := do(tc.method, tc.body)
			if status != tc.wantStatus {
				t.Fatalf("status %d, want %d (body %q)", status, tc.wantStatus, body)
			}
			if tc.wantStatus < 300 && body != tc.wantBody {
				t.Fatalf("body %q, want %q", body, tc.wantBody)
			}
			if tc.wantNext {
				if status, body := do("GET", ""); status != 200 || body != "next" {
					t.Fatalf("next request on the connection: %d %q, want 200 \"next\"", status, body)
				}
			}
			up.mu.Lock()
			defer up.mu.Unlock()
			if want := tc.method + " /v1.41/x?y=1 " + tc.body; len(up.got) == 0 || up.got[0] != want {
				t.Fatalf("upstream read %q, want first %q", up.got, want)
			}
		})
	}
}

// TestPeer1Create checks the body-inspecting model judges what it claims
// to judge, so its cell in the table is the cost of real work.
func TestPeer1Create(t *testing.T) {
	tests := []struct {
		name, body, wantMsg string
	}{
		{"runner body", string(createBody), ""},
		{"privileged", `{"Image":"x","HostConfig":{"Privileged":true}}`, "privileged containers are not allowed"},
		{"bind outside", `{"Image":"x","HostConfig":{"Binds":["/etc:/x"]}}`, "bind mount outside " + peer1BindRoot},
		{"bind dotdot", `{"Image":"x","HostConfig":{"Binds":["/home/runner/_work/../../../etc:/x"]}}`, "bind mount outside " + peer1BindRoot},
		{"bind inside", `{"Image":"x","HostConfig":{"Binds":["/home/runner/_work/app:/w"]}}`, ""},
		{"host network", `{"Image":"x","HostConfig":{"NetworkMode":"host"}}`, "host network is not allowed"},
		{"not json", `{"Image":`, "malformed body"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			nb, msg := peer1Create([]byte(tc.body))
			if msg != tc.wantMsg {
				t.Fatalf("refusal %q, want %q", msg, tc.wantMsg)
			}
			if msg == "" && !strings.Contains(string(nb), `"com.example.owner":"`+peer1Owner+`"`) {
				t.Fatalf("owner label not set: %s", nb)
			}
		})
	}
}
