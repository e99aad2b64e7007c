package main

// In-process benchmarks of the broker's request path, for profiling: the
// broker (broker.Run), the mock dockerd and the clients share this test
// binary, so `go test -bench ... -cpuprofile` sees the broker's hot path.
//
//	go test -run='^$' -bench=BenchmarkProxyPing -cpuprofile cpu.out ./test/bench/
//	go tool pprof -top -nodecount=40 cpu.out
//
// See README.md.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/sockguard/sockguard/broker"
	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
)

// fixture is one in-process broker with one tenant, shared by every
// benchmark of the binary and torn down by TestMain.
type fixture struct {
	dir, tenantSock, metricsSock string
	mock                         *mockDocker
	// bareSock and lightSock are a bare httputil.ReverseProxy and the
	// light path (lightproxy.go) in front of the same mock, role=proxy.
	bareSock, lightSock string
	proxies             []*http.Server
	cancel              context.CancelFunc
	done                chan error
}

var (
	fixOnce sync.Once
	fix     *fixture
	fixErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if fix != nil {
		fix.close()
	}
	os.Exit(code)
}

func (f *fixture) close() {
	if f.cancel != nil {
		f.cancel()
		select {
		case err := <-f.done:
			if err != nil {
				fmt.Fprintf(os.Stderr, "broker.Run: %v\n", err)
			}
		case <-time.After(15 * time.Second):
			fmt.Fprintln(os.Stderr, "broker.Run did not return 15s after cancel")
		}
	}
	for _, p := range f.proxies {
		_ = p.Close()
	}
	if f.mock != nil {
		f.mock.Close()
	}
	_ = removeTemp(f.dir)
}

// getFixture starts the mock and the broker on first use.
func getFixture(b *testing.B) *fixture {
	b.Helper()
	fixOnce.Do(func() { fix, fixErr = newFixture() })
	if fixErr != nil {
		b.Fatal(fixErr)
	}
	return fix
}

func newFixture() (*fixture, error) {
	dir, err := os.MkdirTemp("/tmp", "sgbt")
	if err != nil {
		return nil, err
	}
	f := &fixture{dir: dir, done: make(chan error, 1)}
	// Goroutines inherit their creator's profiler labels: the mock's
	// server goroutines are role=mock, everything broker.Run starts is
	// role=broker, and the clients are role=client, so
	// `go tool pprof -tagfocus role=broker` shows the broker alone.
	pprof.Do(context.Background(), pprof.Labels("role", "mock"), func(context.Context) {
		f.mock, err = startMock(filepath.Join(dir, "up.sock"))
	})
	if err != nil {
		f.close()
		return nil, err
	}
	admin := filepath.Join(dir, "admin.sock")
	f.metricsSock = filepath.Join(dir, "metrics.sock")
	// As the binary runs in `make bench`: --log-level warn, default
	// retention (100000 records, 30 days), no access log.
	cfg := broker.Config{
		Upstream: "unix://" + f.mock.path, AdminSocket: admin, AdminGroup: -1,
		SocketDir: filepath.Join(dir, "s"), StateDir: filepath.Join(dir, "state"),
		DenyLogMaxRecords: 100000, DenyLogMaxAge: 30 * 24 * time.Hour,
		ShutdownTimeout: 5 * time.Second, Version: "bench",
		MetricsListen: "unix://" + f.metricsSock,
		Logger:        slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	go pprof.Do(ctx, pprof.Labels("role", "broker"), func(ctx context.Context) { f.done <- broker.Run(ctx, cfg) })
	if err := waitSocket(ctx, nil, admin, 20*time.Second); err != nil {
		f.close()
		return nil, err
	}
	cc, err := grpc.NewClient("unix://"+admin, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		f.close()
		return nil, err
	}
	defer cc.Close()
	cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
	defer ccancel()
	created, err := sockguardv1.NewSockguardServiceClient(cc).CreateSocket(cctx,
		&sockguardv1.CreateSocketRequest{Socket: &sockguardv1.Socket{Name: tenant, Preset: preset}})
	if err != nil {
		f.close()
		return nil, fmt.Errorf("create socket: %w", err)
	}
	f.tenantSock = created.GetSocket().GetPath()
	// The mock's network and listed containers carry the tenant's owner
	// label, as the broker's own creates would have made them.
	f.mock.setOwner(created.GetSocket().GetTenantId())
	if err := waitSocket(ctx, nil, f.tenantSock, 20*time.Second); err != nil {
		f.close()
		return nil, err
	}
	f.bareSock, f.lightSock = filepath.Join(dir, "bare.sock"), filepath.Join(dir, "light.sock")
	lp := newLightProxy(f.mock.path)
	for _, p := range []struct {
		sock string
		srv  *http.Server
	}{
		{f.bareSock, &http.Server{Handler: reverseProxy(f.mock.path)}},
		{f.lightSock, &http.Server{Handler: lp, ConnContext: lp.connContext, ConnState: lp.connState}},
	} {
		ln, err := net.Listen("unix", p.sock)
		if err != nil {
			f.close()
			return nil, err
		}
		p.srv.ReadHeaderTimeout = 10 * time.Second
		f.proxies = append(f.proxies, p.srv)
		go pprof.Do(ctx, pprof.Labels("role", "proxy"), func(context.Context) { _ = p.srv.Serve(ln) })
	}
	return f, nil
}

// benchParallelism is RunParallel's multiplier: GOMAXPROCS*4 goroutines (8
// on 2 cores), each one keep-alive client, about `go run ./test/bench -c 8`.
const benchParallelism = 4

// benchTarget drives t with b.RunParallel, one keep-alive client per
// goroutine. ns/op is wall time per request over all goroutines, i.e. the
// inverse of the throughput.
func benchTarget(b *testing.B, t target) {
	if err := t.probe(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetParallelism(benchParallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := pprof.WithLabels(context.Background(), pprof.Labels("role", "client"))
		pprof.SetGoroutineLabels(ctx)
		c := newClient(t.socket, 1)
		defer c.CloseIdleConnections()
		for pb.Next() {
			req, err := t.newRequest(ctx)
			if err != nil {
				b.Error(err)
				return
			}
			resp, err := c.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil {
				b.Error(err)
				return
			}
			if resp.StatusCode != t.wantStatus {
				b.Errorf("%s: status %d, want %d", t.name, resp.StatusCode, t.wantStatus)
				return
			}
		}
	})
	b.StopTimer()
}

// BenchmarkDirectPing is the floor: the mock alone, same clients.
func BenchmarkDirectPing(b *testing.B) {
	f := getFixture(b)
	benchTarget(b, target{name: "direct ping", socket: f.mock.path,
		method: http.MethodGet, path: pingURLPath, wantStatus: http.StatusOK, checkBody: checkPing})
}

// BenchmarkProxyPing is an allowed request, forwarded to the mock.
func BenchmarkProxyPing(b *testing.B) {
	f := getFixture(b)
	benchTarget(b, target{name: "broker ping", socket: f.tenantSock,
		method: http.MethodGet, path: pingURLPath, wantStatus: http.StatusOK, checkBody: checkPing})
}

// BenchmarkProxyDenied is a denied request: policy, deny log, error JSON.
// It reports what the deny log did with the records (committed to bbolt or
// dropped because the writer was behind), per request.
func BenchmarkProxyDenied(b *testing.B) {
	f := getFixture(b)
	ctx := context.Background()
	m0, err := scrapeMetrics(ctx, f.metricsSock)
	if err != nil {
		b.Fatal(err)
	}
	benchTarget(b, target{name: "broker denied", socket: f.tenantSock,
		method: http.MethodPost, path: deniedPath, wantStatus: http.StatusForbidden, checkBody: checkDenied})
	// Let the writer catch up so "written" is not cut short by the timer.
	denied := func(m metricSet) float64 { return m.sum("sockguard_requests_total", "decision", "deny") }
	var m1 metricSet
	for deadline := time.Now().Add(10 * time.Second); ; {
		if m1, err = scrapeMetrics(ctx, f.metricsSock); err != nil {
			b.Fatal(err)
		}
		if m1.sum("sockguard_deny_log_records_written_total")+m1.sum("sockguard_deny_log_records_dropped_total") >= denied(m1) ||
			time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	n := denied(m1) - denied(m0)
	if n > 0 {
		w := m1.sum("sockguard_deny_log_records_written_total") - m0.sum("sockguard_deny_log_records_written_total")
		d := m1.sum("sockguard_deny_log_records_dropped_total") - m0.sum("sockguard_deny_log_records_dropped_total")
		b.ReportMetric(w/n, "written/op")
		b.ReportMetric(d/n, "dropped/op")
	}
}

// listTarget is the allowed GET /containers/json of the scenario table
// (list-c10), on socket.
func listTarget(name, socket string) target {
	return target{name: name, socket: socket, method: http.MethodGet, path: "/v1.41/containers/json",
		wantStatus: http.StatusOK, checkBody: checkList}
}

// createTarget is the container create of the scenario table.
func createTarget(name, socket string) target {
	return target{name: name, socket: socket, method: http.MethodPost, path: "/v1.41/containers/create?name=job",
		body: createBody, contentType: "application/json", wantStatus: http.StatusCreated, checkBody: checkCreated}
}

// BenchmarkDirectList is the floor of BenchmarkProxyList: the mock alone.
func BenchmarkDirectList(b *testing.B) {
	f := getFixture(b)
	benchTarget(b, listTarget("direct list", f.mock.path))
}

// BenchmarkProxyList is the allowed GET /containers/json through the
// tenant socket: the path to profile for the list-c10 row.
func BenchmarkProxyList(b *testing.B) {
	f := getFixture(b)
	benchTarget(b, listTarget("broker list", f.tenantSock))
}

// BenchmarkDirectCreate is the floor of BenchmarkProxyCreate.
func BenchmarkDirectCreate(b *testing.B) {
	f := getFixture(b)
	benchTarget(b, createTarget("direct create", f.mock.path))
}

// BenchmarkProxyCreate is the runner's container create through the
// tenant socket (the create-c* rows).
func BenchmarkProxyCreate(b *testing.B) {
	f := getFixture(b)
	benchTarget(b, createTarget("broker create", f.tenantSock))
}

// BenchmarkBareList is BenchmarkProxyList through a bare
// httputil.ReverseProxy (the table's "bare RP" floor), in process.
func BenchmarkBareList(b *testing.B) {
	f := getFixture(b)
	benchTarget(b, listTarget("bare list", f.bareSock))
}

// BenchmarkLightList is BenchmarkProxyList through the light path
// experiment (the table's "light"), in process.
func BenchmarkLightList(b *testing.B) {
	f := getFixture(b)
	benchTarget(b, listTarget("light list", f.lightSock))
}
