package broker

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
)

// fakeNotifySocket is systemd's end of sd_notify: a unixgram socket whose
// datagrams arrive on the returned channel.
func fakeNotifySocket(t *testing.T, name string) <-chan string {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ch := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				close(ch)
				return
			}
			ch <- string(buf[:n])
		}
	}()
	return ch
}

func nextNotify(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no sd_notify message")
	}
	return ""
}

func TestNotifier(t *testing.T) {
	dir, _ := testDir(t)
	tests := []struct {
		name, socket string
	}{
		{"path", filepath.Join(dir, "notify")},
		{"abstract", "@sockguard-test-" + filepath.Base(dir)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch := fakeNotifySocket(t, tt.socket)
			n := NewNotifier(tt.socket)
			if err := n.Notify("READY=1", "STATUS=ok"); err != nil {
				t.Fatal(err)
			}
			if got := nextNotify(t, ch); got != "READY=1\nSTATUS=ok\n" {
				t.Fatalf("got %q", got)
			}
		})
	}
	for _, s := range []string{"", "vsock:2:1234", "relative/path"} {
		if NewNotifier(s) != nil {
			t.Errorf("NewNotifier(%q) is not nil", s)
		}
	}
	var none *notifier
	if err := none.Notify("READY=1"); err != nil {
		t.Fatalf("nil notifier: %v", err)
	}
	if err := NewNotifier(filepath.Join(dir, "nobody")).Notify("READY=1"); err == nil {
		t.Fatal("notify to a missing socket succeeded")
	}
}

// TestReadyAfterServing: READY=1 arrives only once the admin socket and
// every stored tenant socket answer; a reload says RELOADING=1 (with
// MONOTONIC_USEC) then READY=1; shutdown says STOPPING=1.
func TestReadyAfterServing(t *testing.T) {
	dir, upPath := testDir(t)
	var owner atomic.Value
	owner.Store("")
	defer mockDocker(t, upPath, &owner)()
	tb := startBroker(t, dir, "unix://"+upPath)
	var paths []string
	for _, name := range []string{"r1", "r2", "r3"} {
		s, err := tb.client.CreateSocket(context.Background(), &sockguardv1.CreateSocketRequest{Socket: &sockguardv1.Socket{Name: name, Preset: "read-only"}})
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, s.GetSocket().GetPath())
	}
	tb.stop(t)

	notify := fakeNotifySocket(t, filepath.Join(dir, "notify"))
	reload := make(chan os.Signal, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{
			Upstream: "unix://" + upPath, AdminSocket: tb.admin, AdminGroup: -1,
			SocketDir: tb.socketDir, StateDir: filepath.Join(dir, "state"),
			ShutdownTimeout: 2 * time.Second, Version: "test",
			Logger: slog.New(slog.DiscardHandler), BindPins: PinRootOwned,
			Notify: NewNotifier(filepath.Join(dir, "notify")), Reload: reload,
		})
	}()
	msg := nextNotify(t, notify)
	if !strings.HasPrefix(msg, "READY=1\nSTATUS=serving 3 sockets") {
		t.Fatalf("first message %q", msg)
	}
	// Ready means answered: no retry, no wait.
	for _, p := range paths {
		resp, err := unixClient(p).Get("http://docker/v1.41/_ping")
		if err != nil {
			t.Fatalf("%s after READY=1: %v", p, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s after READY=1: %s", p, resp.Status)
		}
	}
	cc, err := grpc.NewClient("unix://"+tb.admin, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if _, err := sockguardv1.NewSockguardServiceClient(cc).GetBrokerInfo(context.Background(), &sockguardv1.GetBrokerInfoRequest{}); err != nil {
		t.Fatalf("admin after READY=1: %v", err)
	}

	reload <- syscall.SIGHUP
	msg = nextNotify(t, notify)
	if !strings.HasPrefix(msg, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Fatalf("reload message %q", msg)
	}
	if msg = nextNotify(t, notify); !strings.HasPrefix(msg, "READY=1\n") {
		t.Fatalf("after reload %q", msg)
	}
	cancel()
	if msg = nextNotify(t, notify); !strings.HasPrefix(msg, "STOPPING=1\n") {
		t.Fatalf("at shutdown %q", msg)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// syncBuffer is a log destination tests read while the broker writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitLog waits until the log holds want n times.
func waitLog(t *testing.T, log *syncBuffer, want string, n int) {
	t.Helper()
	for range 500 {
		if strings.Count(log.String(), want) >= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("log lacks %d x %q:\n%s", n, want, log.String())
}

const presetV1 = "name: mine\ndescription: ping only\nrules:\n  - {method: [GET, HEAD], path: /_ping}\n"
const presetV2 = "name: mine\ndescription: ping and version\nrules:\n  - {method: [GET, HEAD], path: /_ping}\n  - {method: GET, path: /version}\n"

// TestReloadPresets drives SIGHUP reloads through Config.Reload: a changed
// preset reaches the socket using it, a bad file or a removed preset in
// use changes nothing, a socket failed for a missing preset starts once
// the file is back, and the access log is reopened at its path.
func TestReloadPresets(t *testing.T) {
	dir, upPath := testDir(t)
	var owner atomic.Value
	owner.Store("")
	defer mockDocker(t, upPath, &owner)()
	presets := filepath.Join(dir, "presets")
	if err := os.Mkdir(presets, 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(name, src string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(presets, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("mine.yaml", presetV1)
	write("other.yaml", strings.Replace(presetV1, "name: mine", "name: other", 1))
	accessPath := filepath.Join(dir, "access.log")
	af, err := OpenLogFile(accessPath)
	if err != nil {
		t.Fatal(err)
	}
	defer af.Close()
	var log syncBuffer
	reload := make(chan os.Signal, 1)
	hup := func() { reload <- syscall.SIGHUP }
	tb := startBroker(t, dir, "unix://"+upPath, func(c *Config) {
		c.PresetDir = presets
		c.Reload = reload
		c.Logger = slog.New(slog.NewTextHandler(&log, nil))
		c.AccessLog = slog.New(slog.NewJSONHandler(af, nil))
		c.AccessLogFile = af
	})
	defer func() { tb.stop(t) }()
	ctx := context.Background()
	s, err := tb.client.CreateSocket(ctx, &sockguardv1.CreateSocketRequest{Socket: &sockguardv1.Socket{Name: "t1", Preset: "mine"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tb.client.CreateSocket(ctx, &sockguardv1.CreateSocketRequest{Socket: &sockguardv1.Socket{Name: "t2", Preset: "other"}}); err != nil {
		t.Fatal(err)
	}
	hc := unixClient(s.GetSocket().GetPath())
	version := func() int {
		t.Helper()
		resp, err := hc.Get("http://docker/v1.41/version")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode // 403: refused; 404: forwarded to the mock
	}
	if got := version(); got != http.StatusForbidden {
		t.Fatalf("before reload: %d", got)
	}

	// A broken file: nothing changes.
	write("mine.yaml", presetV2)
	write("broken.yaml", "name: broken\nrules: [\n")
	hup()
	waitLog(t, &log, "msg=presets_reload_failed", 1)
	if got := version(); got != http.StatusForbidden {
		t.Fatalf("after a failed reload: %d", got)
	}
	os.Remove(filepath.Join(presets, "broken.yaml"))

	// The access log is rotated away before the next reload.
	if err := os.Rename(accessPath, accessPath+".1"); err != nil {
		t.Fatal(err)
	}
	hup()
	waitLog(t, &log, "msg=presets_reloaded", 1)
	if !strings.Contains(log.String(), "changed=[mine]") || !strings.Contains(log.String(), "sockets_updated=[t1]") {
		t.Fatalf("reload log:\n%s", log.String())
	}
	if got := version(); got != http.StatusNotFound {
		t.Fatalf("after reload: %d, want the request forwarded", got)
	}
	waitFile(t, accessPath, `"path":"/version"`)
	if old, _ := os.ReadFile(accessPath + ".1"); strings.Count(string(old), `"msg":"request"`) != 2 {
		t.Fatalf("rotated access log:\n%s", old)
	}

	// Removing a preset a socket uses is refused.
	os.Remove(filepath.Join(presets, "other.yaml"))
	hup()
	waitLog(t, &log, "msg=presets_reload_failed", 2)
	if !strings.Contains(log.String(), "other (sockets t2)") {
		t.Fatalf("reload log:\n%s", log.String())
	}
	if _, err := tb.client.GetPreset(ctx, &sockguardv1.GetPresetRequest{Name: "other"}); err != nil {
		t.Fatalf("the refused reload dropped preset other: %v", err)
	}

	// Restart without other.yaml: t2 fails; putting the file back and
	// reloading starts it.
	tb.stop(t)
	tb = startBroker(t, dir, "unix://"+upPath, func(c *Config) {
		c.PresetDir = presets
		c.Reload = reload
		c.Logger = slog.New(slog.NewTextHandler(&log, nil))
	})
	if got, err := tb.client.GetSocket(ctx, &sockguardv1.GetSocketRequest{Name: "t2"}); err != nil || got.GetSocket().GetState() != sockguardv1.SocketState_SOCKET_STATE_FAILED {
		t.Fatalf("t2 without its preset: %v %v", got, err)
	}
	write("other.yaml", strings.Replace(presetV1, "name: mine", "name: other", 1))
	hup()
	waitLog(t, &log, "sockets_started=[t2]", 1)
	if got, err := tb.client.GetSocket(ctx, &sockguardv1.GetSocketRequest{Name: "t2"}); err != nil || got.GetSocket().GetState() != sockguardv1.SocketState_SOCKET_STATE_SERVING {
		t.Fatalf("t2 after reload: %v %v", got, err)
	}
}

func waitFile(t *testing.T, path, want string) {
	t.Helper()
	for range 200 {
		if b, _ := os.ReadFile(path); strings.Contains(string(b), want) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	b, _ := os.ReadFile(path)
	t.Fatalf("%s lacks %q:\n%s", path, want, b)
}

func TestLogFileReopen(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.log")
	f, err := OpenLogFile(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, err = io.WriteString(f, "one\n")
	must(t, err)
	must(t, os.Rename(p, p+".1"))
	_, err = io.WriteString(f, "two\n") // still the old file: logrotate's window
	must(t, err)
	if err := f.Reopen(); err != nil {
		t.Fatal(err)
	}
	io.WriteString(f, "three\n")
	old, _ := os.ReadFile(p + ".1")
	cur, _ := os.ReadFile(p)
	if string(old) != "one\ntwo\n" || string(cur) != "three\n" {
		t.Fatalf("old %q new %q", old, cur)
	}
	if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	// A path that cannot be reopened keeps the old file.
	must(t, os.Remove(p))
	must(t, os.Mkdir(p, 0o700))
	if err := f.Reopen(); err == nil {
		t.Fatal("reopen onto a directory succeeded")
	}
	if _, err := io.WriteString(f, "four\n"); err != nil {
		t.Fatalf("write after a failed reopen: %v", err)
	}
}

// TestUpstreamMonitor: a thousand failed dials log one upstream_down, the
// first success one upstream_up.
func TestUpstreamMonitor(t *testing.T) {
	var log syncBuffer
	m := newUpstreamMonitor(slog.New(slog.NewTextHandler(&log, nil)))
	if m.up() {
		t.Fatal("up before any attempt")
	}
	m.observe(nil)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 125 {
				m.observe(syscall.ECONNREFUSED)
			}
		}()
	}
	wg.Wait()
	if m.up() {
		t.Fatal("up after failures")
	}
	for range 100 {
		m.observe(nil)
	}
	if !m.up() {
		t.Fatal("down after a success")
	}
	out := log.String()
	if strings.Count(out, "msg=upstream_down") != 1 || strings.Count(out, "msg=upstream_up") != 1 || strings.Count(out, "\n") != 2 {
		t.Fatalf("log:\n%s", out)
	}
	if !strings.Contains(out, "connection refused") || !strings.Contains(out, "down_for=") {
		t.Fatalf("log lacks the details:\n%s", out)
	}
}

// TestHealthService: the health socket answers anyone (mode 0666) for the
// broker, the upstream and each tenant, follows the upstream going away
// and coming back, and answers NOT_FOUND for unknown names.
func TestHealthService(t *testing.T) {
	dir, upPath := testDir(t)
	var owner atomic.Value
	owner.Store("")
	stopDocker := mockDocker(t, upPath, &owner)
	defer func() { stopDocker() }()
	healthSock := filepath.Join(dir, "health.sock")
	var log syncBuffer
	tb := startBroker(t, dir, "unix://"+upPath, func(c *Config) {
		c.HealthSocket = healthSock
		c.pingInterval = 100 * time.Millisecond
		c.Logger = slog.New(slog.NewTextHandler(&log, nil))
	})
	defer tb.stop(t)
	if _, err := tb.client.CreateSocket(context.Background(), &sockguardv1.CreateSocketRequest{Socket: &sockguardv1.Socket{Name: "h1", Preset: "read-only"}}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(healthSock); err != nil || fi.Mode().Perm() != 0o666 {
		t.Fatalf("health socket: %v %v", fi, err)
	}
	cc, err := grpc.NewClient("unix://"+healthSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	check := func(service string) (healthpb.HealthCheckResponse_ServingStatus, codes.Code) {
		r, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: service})
		return r.GetStatus(), status.Code(err)
	}
	waitStatus := func(service string, want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		for range 300 {
			if got, _ := check(service); got == want {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		got, code := check(service)
		t.Fatalf("%q: %v %v, want %v", service, got, code, want)
	}
	waitStatus("", healthpb.HealthCheckResponse_SERVING)
	waitStatus(HealthUpstream, healthpb.HealthCheckResponse_SERVING)
	waitStatus(HealthTenantPrefix+"h1", healthpb.HealthCheckResponse_SERVING)
	for _, s := range []string{HealthTenantPrefix + "nope", "sockguard.v1.SockguardService", "x"} {
		if _, code := check(s); code != codes.NotFound {
			t.Errorf("%q: %v, want NotFound", s, code)
		}
	}
	// The admin API is not served on the health socket.
	if _, err := sockguardv1.NewSockguardServiceClient(cc).ListSockets(context.Background(), &sockguardv1.ListSocketsRequest{}); status.Code(err) != codes.Unimplemented {
		t.Fatalf("admin API on the health socket: %v", err)
	}

	// dockerd goes away (its socket with it), then comes back.
	stopDocker()
	os.Remove(upPath)
	waitStatus(HealthUpstream, healthpb.HealthCheckResponse_NOT_SERVING)
	for range 20 { // requests meanwhile add no log lines
		if resp, err := unixClient(filepath.Join(tb.socketDir, "h1", "sockguard.sock")).Get("http://docker/v1.41/_ping"); err == nil {
			resp.Body.Close()
		}
	}
	stopDocker = mockDocker(t, upPath, &owner)
	waitStatus(HealthUpstream, healthpb.HealthCheckResponse_SERVING)
	out := log.String()
	if strings.Count(out, "msg=upstream_down") != 1 || strings.Count(out, "msg=upstream_up") != 1 {
		t.Fatalf("upstream log lines:\n%s", out)
	}
}

func TestAdminCallLevel(t *testing.T) {
	tests := []struct {
		service, method string
		code            codes.Code
		want            slog.Level
	}{
		{"sockguard.v1.SockguardService", "GetBrokerInfo", codes.OK, slog.LevelDebug},
		{"sockguard.v1.SockguardService", "ListSockets", codes.OK, slog.LevelDebug},
		{"sockguard.v1.SockguardService", "ListDenials", codes.OK, slog.LevelDebug},
		{"sockguard.v1.SockguardService", "WatchDenials", codes.OK, slog.LevelDebug},
		{"sockguard.v1.SockguardService", "CheckRequest", codes.OK, slog.LevelDebug},
		{"sockguard.v1.SockguardService", "CreateSocket", codes.OK, slog.LevelInfo},
		{"sockguard.v1.SockguardService", "UpdateSocket", codes.OK, slog.LevelInfo},
		{"sockguard.v1.SockguardService", "DeleteSocket", codes.OK, slog.LevelInfo},
		{"sockguard.v1.SockguardService", "BackupState", codes.OK, slog.LevelInfo},
		{"sockguard.v1.SockguardService", "SomeNewMutation", codes.OK, slog.LevelInfo},
		{"sockguard.v1.SockguardService", "GetSocket", codes.NotFound, slog.LevelWarn},
		{"sockguard.v1.SockguardService", "CreateSocket", codes.PermissionDenied, slog.LevelWarn},
		{"grpc.health.v1.Health", "Check", codes.OK, slog.LevelDebug},
		{"grpc.reflection.v1.ServerReflection", "ServerReflectionInfo", codes.OK, slog.LevelDebug},
	}
	for _, tt := range tests {
		t.Run(tt.method+"/"+tt.code.String(), func(t *testing.T) {
			fields := []any{"grpc.service", tt.service, "grpc.method", tt.method, "grpc.code", tt.code.String()}
			if got := adminCallLevel(adminCodeLevel(tt.code), fields); got != tt.want {
				t.Fatalf("level %v, want %v", got, tt.want)
			}
		})
	}
	if got := adminCallLevel(logging.LevelInfo, []any{"grpc.method"}); got != slog.LevelInfo {
		t.Fatalf("odd fields: %v", got)
	}
}

func TestStreamKind(t *testing.T) {
	tests := []struct {
		method, path, query, want string
	}{
		{"GET", "/events", "", "events"},
		{"GET", "/containers/c1/logs", "follow=1&stdout=1", "logs"},
		{"GET", "/containers/c1/logs", "follow=true", "logs"},
		{"GET", "/containers/c1/logs", "follow=0", ""},
		{"GET", "/containers/c1/logs", "follow=", ""},
		{"GET", "/containers/c1/logs", "stdout=1", ""},
		{"POST", "/containers/c1/wait", "", "wait"},
		{"POST", "/containers/c1/attach", "stream=1", "attach"},
		// dockerd reads "c1/attach" as the reference ({name:.*}/ws).
		{"GET", "/containers/c1/attach/ws", "", ""},
		{"POST", "/exec/e1/start", "", "exec"},
		{"GET", "/containers/c1/stats", "", "stats"},
		{"GET", "/containers/c1/stats", "stream=false", ""},
		{"GET", "/containers/c1/stats", "one-shot=1", ""},
		{"GET", "/containers/c1/json", "", ""},
		{"GET", "/containers/json", "", ""},
		{"POST", "/containers/create", "", ""},
		{"GET", "/_ping", "", ""},
		{"GET", "/exec/e1/json", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+tt.path+"?"+tt.query, func(t *testing.T) {
			req := mustReq(t, tt.method, tt.path+"?"+tt.query)
			if got := streamKind(req); got != tt.want {
				t.Fatalf("streamKind = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCheckPresetDir(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string)
		shared  bool
		wantErr string
	}{
		{name: "private", setup: func(t *testing.T, dir string) {}},
		{name: "world-readable", setup: func(t *testing.T, dir string) {
			must(t, os.Chmod(dir, 0o755))
			must(t, os.Chmod(filepath.Join(dir, "a.yaml"), 0o644))
		}},
		{name: "group-writable dir", setup: func(t *testing.T, dir string) { must(t, os.Chmod(dir, 0o770)) }, wantErr: "writable by group or others"},
		{name: "world-writable file", setup: func(t *testing.T, dir string) { must(t, os.Chmod(filepath.Join(dir, "a.yaml"), 0o666)) }, wantErr: "a.yaml is writable"},
		{name: "world-writable file, allowed", shared: true, setup: func(t *testing.T, dir string) { must(t, os.Chmod(filepath.Join(dir, "a.yaml"), 0o666)) }},
		{name: "file of another uid", setup: func(t *testing.T, dir string) {
			if os.Geteuid() != 0 {
				t.Skip("needs root to chown")
			}
			must(t, os.Chown(filepath.Join(dir, "a.yaml"), 65534, 65534))
		}, wantErr: "owned by uid 65534"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			must(t, os.Chmod(dir, 0o700))
			if err := os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(presetV1), 0o600); err != nil {
				t.Fatal(err)
			}
			tt.setup(t, dir)
			err := checkPresetDir(dir, tt.shared)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "--preset-dir") {
				t.Fatalf("err %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestLogFileRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "access.log")
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenLogFile(p); err == nil {
		t.Fatal("opened a log path that is a symlink")
	}
	os.Remove(p)
	f, err := OpenLogFile(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	must(t, os.Rename(p, p+".1"))
	must(t, os.Symlink(target, p)) // swapped in after the rotation
	if err := f.Reopen(); err == nil {
		t.Fatal("reopened through a symlink")
	}
	io.WriteString(f, "x\n")
	if b, _ := os.ReadFile(target); len(b) != 0 {
		t.Fatalf("the symlink target got %q", b)
	}
}

func TestClipNames(t *testing.T) {
	var many []string
	for i := range 40 {
		many = append(many, "s"+strconv.Itoa(i))
	}
	tests := []struct {
		in   []string
		want string
	}{
		{nil, "[]"},
		{[]string{"a", "b"}, "[a b]"},
		{many, "[" + strings.Join(many[:32], " ") + " ...] (40 in all)"},
	}
	for _, tt := range tests {
		if got := clipNames(tt.in); got != tt.want {
			t.Errorf("clipNames(%d names) = %q, want %q", len(tt.in), got, tt.want)
		}
	}
}
