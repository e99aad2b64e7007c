package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"regexp"
	"sync/atomic"
	"time"
)

// mockDocker is an in-process stand-in for dockerd. It answers only what the
// benchmark sends, exactly enough like dockerd for the broker to pass it on.
type mockDocker struct {
	path  string
	ln    net.Listener
	srv   *http.Server
	pings atomic.Int64 // /_ping and /vX.Y/_ping
	// builds counts POST .../build requests that reached the upstream. The
	// broker must deny them, so after a broker run this must be zero.
	builds atomic.Int64
	other  atomic.Int64 // anything answered with 404
	conns  atomic.Int64 // connections accepted
}

var (
	pingPath      = regexp.MustCompile(`^(/v[0-9]+\.[0-9]+)?/_ping$`)
	execStartPath = regexp.MustCompile(`^(/v[0-9]+\.[0-9]+)?/exec/[^/]+/start$`)
	buildPath     = regexp.MustCompile(`^(/v[0-9]+\.[0-9]+)?/build$`)
)

func startMock(path string) (*mockDocker, error) {
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	m := &mockDocker{path: path, ln: ln}
	m.srv = &http.Server{
		Handler:           m,
		ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				m.conns.Add(1)
			}
		},
	}
	go func() {
		// Serve only fails early if the listener breaks; the load generator
		// then counts transport errors, so nothing is lost by ignoring it.
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logf("mock upstream: %v", err)
		}
	}()
	return m, nil
}

func (m *mockDocker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Api-Version", "1.41")
	h.Set("Docker-Experimental", "false")
	h.Set("Ostype", "linux")
	h.Set("Server", "Docker/20.10.0 (linux)")
	p := r.URL.Path
	switch {
	case pingPath.MatchString(p) && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		m.pings.Add(1)
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("Cache-Control", "no-cache, no-store, must-revalidate")
		h.Set("Pragma", "no-cache")
		h.Set("Content-Length", "2")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write([]byte("OK"))
		}
	case execStartPath.MatchString(p) && r.Method == http.MethodPost:
		// Not a real attach stream: a detached exec start answers 200 with
		// an empty body, which is all the benchmark needs.
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
	default:
		if buildPath.MatchString(p) {
			m.builds.Add(1)
		} else {
			m.other.Add(1)
		}
		// net/http drops the body of a HEAD response by itself.
		h.Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"message":"page not found"}` + "\n"))
	}
}

func (m *mockDocker) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := m.srv.Shutdown(ctx); err != nil {
		_ = m.srv.Close()
	}
	_ = os.Remove(m.path)
}
