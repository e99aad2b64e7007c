package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
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
	// reqs counts every request but the bench's own (/_bench/...).
	reqs    atomic.Int64
	creates atomic.Int64 // POST /containers/create answered 201
	// docs is the canned answers that carry the tenant's owner label; it
	// is replaced whole by setOwner, never changed in place.
	docs atomic.Pointer[mockDocs]
	// stop ends the event streams (Close).
	stop chan struct{}
}

var (
	pingPath      = regexp.MustCompile(`^(/v[0-9]+\.[0-9]+)?/_ping$`)
	execStartPath = regexp.MustCompile(`^(/v[0-9]+\.[0-9]+)?/exec/[^/]+/start$`)
	buildPath     = regexp.MustCompile(`^(/v[0-9]+\.[0-9]+)?/build$`)
	versionPath   = regexp.MustCompile(`^(/v[0-9]+\.[0-9]+)?/version$`)
	createPath    = regexp.MustCompile(`^(/v[0-9]+\.[0-9]+)?/containers/create$`)
	listPath      = regexp.MustCompile(`^(/v[0-9]+\.[0-9]+)?/containers/json$`)
	imageListPath = regexp.MustCompile(`^(/v[0-9]+\.[0-9]+)?/images/json$`)
	imagePath     = regexp.MustCompile(`^(/v[0-9]+\.[0-9]+)?/images/(.+)/json$`)
	networkPath   = regexp.MustCompile(`^(/v[0-9]+\.[0-9]+)?/networks/([^/]+)$`)
	eventsPath    = regexp.MustCompile(`^(/v[0-9]+\.[0-9]+)?/events$`)
)

const (
	mockStatsPath = "/_bench/stats"
	// mockOwnerPath (POST, the owner as the body) sets the owner label the
	// mock puts on its network and its listed containers: the broker only
	// lets a tenant use a network whose owner label is the tenant's id,
	// which is known once the tenant socket exists.
	mockOwnerPath = "/_bench/owner"
)

// mockStats is what the mock answers on mockStatsPath.
type mockStats struct {
	Pings  int64 `json:"pings"`
	Builds int64 `json:"builds"`
	Other  int64 `json:"other"`
	Conns  int64 `json:"conns"`
	// Reqs is every request but the bench's own; Creates the container
	// creates answered 201.
	Reqs    int64 `json:"reqs"`
	Creates int64 `json:"creates"`
}

func startMock(path string) (*mockDocker, error) {
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	m := &mockDocker{path: path, ln: ln, stop: make(chan struct{})}
	m.setOwner("")
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
	if !strings.HasPrefix(p, "/_bench/") {
		m.reqs.Add(1)
	}
	switch {
	case p == mockOwnerPath && r.Method == http.MethodPost:
		b, err := io.ReadAll(io.LimitReader(r.Body, 1024))
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		m.setOwner(string(b))
		w.WriteHeader(http.StatusNoContent)
	case createPath.MatchString(p) && r.Method == http.MethodPost:
		// dockerd reads the whole body; an Id of 64 hex digits, as dockerd
		// answers.
		_, _ = io.Copy(io.Discard, r.Body)
		m.creates.Add(1)
		h.Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(mockCreated)
	case listPath.MatchString(p) && r.Method == http.MethodGet:
		h.Set("Content-Type", "application/json")
		_, _ = w.Write(m.docs.Load().list)
	case imageListPath.MatchString(p) && r.Method == http.MethodGet:
		// The broker's image sweep lists every image.
		h.Set("Content-Type", "application/json")
		_, _ = w.Write(mockImageList)
	case imagePath.MatchString(p) && r.Method == http.MethodGet:
		h.Set("Content-Type", "application/json")
		_, _ = w.Write(mockImage)
	case networkPath.MatchString(p) && r.Method == http.MethodGet:
		if name := networkPath.FindStringSubmatch(p)[2]; name != benchNetwork && name != benchNetworkID {
			h.Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"message":"network ` + name + ` not found"}` + "\n"))
			return
		}
		h.Set("Content-Type", "application/json")
		_, _ = w.Write(m.docs.Load().network)
	case eventsPath.MatchString(p) && r.Method == http.MethodGet:
		// The broker's name index follows the event stream: the mock's
		// containers never change, so it stays open and silent.
		h.Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_ = http.NewResponseController(w).Flush()
		select {
		case <-r.Context().Done():
		case <-m.stop:
		}
	case p == mockStatsPath && r.Method == http.MethodGet:
		// For a mock in its own process (-storm): what it has seen. The
		// broker never forwards this path (no Docker route matches it), and
		// it is not counted.
		h.Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(mockStats{
			Pings: m.pings.Load(), Builds: m.builds.Load(), Other: m.other.Load(), Conns: m.conns.Load(),
			Reqs: m.reqs.Load(), Creates: m.creates.Load(),
		})
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
	case versionPath.MatchString(p) && r.Method == http.MethodGet:
		// The broker asks for it in status and at every metrics scrape.
		h.Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"Version":"20.10.0","ApiVersion":"1.41","Os":"linux","Arch":"amd64"}` + "\n"))
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
	close(m.stop)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := m.srv.Shutdown(ctx); err != nil {
		_ = m.srv.Close()
	}
	_ = os.Remove(m.path)
}

// serveMockProcess is the child side of -storm's out-of-process mock
// (-serve-mock PATH): it serves the mock on path until its stdin is closed
// (the parent closes it, or dies) or it gets SIGTERM/SIGINT.
// PATH may be a comma-separated list: one mock, with its own counters, on
// each socket.
func serveMockProcess(ctx context.Context, path string) error {
	for _, p := range strings.Split(path, ",") {
		m, err := startMock(p)
		if err != nil {
			return err
		}
		defer m.Close()
	}
	eof := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(eof)
	}()
	select {
	case <-ctx.Done():
	case <-eof:
	}
	return nil
}

// mockProc is the mock dockerd running in a child process, so that its
// goroutines do not queue behind the load generator's in one Go scheduler.
type mockProc struct {
	path  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{}
}

// startMockProcess re-executes this program with -serve-mock path.
func startMockProcess(ctx context.Context, path string, timeout time.Duration) (*mockProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "-serve-mock", path)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start mock process: %w", err)
	}
	mp := &mockProc{path: path, cmd: cmd, stdin: stdin, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(mp.done) }()
	deadline := time.Now().Add(timeout)
	for {
		if c, err := net.Dial("unix", path); err == nil {
			_ = c.Close()
			return mp, nil
		}
		select {
		case <-mp.done:
			return nil, fmt.Errorf("mock process exited before serving %s", path)
		case <-ctx.Done():
			mp.Close()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			mp.Close()
			return nil, fmt.Errorf("mock process not serving %s after %v", path, timeout)
		}
	}
}

// stats asks the mock process what it has seen.
func (mp *mockProc) stats(ctx context.Context) (mockStats, error) {
	var st mockStats
	c := newClient(mp.path, 1)
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker"+mockStatsPath, nil)
	if err != nil {
		return st, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return st, fmt.Errorf("mock stats: %w", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("mock stats: %w", err)
	}
	return st, nil
}

// Close stops the child: stdin closed, then SIGKILL to its own PID after 5s.
func (mp *mockProc) Close() {
	_ = mp.stdin.Close()
	select {
	case <-mp.done:
	case <-time.After(5 * time.Second):
		_ = mp.cmd.Process.Kill()
		<-mp.done
	}
	_ = os.Remove(mp.path)
}
