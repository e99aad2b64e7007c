package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestObjectRouteBench measures an object route by full id against the
// real dockerd: GET /containers/{id}/json direct and through a tenant
// socket, next to GET /_ping through the same socket (the broker's floor
// for a request it forwards) and the same inspect by name (which always
// resolves upstream). It asserts nothing: numbers for the report, not a
// test. Run it against a broker built without -race:
//
//	go build -o /tmp/sgbin/broker ./cmd/broker && go build -o /tmp/sgbin/sgctl ./cmd/sgctl
//	SOCKGUARD_BENCH_OBJECT_ROUTES=1 SOCKGUARD_BENCH_SECONDS=5 \
//	SOCKGUARD_E2E_DOCKER_HOST=unix://$d/docker.sock SOCKGUARD_BIN_DIR=/tmp/sgbin \
//	  go test -count=1 -v ./test/e2e/ -run TestObjectRouteBench
//
// SOCKGUARD_BENCH_BASE_BIN_DIR=/tmp/sgbin-old adds the rows of a broker
// built from another commit, measured in the same run.
//
// Each client holds one keep-alive connection; c clients run at once.
func TestObjectRouteBench(t *testing.T) {
	if os.Getenv("SOCKGUARD_BENCH_OBJECT_ROUTES") == "" {
		t.Skip("set SOCKGUARD_BENCH_OBJECT_ROUTES=1 to measure object routes")
	}
	secs := 3.0
	if s := os.Getenv("SOCKGUARD_BENCH_SECONDS"); s != "" {
		var err error
		if secs, err = strconv.ParseFloat(s, 64); err != nil || secs <= 0 {
			t.Fatalf("SOCKGUARD_BENCH_SECONDS=%q: want a positive number", s)
		}
	}
	dur := time.Duration(secs * float64(time.Second))

	b := StartBroker(t)
	sock := b.CreateSocket(t, "bench", preset)
	cleanupNewContainers(t)
	name := objectName(t, "c")
	id := strings.TrimSpace(b.Docker("bench", "run", "-d", "--network", "none", "--name", name, testImage, "sleep", "600").MustSucceed(t).Stdout)
	direct := strings.TrimPrefix(suite.upstream, "unix://")

	type scenario struct{ name, sock, target string }
	scenarios := []scenario{
		{"direct inspect by full id", direct, "/v1.41/containers/" + id + "/json"},
		{"socket inspect by full id", sock, "/v1.41/containers/" + id + "/json"},
		{"socket inspect by name", sock, "/v1.41/containers/" + name + "/json"},
		{"socket _ping", sock, "/_ping"},
		{"direct _ping", direct, "/_ping"},
	}
	// SOCKGUARD_BENCH_BASE_BIN_DIR: a second broker, from another build
	// (e.g. before a change), measured in the same run on the same
	// container, owned there by a tenant of its own.
	if dir := os.Getenv("SOCKGUARD_BENCH_BASE_BIN_DIR"); dir != "" {
		saved := suite.broker
		suite.broker = filepath.Join(dir, "broker")
		base := StartBroker(t)
		suite.broker = saved
		bsock := base.CreateSocket(t, "bench", preset)
		bname := objectName(t, "c") + "-base"
		bid := strings.TrimSpace(base.Docker("bench", "run", "-d", "--network", "none", "--name", bname, testImage, "sleep", "600").MustSucceed(t).Stdout)
		scenarios = append(scenarios,
			scenario{"base socket inspect by id", bsock, "/v1.41/containers/" + bid + "/json"},
			scenario{"base socket _ping", bsock, "/_ping"})
	}
	// Rows take turns in short rounds, so a noisy neighbour on a shared
	// machine weighs on all of them alike.
	const rounds = 5
	out := &strings.Builder{}
	fmt.Fprintf(out, "%-28s %3s %9s %9s %9s %8s\n", "scenario", "c", "req/s", "p50", "p99", "ratio")
	for _, c := range []int{1, 10} {
		res := make([]loadResult, len(scenarios))
		for range rounds {
			for i, s := range scenarios {
				res[i].add(loadRun(t, s.sock, s.target, c, dur/rounds))
			}
		}
		base := res[0].rate()
		for i, s := range scenarios {
			p50, p99 := res[i].percentiles()
			fmt.Fprintf(out, "%-28s %3d %9.0f %9s %9s %8.2f\n", s.name, c, res[i].rate(),
				p50.Round(time.Microsecond), p99.Round(time.Microsecond), res[i].rate()/base)
		}
	}
	t.Logf("object routes, %s per row in %d rounds, ratio = req/s over direct inspect by full id at the same c:\n%s", dur, rounds, out)
}

// loadResult is the latencies of every request of one or more runs and
// the time they took.
type loadResult struct {
	lats    []time.Duration
	elapsed time.Duration
}

func (r *loadResult) add(o loadResult) {
	r.lats = append(r.lats, o.lats...)
	r.elapsed += o.elapsed
}

func (r *loadResult) rate() float64 { return float64(len(r.lats)) / r.elapsed.Seconds() }

func (r *loadResult) percentiles() (p50, p99 time.Duration) {
	slices.Sort(r.lats)
	return r.lats[len(r.lats)/2], r.lats[len(r.lats)*99/100]
}

// loadRun sends GET target over socket from c clients for d and measures
// every request; any answer but 200 fails the test.
func loadRun(t *testing.T, socket, target string, c int, d time.Duration) loadResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var (
		mu    sync.Mutex
		lats  []time.Duration
		first error
		wg    sync.WaitGroup
	)
	start := time.Now()
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, "unix", socket)
				},
				MaxIdleConnsPerHost: 1,
			}
			defer tr.CloseIdleConnections()
			var mine []time.Duration
			for ctx.Err() == nil {
				req, _ := http.NewRequest(http.MethodGet, "http://docker"+target, nil)
				t0 := time.Now()
				resp, err := tr.RoundTrip(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %s", resp.Status)
					}
				}
				if err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lats = append(lats, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if first != nil {
		t.Fatalf("GET %s via %s: %v", target, socket, first)
	}
	if len(lats) == 0 {
		t.Fatalf("GET %s via %s: no request finished", target, socket)
	}
	return loadResult{lats: lats, elapsed: elapsed}
}
