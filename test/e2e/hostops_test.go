package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// A preset for the reload test: docker version works, docker ps does not
// until v2 allows it.
const (
	reloadPresetV1 = `name: ops
description: version only
rules:
  - {method: [GET, HEAD], path: /_ping}
  - {method: GET, path: /version}
`
	reloadPresetV2 = reloadPresetV1 + `  - {method: GET, path: /containers/json}
`
)

// waitLogCount waits until the broker log holds want at least n times.
func waitLogCount(t *testing.T, b *Broker, want string, n int) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		log := b.Log()
		if strings.Count(log, want) >= n {
			return log
		}
		if time.Now().After(deadline) {
			t.Fatalf("broker log lacks %d x %q:\n%s", n, want, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (b *Broker) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if b.proc == nil {
		t.Fatal("broker not running")
	}
	if err := b.proc.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// TestSighupReload: SIGHUP re-reads --preset-dir (a changed preset takes
// effect through the tenant socket with the docker CLI, a broken one
// changes nothing) and reopens --access-log after logrotate's mv, and the
// broker keeps running.
func TestSighupReload(t *testing.T) {
	b := NewBroker(t)
	presets := filepath.Join(b.Dir, "presets")
	if err := os.Mkdir(presets, 0o700); err != nil {
		t.Fatal(err)
	}
	presetFile := filepath.Join(presets, "ops.yaml")
	write := func(name, src string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(presets, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("ops.yaml", reloadPresetV1)
	access := filepath.Join(b.Dir, "access.log")
	b.ExtraArgs = append(b.ExtraArgs, "--preset-dir", presets, "--access-log", access)
	b.Start()
	b.CreateSocket(t, "hup", "ops")

	b.Docker("hup", "version").MustSucceed(t)
	if r := b.Docker("hup", "ps"); r.Code == 0 || !strings.Contains(r.Stderr, "sockguard") {
		t.Fatalf("docker ps before the reload: %s", r)
	}

	// A broken file next to the change: the reload keeps the old presets.
	write("ops.yaml", reloadPresetV2)
	write("broken.yaml", "name: broken\nrules: [\n")
	b.signal(t, syscall.SIGHUP)
	waitLogCount(t, b, "msg=presets_reload_failed", 1)
	if r := b.Docker("hup", "ps"); r.Code == 0 {
		t.Fatalf("docker ps after a failed reload: %s", r)
	}
	if err := os.Remove(filepath.Join(presets, "broken.yaml")); err != nil {
		t.Fatal(err)
	}

	// logrotate: move the file away, then SIGHUP.
	if err := os.Rename(access, access+".1"); err != nil {
		t.Fatal(err)
	}
	b.signal(t, syscall.SIGHUP)
	log := waitLogCount(t, b, "msg=presets_reloaded", 1)
	if !strings.Contains(log, "changed=[ops]") || !strings.Contains(log, "sockets_updated=[hup]") || !strings.Contains(log, "msg=access_log_reopened") {
		t.Fatalf("reload log:\n%s", log)
	}
	b.Docker("hup", "ps").MustSucceed(t)
	waitFileHas(t, access, `"path":"/containers/json","decision":"allow"`)
	old, err := os.ReadFile(access + ".1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(old), `"path":"/containers/json","decision":"deny"`) || strings.Contains(string(old), `"path":"/containers/json","decision":"allow"`) {
		t.Fatalf("rotated access log:\n%s", old)
	}
	if b.proc == nil {
		t.Fatal("broker gone")
	}
	select {
	case <-b.proc.done:
		t.Fatalf("broker exited after SIGHUP: %v", b.proc.err)
	default:
	}
	// A preset file anyone may write is refused: the narrower v1 written
	// through it does not take effect either.
	write("ops.yaml", reloadPresetV1)
	if err := os.Chmod(presetFile, 0o666); err != nil {
		t.Fatal(err)
	}
	b.signal(t, syscall.SIGHUP)
	if log := waitLogCount(t, b, "msg=presets_reload_failed", 2); !strings.Contains(log, "ops.yaml is writable by group or others") {
		t.Fatalf("reload log:\n%s", log)
	}
	b.Docker("hup", "ps").MustSucceed(t)
	write("ops.yaml", reloadPresetV2)
	if err := os.Chmod(presetFile, 0o600); err != nil {
		t.Fatal(err)
	}

	// The change survives a restart (it is the file, not the memory).
	b.Restart()
	b.Docker("hup", "ps").MustSucceed(t)
	if _, err := os.Stat(presetFile); err != nil {
		t.Fatal(err)
	}
}

func waitFileHas(t *testing.T, path, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, _ := os.ReadFile(path)
		if strings.Contains(string(data), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s lacks %q:\n%s", path, want, data)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// relay is a stand-in path for dockerd's socket that the test can take
// away (every connection cut, the socket gone) and bring back.
type relay struct {
	path, target string
	mu           sync.Mutex
	ln           net.Listener
	conns        map[net.Conn]struct{}
}

func (r *relay) start(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("unix", r.path)
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	r.ln = ln
	r.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("unix", r.target)
			if err != nil {
				c.Close()
				continue
			}
			r.mu.Lock()
			r.conns[c], r.conns[up] = struct{}{}, struct{}{}
			r.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
}

func (r *relay) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ln != nil {
		r.ln.Close() // removes the socket file
		r.ln = nil
	}
	for c := range r.conns {
		c.Close()
		delete(r.conns, c)
	}
}

// TestUpstreamHealth: with dockerd unreachable, sgctl status exits 1, the
// health service says NOT_SERVING for sockguard.upstream and the broker
// logs upstream_down once however many requests fail; when dockerd is
// back, status exits 0 and upstream_up is logged once.
func TestUpstreamHealth(t *testing.T) {
	b := NewBroker(t)
	r := &relay{path: filepath.Join(b.Dir, "up.sock"), target: strings.TrimPrefix(suite.upstream, "unix://"), conns: map[net.Conn]struct{}{}}
	r.start(t)
	t.Cleanup(r.stop)
	health := filepath.Join(b.Dir, "health.sock")
	b.Upstream = "unix://" + r.path
	b.ExtraArgs = append(b.ExtraArgs, "--health-socket", health, "--bind-pins", "refuse")
	b.Start()
	b.CreateSocket(t, "hc", "read-only")
	b.Sgctl("status").MustSucceed(t)

	cc, err := grpc.NewClient("unix://"+health, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	waitHealth := func(service string, want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			resp, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: service})
			if err == nil && resp.GetStatus() == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("health %q: %v %v, want %v", service, resp.GetStatus(), err, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitHealth("sockguard.upstream", healthpb.HealthCheckResponse_SERVING)
	waitHealth("sockguard.tenant/hc", healthpb.HealthCheckResponse_SERVING)

	r.stop()
	for range 10 {
		if res := b.Docker("hc", "ps"); res.Code == 0 {
			t.Fatalf("docker ps with dockerd away: %s", res)
		}
	}
	st := b.Sgctl("status")
	if st.Code != 1 || !strings.Contains(st.Stdout, "not reachable") {
		t.Fatalf("status with dockerd away: %s", st)
	}
	waitHealth("sockguard.upstream", healthpb.HealthCheckResponse_SERVING+1) // NOT_SERVING
	waitHealth("sockguard.tenant/hc", healthpb.HealthCheckResponse_SERVING)  // the socket itself still serves
	waitLogCount(t, b, "msg=upstream_down", 1)

	r.start(t)
	waitHealth("sockguard.upstream", healthpb.HealthCheckResponse_SERVING)
	b.Sgctl("status").MustSucceed(t)
	b.Docker("hc", "ps").MustSucceed(t)
	log := waitLogCount(t, b, "msg=upstream_up", 1)
	if n, m := strings.Count(log, "msg=upstream_down"), strings.Count(log, "msg=upstream_up"); n != 1 || m != 1 {
		t.Fatalf("upstream_down %d times, upstream_up %d times, want once each:\n%s", n, m, log)
	}
}

// TestQuietAdminLog: at the default level, healthchecks and listings log
// nothing; a create logs one line, a refused call a warning.
func TestQuietAdminLog(t *testing.T) {
	b := NewBroker(t)
	b.ExtraArgs = append(b.ExtraArgs, "--log-level", "info")
	b.Start()
	for range 3 {
		b.Sgctl("status").MustSucceed(t)
		b.Sgctl("ls").MustSucceed(t)
	}
	b.CreateSocket(t, "quiet", "read-only")
	b.Sgctl("inspect-socket", "nope").MustFail(t)
	log := waitLogCount(t, b, "grpc.method=GetSocket", 1)
	calls := regexp.MustCompile(`(?m)^.*msg="finished call".*$`).FindAllString(log, -1)
	var create, get int
	for _, c := range calls {
		switch {
		case strings.Contains(c, "grpc.method=CreateSocket") && strings.Contains(c, "level=INFO"):
			create++
		case strings.Contains(c, "grpc.method=GetSocket") && strings.Contains(c, "level=WARN"):
			get++
		default:
			t.Errorf("unexpected admin log line: %s", c)
		}
	}
	if create != 1 || get != 1 {
		t.Fatalf("create lines %d, failed get lines %d, want 1 each:\n%s", create, get, strings.Join(calls, "\n"))
	}
}

// TestStreamMetrics: a docker run's attach and wait streams land in
// sockguard_stream_duration_seconds, not in the request histogram; an
// audit socket's would-deny is counted as decision="audit"; build info is
// there.
func TestStreamMetrics(t *testing.T) {
	b := NewBroker(t)
	metrics := filepath.Join(b.Dir, "metrics.sock")
	b.ExtraArgs = append(b.ExtraArgs, "--metrics-listen", "unix://"+metrics)
	b.Start()
	b.CreateSocket(t, "st", "github-actions-runner")
	b.CreateSocket(t, "au", "read-only", "--policy-mode", "audit")
	name := objectName(t, "c")
	cleanupUpstream(t, "container", name)
	const sleep = 6
	b.Docker("st", "run", "--rm", "--name", name, "--network", "none", testImage, "sleep", strconv.Itoa(sleep)).MustSucceed(t)
	// A write through the read-only preset in audit mode: recorded as a
	// would-deny and forwarded.
	vol := objectName(t, "v")
	cleanupUpstream(t, "volume", vol)
	b.Docker("au", "volume", "create", vol).MustSucceed(t)

	var body string
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, _, data := doRaw(t, metrics, "GET", "/metrics", "", nil)
		body = string(data)
		if strings.Contains(body, `sockguard_stream_duration_seconds_count{kind="wait",socket="st"}`) &&
			strings.Contains(body, `sockguard_requests_total{decision="audit",socket="au"} 1`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics lack the stream or the audit decision:\n%s", grepLines(body, "sockguard_"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	sum := metricValue(t, body, `sockguard_stream_duration_seconds_sum{kind="wait",socket="st"}`)
	if sum < sleep {
		t.Errorf("wait stream lasted %.1fs, want at least %ds", sum, sleep)
	}
	if !strings.Contains(body, `sockguard_stream_duration_seconds_count{kind="attach",socket="st"}`) {
		t.Errorf("no attach stream:\n%s", grepLines(body, "stream_duration"))
	}
	// No single request took as long as the container ran: the wait is
	// not in the request histogram.
	count := metricValue(t, body, `sockguard_request_duration_seconds_count{decision="allow",socket="st"}`)
	under := metricValue(t, body, `sockguard_request_duration_seconds_bucket{decision="allow",socket="st",le="5"}`)
	if count == 0 || under != count {
		t.Errorf("request histogram: %v of %v requests under 5s:\n%s", under, count, grepLines(body, "request_duration_seconds"))
	}
	for _, want := range []string{`sockguard_build_info{goversion="go`, `sockguard_audit_would_denials_total{reason="rule-denied",socket="au"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q:\n%s", want, grepLines(body, "sockguard_"))
		}
	}
}

func metricValue(t *testing.T, body, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("no series %s", series)
	return 0
}

func grepLines(body, sub string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.Contains(l, sub) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestReloadManySockets measures a reload that recompiles the policy of
// many sockets (the number is in the log line; nothing is asserted about
// time).
func TestReloadManySockets(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	b := NewBroker(t)
	presets := filepath.Join(b.Dir, "presets")
	if err := os.Mkdir(presets, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(presets, "ops.yaml"), []byte(reloadPresetV1), 0o600); err != nil {
		t.Fatal(err)
	}
	b.ExtraArgs = append(b.ExtraArgs, "--preset-dir", presets)
	b.Start()
	const n = 50
	for i := range n {
		b.Sgctl("create-socket", fmt.Sprintf("m%02d", i), "--preset", "ops").MustSucceed(t)
	}
	if err := os.WriteFile(filepath.Join(presets, "ops.yaml"), []byte(reloadPresetV2), 0o600); err != nil {
		t.Fatal(err)
	}
	b.signal(t, syscall.SIGHUP)
	log := waitLogCount(t, b, "msg=presets_reloaded", 1)
	line := regexp.MustCompile(`msg=presets_reloaded.*`).FindString(log)
	t.Logf("reload with %d sockets: %s", n, line)
	if !strings.Contains(line, "(50 in all)") {
		t.Fatalf("reload did not update every socket: %s", line)
	}
	b.Docker("m49", "ps").MustSucceed(t)
}
