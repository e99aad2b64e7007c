// Package e2e drives the real broker and sgctl binaries against a real
// dockerd with the real docker CLI.
//
// The package skips itself unless SOCKGUARD_E2E_DOCKER_HOST names the Docker
// engine to use as upstream (`make test` starts a private one with
// scripts/testenv.sh and sets it). SOCKGUARD_BIN_DIR names a directory holding
// broker and sgctl; when it is empty TestMain builds them into a temp dir.
// SOCKGUARD_E2E_DOCKER_CLI overrides the docker client binary.
//
// Every broker runs on its own short /tmp directory (unix socket paths must
// stay below 108 bytes). Objects the tests create in dockerd are named with
// a per-run prefix and removed through the upstream socket directly, so a
// broken broker cannot leak them.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testImage is imported by scripts/testenv.sh: a static busybox, no network.
const testImage = "busybox:local"

// suite is set once by TestMain and only read afterwards.
var suite struct {
	upstream  string // unix://... of the dockerd the brokers forward to
	broker    string // path of the broker binary
	sgctl     string // path of the sgctl binary
	dockerCLI string // path of the docker client
	runID     string // prefix of every Docker object the tests create
	// dockerConfig is an empty DOCKER_CONFIG for every docker command, so
	// no user configuration (contexts, credential helpers) interferes.
	dockerConfig string
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	suite.upstream = os.Getenv("SOCKGUARD_E2E_DOCKER_HOST")
	if suite.upstream == "" {
		fmt.Println("skipping e2e tests: SOCKGUARD_E2E_DOCKER_HOST is not set (make test starts a private dockerd and sets it)")
		return 0
	}
	if !strings.HasPrefix(suite.upstream, "unix://") {
		fmt.Fprintf(os.Stderr, "e2e: SOCKGUARD_E2E_DOCKER_HOST=%q: only unix:// hosts are supported\n", suite.upstream)
		return 2
	}
	cli := os.Getenv("SOCKGUARD_E2E_DOCKER_CLI")
	if cli == "" {
		cli = "docker"
	}
	var err error
	if suite.dockerCLI, err = exec.LookPath(cli); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: docker CLI: %v\n", err)
		return 2
	}
	suite.runID = fmt.Sprintf("sge2e-%d", os.Getpid())
	if suite.dockerConfig, err = os.MkdirTemp("", "sg-e2e-dockercfg"); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 2
	}
	defer os.RemoveAll(suite.dockerConfig)

	binDir := os.Getenv("SOCKGUARD_BIN_DIR")
	if binDir == "" {
		tmp, err := os.MkdirTemp("", "sg-e2e-bin")
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
			return 2
		}
		defer os.RemoveAll(tmp)
		// As `make e2e-bin`: only the daemon with -race (a race binary
		// sleeps 1s at exit, which adds up over many sgctl runs).
		for _, b := range []struct {
			name  string
			flags []string
		}{{"broker", []string{"-race"}}, {"sgctl", nil}} {
			name := b.name
			args := append([]string{"build"}, b.flags...)
			args = append(args, "-o", filepath.Join(tmp, name), "github.com/sockguard/sockguard/cmd/"+name)
			cmd := exec.Command("go", args...)
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			if err := cmd.Run(); err != nil {
				fmt.Fprintf(os.Stderr, "e2e: building %s: %v\n", name, err)
				return 2
			}
		}
		binDir = tmp
	}
	suite.broker = filepath.Join(binDir, "broker")
	suite.sgctl = filepath.Join(binDir, "sgctl")
	for _, p := range []string{suite.broker, suite.sgctl} {
		if _, err := os.Stat(p); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: %v (set SOCKGUARD_BIN_DIR or leave it empty to build)\n", err)
			return 2
		}
	}

	// Fail fast, with one clear line, when the upstream engine is not there.
	if r := upstreamDocker("version", "--format", "{{.Server.Version}}"); r.Code != 0 {
		fmt.Fprintf(os.Stderr, "e2e: upstream %s does not answer: %s\n", suite.upstream, r.Stderr)
		return 2
	}
	if r := upstreamDocker("image", "inspect", "--format", "{{.Id}}", testImage); r.Code != 0 {
		fmt.Fprintf(os.Stderr, "e2e: upstream has no %s (scripts/testenv.sh image %s): %s\n", testImage, suite.upstream, r.Stderr)
		return 2
	}
	return m.Run()
}

// Result is what a finished command printed and how it exited.
type Result struct {
	Args   []string
	Stdout string
	Stderr string
	Code   int // exit status; -1 when the command could not run or timed out
	Err    error
}

// Combined is stdout followed by stderr.
func (r Result) Combined() string { return r.Stdout + r.Stderr }

func (r Result) String() string {
	return fmt.Sprintf("%q: exit %d (err %v)\nstdout:\n%s\nstderr:\n%s", r.Args, r.Code, r.Err, r.Stdout, r.Stderr)
}

// MustSucceed fails the test unless the command exited 0.
func (r Result) MustSucceed(t testing.TB) Result {
	t.Helper()
	if r.Code != 0 {
		t.Fatalf("command failed: %s", r)
	}
	return r
}

// MustFail fails the test unless the command exited non-zero.
func (r Result) MustFail(t testing.TB) Result {
	t.Helper()
	if r.Code == 0 {
		t.Fatalf("command succeeded, want failure: %s", r)
	}
	if r.Code < 0 {
		t.Fatalf("command did not finish: %s", r)
	}
	return r
}

// cmdOpts tunes one command run.
type cmdOpts struct {
	env     []string
	stdin   io.Reader
	timeout time.Duration
}

const defaultCmdTimeout = 90 * time.Second

// run executes a binary with a clean Docker/sgctl environment plus env.
func run(opts cmdOpts, bin string, args ...string) Result {
	timeout := opts.timeout
	if timeout == 0 {
		timeout = defaultCmdTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(cleanEnv(), opts.env...)
	cmd.Stdin = opts.stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	r := Result{Args: append([]string{filepath.Base(bin)}, args...), Stdout: stdout.String(), Stderr: stderr.String(), Err: err}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		r.Code = 0
	case ctx.Err() != nil:
		r.Code = -1
		r.Err = fmt.Errorf("timed out after %s: %w", timeout, err)
	case errors.As(err, &exitErr) && exitErr.Exited():
		r.Code = exitErr.ExitCode()
	default:
		r.Code = -1
	}
	return r
}

// cleanEnv is the test process environment without anything that would
// redirect the docker CLI or sgctl somewhere else.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "DOCKER_") || strings.HasPrefix(k, "SGCTL_") || k == "BUILDKIT_PROGRESS" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func dockerWith(opts cmdOpts, host string, args ...string) Result {
	opts.env = append([]string{
		"DOCKER_HOST=" + host,
		"DOCKER_CONFIG=" + suite.dockerConfig,
		"DOCKER_CLI_HINTS=false",
	}, opts.env...)
	return run(opts, suite.dockerCLI, args...)
}

// upstreamDocker runs the docker CLI directly against the upstream dockerd,
// bypassing every broker: for setup checks and cleanup only.
func upstreamDocker(args ...string) Result {
	return dockerWith(cmdOpts{timeout: 60 * time.Second}, suite.upstream, args...)
}

// objectName returns a Docker object name unique to this run and test.
func objectName(t testing.TB, kind string) string {
	t.Helper()
	base := strings.NewReplacer("/", "-", " ", "-", "#", "-").Replace(strings.ToLower(t.Name()))
	if len(base) > 40 {
		base = base[:40]
	}
	return fmt.Sprintf("%s-%s-%s-%d", suite.runID, kind, strings.Trim(base, "-"), time.Now().UnixNano()%1e6)
}

// cleanupUpstream removes a Docker object through the upstream socket when
// the test ends, whatever the broker did.
func cleanupUpstream(t testing.TB, kind, name string) {
	t.Helper()
	t.Cleanup(func() {
		var r Result
		switch kind {
		case "container":
			r = upstreamDocker("rm", "-f", "-v", name)
		case "network":
			r = upstreamDocker("network", "rm", name)
		case "volume":
			r = upstreamDocker("volume", "rm", "-f", name)
		case "image":
			r = upstreamDocker("image", "rm", "-f", name)
		default:
			panic("cleanupUpstream: unknown kind " + kind)
		}
		// "No such ..." means the test removed it already.
		if r.Code != 0 && !strings.Contains(strings.ToLower(r.Stderr), "no such") && !strings.Contains(r.Stderr, "not found") {
			t.Logf("cleanup of %s %s: %s", kind, name, r)
		}
	})
}

// Broker is one broker process and the directories it owns. Stop and Start
// may be called repeatedly: the directories survive restarts.
type Broker struct {
	t           *testing.T
	Dir         string // root of everything below
	AdminSocket string
	SocketDir   string
	StateDir    string
	Upstream    string
	ExtraArgs   []string

	proc *brokerProc
}

type brokerProc struct {
	cmd  *exec.Cmd
	log  *lockedBuffer
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result; read after done is closed
}

// lockedBuffer collects a process's stderr while tests read it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// NewBroker prepares directories for a broker forwarding to the test
// upstream, without starting it.
func NewBroker(t *testing.T) *Broker {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "sg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Bind pins (and the pin directory's own mount) are left mounted
		// for containers that may restart: never remove through them.
		if !unmountUnder(t, dir) {
			return
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("removing %s: %v", dir, err)
		}
	})
	return &Broker{
		t:           t,
		Dir:         dir,
		AdminSocket: filepath.Join(dir, "admin.sock"),
		SocketDir:   filepath.Join(dir, "sockets"),
		StateDir:    filepath.Join(dir, "state"),
		Upstream:    suite.upstream,
	}
}

// StartBroker prepares directories and starts a broker on them.
func StartBroker(t *testing.T) *Broker {
	t.Helper()
	b := NewBroker(t)
	b.Start()
	return b
}

// Args are the broker's command-line flags.
func (b *Broker) Args() []string {
	args := []string{
		"--upstream", b.Upstream,
		"--admin-socket", b.AdminSocket,
		"--socket-dir", b.SocketDir,
		"--state-dir", b.StateDir,
		"--log-level", "debug",
	}
	return append(args, b.ExtraArgs...)
}

func (b *Broker) spawn() *brokerProc {
	b.t.Helper()
	p := &brokerProc{log: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(suite.broker, b.Args()...)
	p.cmd.Env = cleanEnv()
	p.cmd.Stdout = p.log
	p.cmd.Stderr = p.log
	// Its own process group: a Ctrl-C of `go test` must not race our SIGTERM.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		b.t.Fatalf("starting broker: %v", err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p
}

// Start starts the broker and waits until its admin socket accepts
// connections. The process is stopped (and its log shown on failure) when
// the test ends.
func (b *Broker) Start() {
	b.t.Helper()
	if b.proc != nil {
		b.t.Fatal("Start: broker already running")
	}
	p := b.spawn()
	b.proc = p
	b.t.Cleanup(func() {
		if b.t.Failed() {
			b.t.Logf("broker log (%s):\n%s", b.Dir, p.log.String())
		}
		p.kill()
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-p.done:
			b.proc = nil
			b.t.Fatalf("broker exited during startup (%v); log:\n%s", p.err, p.log.String())
		default:
		}
		if c, err := net.DialTimeout("unix", b.AdminSocket, time.Second); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("admin socket %s not ready after 20s; log:\n%s", b.AdminSocket, p.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill ends the process if it still runs: SIGTERM, then SIGKILL.
func (p *brokerProc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Stop sends SIGTERM and requires a graceful exit with status 0.
func (b *Broker) Stop() {
	b.t.Helper()
	p := b.proc
	if p == nil {
		b.t.Fatal("Stop: broker not running")
	}
	b.proc = nil
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		b.t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		b.t.Fatalf("broker did not exit within 20s of SIGTERM; log:\n%s", p.log.String())
	}
	if p.err != nil {
		b.t.Fatalf("broker exited with %v after SIGTERM, want status 0; log:\n%s", p.err, p.log.String())
	}
}

// Restart stops the broker gracefully and starts it again on the same dirs.
func (b *Broker) Restart() {
	b.t.Helper()
	b.Stop()
	b.Start()
}

// Log is what the running (or last started) broker wrote so far.
func (b *Broker) Log() string {
	if b.proc == nil {
		return ""
	}
	return b.proc.log.String()
}

// RunExpectingFailure runs another broker process with args and requires it
// to exit non-zero within timeout; it returns its output.
func RunBrokerExpectingFailure(t *testing.T, timeout time.Duration, args ...string) Result {
	t.Helper()
	r := run(cmdOpts{timeout: timeout}, suite.broker, args...)
	if r.Code == 0 {
		t.Fatalf("broker exited 0, want a refusal to start: %s", r)
	}
	if r.Code < 0 {
		t.Fatalf("broker still running after %s, want a refusal to start: %s", timeout, r)
	}
	return r
}

// Sgctl runs sgctl against this broker's admin socket. Global flags such as
// "-o json" go first in args, as the CLI expects.
func (b *Broker) Sgctl(args ...string) Result {
	return run(cmdOpts{timeout: 30 * time.Second}, suite.sgctl, append([]string{"--admin-socket", b.AdminSocket}, args...)...)
}

// SgctlJSON runs sgctl with "-o json", requires success and decodes stdout.
func (b *Broker) SgctlJSON(t testing.TB, v any, args ...string) {
	t.Helper()
	r := b.Sgctl(append([]string{"-o", "json"}, args...)...).MustSucceed(t)
	if err := json.Unmarshal([]byte(r.Stdout), v); err != nil {
		t.Fatalf("decoding JSON of %q: %v\n%s", r.Args, err, r.Stdout)
	}
}

// CreateSocket creates a tenant socket and waits until it accepts
// connections.
func (b *Broker) CreateSocket(t testing.TB, name, preset string, extra ...string) string {
	t.Helper()
	b.Sgctl(append([]string{"create-socket", name, "--preset", preset}, extra...)...).MustSucceed(t)
	sock := b.TenantSocket(name)
	waitDial(t, sock, 10*time.Second)
	return sock
}

// TenantSocket is the path of tenant name's socket.
func (b *Broker) TenantSocket(name string) string {
	return filepath.Join(b.SocketDir, name, "sockguard.sock")
}

// Docker runs the docker CLI through tenant name's socket.
func (b *Broker) Docker(name string, args ...string) Result {
	return dockerWith(cmdOpts{}, "unix://"+b.TenantSocket(name), args...)
}

// DockerOpts is Docker with stdin, extra environment or a timeout.
func (b *Broker) DockerOpts(name string, opts cmdOpts, args ...string) Result {
	return dockerWith(opts, "unix://"+b.TenantSocket(name), args...)
}

// HTTPClient talks HTTP to a unix socket, as the docker CLI does.
func HTTPClient(socket string) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", socket)
			},
			DisableKeepAlives: true,
		},
	}
}

// dockerError is the body dockerd (and the broker) send with an error status.
type dockerError struct {
	Message string `json:"message"`
}

// doRaw sends one HTTP request to a unix socket and returns status and body.
func doRaw(t testing.TB, socket, method, target, contentType string, body io.Reader) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, "http://docker"+target, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := HTTPClient(socket).Do(req)
	if err != nil {
		t.Fatalf("%s %s via %s: %v", method, target, socket, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, target, err)
	}
	return resp.StatusCode, resp.Header, data
}

// waitDial waits until a unix socket accepts connections.
func waitDial(t testing.TB, socket string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("unix", socket, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not accept connections after %s: %v", socket, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dirEntries lists the names in dir ("" entries when it does not exist).
func dirEntries(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// socketJSON is the part of a protojson sockguard.v1.Socket the tests read.
type socketJSON struct {
	Name     string `json:"name"`
	TenantID string `json:"tenantId"`
	Path     string `json:"path"`
	Preset   string `json:"preset"`
	State    string `json:"state"`
}

type listSocketsJSON struct {
	Sockets []socketJSON `json:"sockets"`
}

// denialJSON is the part of a protojson sockguard.v1.Denial the tests read.
type denialJSON struct {
	ID         string `json:"id"` // uint64 is a JSON string in protojson
	Time       string `json:"time"`
	Socket     string `json:"socket"`
	Method     string `json:"method"`
	Path       string `json:"path"`
	RawTarget  string `json:"rawTarget"`
	ReasonCode string `json:"reasonCode"`
	Reason     string `json:"reason"`
	Rule       string `json:"rule"`
	PeerUID    uint32 `json:"peerUid"`
}

type listDenialsJSON struct {
	Denials []denialJSON `json:"denials"`
}

// socketNames lists the broker's sockets by name via sgctl -o json.
func (b *Broker) socketNames(t testing.TB) []string {
	t.Helper()
	var out listSocketsJSON
	b.SgctlJSON(t, &out, "list-sockets")
	names := make([]string, 0, len(out.Sockets))
	for _, s := range out.Sockets {
		names = append(names, s.Name)
	}
	return names
}

// denials lists the denials of one socket via sgctl -o json.
func (b *Broker) denials(t testing.TB, socket string) []denialJSON {
	t.Helper()
	var out listDenialsJSON
	b.SgctlJSON(t, &out, "denials", "--socket", socket)
	return out.Denials
}

// findDenial returns the first denial with method and canonical path.
func findDenial(ds []denialJSON, method, path string) (denialJSON, bool) {
	for _, d := range ds {
		if d.Method == method && d.Path == path {
			return d, true
		}
	}
	return denialJSON{}, false
}

// isDenial matches a denial by method and canonical path.
func isDenial(method, path string) func(denialJSON) bool {
	return func(d denialJSON) bool { return d.Method == method && d.Path == path }
}

// buildContext writes a tiny Docker build context and returns its dir.
func buildContext(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	df := "FROM " + testImage + "\nRUN echo built > /built\n"
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// firstLine is s up to its first newline, trimmed.
func firstLine(s string) string {
	s = strings.TrimSpace(s)
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// unixSeconds formats a time for docker --since/--until.
func unixSeconds(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }
