package broker

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/sockguard/sockguard/broker/isolation"
	"github.com/sockguard/sockguard/broker/store"
	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
)

// mockDocker is a tiny stand-in for dockerd: ping, a slow streaming logs
// endpoint, and an exec start that upgrades and echoes stdin after the
// client half-closes, like a `cat` process would.
func mockDocker(t *testing.T, path string, owner *atomic.Value) (stop func()) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/v1.41/_ping", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.41")
		w.Header().Set("X-Seen-Method", r.Method)
		io.WriteString(w, "OK")
	})
	// Inspect answers for isolation: c1 belongs to the tenant whose id the
	// test stores in owner, c2 to somebody else; e1 is an exec in c1.
	mux.HandleFunc("/containers/{ref}/json", func(w http.ResponseWriter, r *http.Request) {
		id, o := "", ""
		switch r.PathValue("ref") {
		case "c1", "c1full":
			id, o = "c1full", owner.Load().(string)
		case "c2":
			id, o = "c2full", "t-other"
		default:
			w.WriteHeader(404)
			io.WriteString(w, `{"message":"No such container"}`)
			return
		}
		fmt.Fprintf(w, `{"Id":%q,"Config":{"Labels":{%q:%q}}}`, id, isolation.OwnerLabel, o)
	})
	mux.HandleFunc("/exec/e1/json", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"ID":"e1","ContainerID":"c1full"}`)
	})
	mux.HandleFunc("/containers/c1full/logs", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		for i := range 3 {
			fmt.Fprintf(w, "line %d\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(50 * time.Millisecond)
		}
	})
	mux.HandleFunc("/exec/e1/start", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "tcp" {
			http.Error(w, "want upgrade", 400)
			return
		}
		_, _ = io.ReadAll(r.Body) // the start config, before the stream begins
		c, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		rw.WriteString("HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
		rw.Flush()
		in, _ := io.ReadAll(rw) // until the client's half-close arrives
		c.Write(append([]byte("got:"), in...))
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	return func() { srv.Close() }
}

type testBroker struct {
	dir, admin, socketDir string
	client                sockguardv1.SockguardServiceClient
	cancel                context.CancelFunc
	done                  chan error
}

func startBroker(t *testing.T, dir, upstream string, opts ...func(*Config)) *testBroker {
	t.Helper()
	tb := &testBroker{dir: dir, admin: filepath.Join(dir, "admin.sock"), socketDir: filepath.Join(dir, "s"), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	tb.cancel = cancel
	cfg := Config{
		Upstream: upstream, AdminSocket: tb.admin, AdminGroup: -1,
		SocketDir: tb.socketDir, StateDir: filepath.Join(dir, "state"),
		ShutdownTimeout: 2 * time.Second, Version: "test",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		// No mounts from unit tests: pin mode is tested in pin_test.go and e2e.
		BindPins: PinRootOwned,
	}
	for _, o := range opts {
		o(&cfg)
	}
	go func() { tb.done <- Run(ctx, cfg) }()
	cc, err := grpc.NewClient("unix://"+tb.admin, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	// The admin socket accepts connections before its mode is set; the
	// broker has started when an RPC is answered.
	for {
		if _, err := sockguardv1.NewSockguardServiceClient(cc).GetBrokerInfo(context.Background(), &sockguardv1.GetBrokerInfoRequest{}); err == nil {
			break
		}
		select {
		case err := <-tb.done:
			t.Fatalf("broker exited: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	tb.client = sockguardv1.NewSockguardServiceClient(cc)
	return tb
}

func (tb *testBroker) stop(t *testing.T) {
	t.Helper()
	tb.cancel()
	if err := <-tb.done; err != nil {
		t.Fatalf("broker Run: %v", err)
	}
}

func unixClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}}
}

func dockerMessage(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type = %q, want application/json", ct)
	}
	var m struct{ Message string }
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m.Message
}

// testDir is a short directory (unix socket paths must stay under 108
// bytes) removed when the test ends, with the path of a mock upstream.
func testDir(t *testing.T) (dir, upPath string) {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "sgt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir, filepath.Join(dir, "docker.sock")
}

func TestBrokerProxy(t *testing.T) {
	dir, upPath := testDir(t)
	var owner atomic.Value
	owner.Store("")
	stopMock := mockDocker(t, upPath, &owner)
	tb := startBroker(t, dir, "unix://"+upPath)
	ctx := context.Background()

	if fi, err := os.Stat(tb.admin); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin socket mode: %v %v", fi.Mode(), err)
	}
	created, err := tb.client.CreateSocket(ctx, &sockguardv1.CreateSocketRequest{Socket: &sockguardv1.Socket{Name: "r1", Preset: "github-actions-runner"}})
	if err != nil {
		t.Fatal(err)
	}
	sock := created.GetSocket().GetPath()
	owner.Store(created.GetSocket().GetTenantId())
	if want := filepath.Join(tb.socketDir, "r1", "sockguard.sock"); sock != want {
		t.Fatalf("socket path %q, want %q", sock, want)
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o660 {
		t.Fatalf("tenant socket mode: %v %v", fi.Mode(), err)
	}
	hc := unixClient(sock)

	t.Run("allowed ping is forwarded", func(t *testing.T) {
		resp, err := hc.Get("http://docker/v1.41/_ping")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "OK" || resp.Header.Get("Api-Version") != "1.41" {
			t.Fatalf("ping: %d %q %v", resp.StatusCode, body, resp.Header)
		}
	})

	t.Run("the canonical method is forwarded", func(t *testing.T) {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "get /v1.41/_ping HTTP/1.1\r\nHost: docker\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("X-Seen-Method") != "GET" {
			t.Fatalf("status %d, upstream saw method %q", resp.StatusCode, resp.Header.Get("X-Seen-Method"))
		}
	})

	t.Run("build is denied like dockerd", func(t *testing.T) {
		resp, err := hc.Post("http://docker/v1.41/build", "application/x-tar", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("status %d, want 403", resp.StatusCode)
		}
		if msg := dockerMessage(t, resp); !strings.HasPrefix(msg, "sockguard: denied by policy: ") {
			t.Fatalf("message %q", msg)
		}
	})

	t.Run("streaming body arrives in pieces", func(t *testing.T) {
		resp, err := hc.Get("http://docker/containers/c1/logs?follow=1")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		line, err := br.ReadString('\n')
		if err != nil || line != "line 0\n" {
			t.Fatalf("first line %q %v", line, err)
		}
		rest, _ := io.ReadAll(br)
		if string(rest) != "line 1\nline 2\n" {
			t.Fatalf("rest %q", rest)
		}
	})

	t.Run("another tenant's container looks missing", func(t *testing.T) {
		resp, err := hc.Get("http://docker/v1.41/containers/c2/logs")
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("status %d, want 404", resp.StatusCode)
		}
		if msg := dockerMessage(t, resp); msg != "No such container: c2" {
			t.Fatalf("message %q", msg)
		}
	})

	t.Run("hijacked exec keeps output after stdin half-close", func(t *testing.T) {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		body := `{"Detach":false,"Tty":false}`
		fmt.Fprintf(c, "POST /exec/e1/start HTTP/1.1\r\nHost: docker\r\nContent-Type: application/json\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close() // a 101 has no body: the stream is read from br
		if resp.StatusCode != 101 {
			t.Fatalf("status %d, want 101", resp.StatusCode)
		}
		io.WriteString(c, "hello")
		must(t, c.(*net.UnixConn).CloseWrite())
		out, err := io.ReadAll(br)
		if err != nil || string(out) != "got:hello" {
			t.Fatalf("output %q %v", out, err)
		}
	})

	t.Run("upstream down is a 502 and recovers", func(t *testing.T) {
		stopMock()
		os.Remove(upPath)
		resp, err := hc.Get("http://docker/v1.41/_ping")
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("status %d, want 502", resp.StatusCode)
		}
		if msg := dockerMessage(t, resp); !strings.Contains(msg, "cannot reach the Docker daemon") {
			t.Fatalf("message %q", msg)
		}
		stopMock = mockDocker(t, upPath, &owner)
		resp, err = hc.Get("http://docker/v1.41/_ping")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("after recovery: status %d", resp.StatusCode)
		}
	})

	t.Run("bad names and presets create nothing", func(t *testing.T) {
		for _, s := range []*sockguardv1.Socket{
			{Name: "../x", Preset: "read-only"},
			{Name: "A B", Preset: "read-only"},
			{Name: "ok", Preset: "no-such-preset"},
			{Name: "r1", Preset: "read-only"},
		} {
			_, err := tb.client.CreateSocket(ctx, &sockguardv1.CreateSocketRequest{Socket: s})
			code := status.Code(err)
			if code != codes.InvalidArgument && code != codes.AlreadyExists {
				t.Fatalf("create %q/%q: %v", s.Name, s.Preset, err)
			}
		}
		var names []string
		ents, _ := os.ReadDir(tb.socketDir)
		for _, e := range ents {
			if e.Name() != store.SocketMarkerName {
				names = append(names, e.Name())
			}
		}
		if len(names) != 1 {
			t.Fatalf("socket dir has %v, want only r1 (and the state marker)", names)
		}
	})

	t.Run("symlinked tenant dir is refused", func(t *testing.T) {
		target := t.TempDir()
		if err := os.Symlink(target, filepath.Join(tb.socketDir, "evil")); err != nil {
			t.Fatal(err)
		}
		_, err := tb.client.CreateSocket(ctx, &sockguardv1.CreateSocketRequest{Socket: &sockguardv1.Socket{Name: "evil", Preset: "read-only"}})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "symlink") {
			t.Fatalf("create through symlink: %v", err)
		}
		if ents, _ := os.ReadDir(target); len(ents) != 0 {
			t.Fatalf("something was created through the symlink: %v", ents)
		}
	})

	// The denial is recorded off the request path; wait for the writer.
	var denials []*sockguardv1.Denial
	for range 100 {
		resp, err := tb.client.ListDenials(ctx, &sockguardv1.ListDenialsRequest{Socket: "r1"})
		if err != nil {
			t.Fatal(err)
		}
		if denials = resp.GetDenials(); len(denials) >= 2 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(denials) != 2 || denials[1].GetPath() != "/build" || denials[1].GetMethod() != "POST" ||
		denials[0].GetReasonCode() != sockguardv1.DenialReason_DENIAL_REASON_FOREIGN_OBJECT {
		t.Fatalf("denials: %v", denials)
	}

	t.Run("second broker on the same paths refuses to start", func(t *testing.T) {
		err := Run(ctx, Config{
			Upstream: "unix://" + upPath, AdminSocket: tb.admin, AdminGroup: -1,
			SocketDir: tb.socketDir, StateDir: filepath.Join(dir, "state"),
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		if err == nil || !strings.Contains(err.Error(), "another broker") {
			t.Fatalf("second broker: %v", err)
		}
		// The first broker still serves.
		if _, err := tb.client.GetSocket(ctx, &sockguardv1.GetSocketRequest{Name: "r1"}); err != nil {
			t.Fatal(err)
		}
	})

	tb.stop(t)

	// Restart on the same state: the socket and the denial come back.
	tb = startBroker(t, dir, "unix://"+upPath)
	defer tb.stop(t)
	got, err := tb.client.GetSocket(ctx, &sockguardv1.GetSocketRequest{Name: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetSocket().GetTenantId() != created.GetSocket().GetTenantId() || got.GetSocket().GetState() != sockguardv1.SocketState_SOCKET_STATE_SERVING {
		t.Fatalf("after restart: %v", got.GetSocket())
	}
	resp, err := unixClient(sock).Get("http://docker/v1.41/_ping")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("ping after restart: %d", resp.StatusCode)
	}
	list, err := tb.client.ListDenials(ctx, &sockguardv1.ListDenialsRequest{})
	if err != nil || len(list.GetDenials()) != 2 {
		t.Fatalf("denials after restart: %v %v", list, err)
	}
	stopMock()
}

func TestMetricsAndAccessLog(t *testing.T) {
	dir, upPath := testDir(t)
	var owner atomic.Value
	owner.Store("")
	defer mockDocker(t, upPath, &owner)()
	metricsSock := filepath.Join(dir, "metrics.sock")
	var access strings.Builder
	var mu sync.Mutex
	tb := startBroker(t, dir, "unix://"+upPath, func(c *Config) {
		c.MetricsListen = "unix://" + metricsSock
		c.AccessLog = slog.New(slog.NewJSONHandler(writerFunc(func(b []byte) (int, error) {
			mu.Lock()
			defer mu.Unlock()
			return access.Write(b)
		}), nil))
	})
	defer tb.stop(t)
	ctx := context.Background()
	created, err := tb.client.CreateSocket(ctx, &sockguardv1.CreateSocketRequest{Socket: &sockguardv1.Socket{Name: "m1", Preset: "github-actions-runner"}})
	if err != nil {
		t.Fatal(err)
	}
	hc := unixClient(created.GetSocket().GetPath())
	for _, target := range []string{"/v1.41/_ping", "/v1.41/_ping", "/v1.41/secrets"} {
		resp, err := hc.Get("http://docker" + target)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	want := []string{
		`sockguard_requests_total{decision="allow",socket="m1"} 2`,
		`sockguard_requests_total{decision="deny",socket="m1"} 1`,
		`sockguard_denials_total{reason="rule-denied",socket="m1"} 1`,
		`sockguard_request_duration_seconds_count{decision="allow",socket="m1"} 2`,
		`sockguard_upstream_up 1`,
		`sockguard_tenants{state="serving"} 1`,
		`sockguard_active_connections{socket="m1"}`,
		`sockguard_hijacked_streams{socket="m1"} 0`,
		`sockguard_deny_log_records_dropped_total 0`,
		`sockguard_build_info{goversion="go`,
		`",version="test"} 1`,
	}
	var missing []string
	for range 50 { // latency is observed after the response went out
		resp, err := unixClient(metricsSock).Get("http://x/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		missing = missing[:0]
		for _, w := range want {
			if !strings.Contains(string(body), w) {
				missing = append(missing, w)
			}
		}
		if len(missing) == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(missing) > 0 {
		t.Errorf("metrics lack %q", missing)
	}
	// The access record is written after the response went out: wait.
	var log string
	for range 100 {
		mu.Lock()
		log = access.String()
		mu.Unlock()
		if strings.Count(log, `"msg":"request"`) >= 3 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := strings.Count(log, `"msg":"request"`); n != 3 {
		t.Fatalf("access log has %d records, want 3:\n%s", n, log)
	}
	if !strings.Contains(log, `"decision":"deny"`) || !strings.Contains(log, `"status":403`) || !strings.Contains(log, `"path":"/secrets"`) {
		t.Fatalf("access log lacks the denial:\n%s", log)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }
