package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	tenant = "runner-1"
	preset = "github-actions-runner"
	// deniedPrefix starts the message of every policy refusal.
	deniedPrefix = "sockguard: denied by policy:"
)

// TestDockerThroughTenantSocket: the everyday commands of a CI job work
// through a tenant socket made with the github-actions-runner preset.
func TestDockerThroughTenantSocket(t *testing.T) {
	b := StartBroker(t)
	b.CreateSocket(t, tenant, preset)

	t.Run("version", func(t *testing.T) {
		r := b.Docker(tenant, "version").MustSucceed(t)
		if !strings.Contains(r.Stdout, "Server") {
			t.Errorf("docker version shows no server part:\n%s", r.Stdout)
		}
	})

	t.Run("info", func(t *testing.T) {
		r := b.Docker(tenant, "info", "--format", "{{.ServerVersion}}").MustSucceed(t)
		if strings.TrimSpace(r.Stdout) == "" {
			t.Errorf("docker info: empty server version: %s", r)
		}
	})

	t.Run("run", func(t *testing.T) {
		name := objectName(t, "c")
		cleanupUpstream(t, "container", name)
		r := b.Docker(tenant, "run", "--rm", "--name", name, testImage, "echo", "hi").MustSucceed(t)
		if got := strings.TrimSpace(r.Stdout); got != "hi" {
			t.Errorf("docker run echo hi printed %q", got)
		}
	})

	t.Run("exec with stdin", func(t *testing.T) {
		name := objectName(t, "c")
		cleanupUpstream(t, "container", name)
		r := b.Docker(tenant, "run", "-d", "--name", name, testImage, "sleep", "60").MustSucceed(t)
		id := strings.TrimSpace(r.Stdout)
		if id == "" {
			t.Fatalf("docker run -d printed no id: %s", r)
		}
		r = b.DockerOpts(tenant, cmdOpts{stdin: strings.NewReader("x\n")}, "exec", "-i", id, "cat").MustSucceed(t)
		if got := strings.TrimSpace(r.Stdout); got != "x" {
			t.Errorf("exec -i cat printed %q, want %q", got, "x")
		}
		b.Docker(tenant, "rm", "-f", id).MustSucceed(t)
	})

	t.Run("logs follow", func(t *testing.T) {
		name := objectName(t, "c")
		cleanupUpstream(t, "container", name)
		// The sleep makes `logs -f` attach while the container still runs,
		// so the stream must stay open and end when the container exits.
		b.Docker(tenant, "run", "-d", "--name", name, testImage,
			"sh", "-c", "sleep 1; echo one; sleep 0.5; echo two; echo three").MustSucceed(t)
		r := b.DockerOpts(tenant, cmdOpts{timeout: 30 * time.Second}, "logs", "-f", name).MustSucceed(t)
		if got, want := r.Stdout, "one\ntwo\nthree\n"; got != want {
			t.Errorf("logs -f printed %q, want %q", got, want)
		}
	})

	t.Run("events since until", func(t *testing.T) {
		name := objectName(t, "c")
		cleanupUpstream(t, "container", name)
		since := time.Now().Add(-time.Second)
		r := b.Docker(tenant, "run", "-d", "--name", name, testImage, "true").MustSucceed(t)
		id := strings.TrimSpace(r.Stdout)
		b.Docker(tenant, "wait", id).MustSucceed(t)
		until := time.Now().Add(time.Second)
		time.Sleep(time.Until(until) + 100*time.Millisecond)
		r = b.DockerOpts(tenant, cmdOpts{timeout: 30 * time.Second}, "events",
			"--since", unixSeconds(since), "--until", unixSeconds(until),
			"--filter", "type=container", "--format", "{{.Action}} {{.Actor.ID}}").MustSucceed(t)
		if !strings.Contains(r.Stdout, "start "+id) {
			t.Errorf("events since/until lack the start of %s:\n%s", id, r.Stdout)
		}
		b.Docker(tenant, "rm", id).MustSucceed(t)
	})

	t.Run("events stream", func(t *testing.T) {
		name := objectName(t, "c")
		cleanupUpstream(t, "container", name)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, suite.dockerCLI, "events",
			"--filter", "type=container", "--filter", "event=start",
			"--format", "{{.Action}} {{.Actor.Attributes.name}}")
		cmd.Env = append(cleanEnv(), "DOCKER_HOST=unix://"+b.TenantSocket(tenant), "DOCKER_CONFIG="+suite.dockerConfig)
		cmd.WaitDelay = 5 * time.Second
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		lines := make(chan string)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		// The events stream has no handshake: start containers until one
		// start event arrives (normally the first).
		want := "start " + name
		started := false
		deadline := time.After(30 * time.Second)
		tick := time.NewTicker(2 * time.Second)
		defer tick.Stop()
		b.Docker(tenant, "run", "--rm", "--name", name, testImage, "true").MustSucceed(t)
		for !started {
			select {
			case line, ok := <-lines:
				if !ok {
					t.Fatalf("docker events ended before the start event")
				}
				started = line == want
			case <-tick.C:
				b.Docker(tenant, "run", "--rm", "--name", name, testImage, "true").MustSucceed(t)
			case <-deadline:
				t.Fatalf("no %q event within 30s", want)
			}
		}
	})

	t.Run("network create rm", func(t *testing.T) {
		name := objectName(t, "n")
		cleanupUpstream(t, "network", name)
		b.Docker(tenant, "network", "create", name).MustSucceed(t)
		r := b.Docker(tenant, "network", "ls", "--format", "{{.Name}}").MustSucceed(t)
		if !slices.Contains(strings.Fields(r.Stdout), name) {
			t.Errorf("network ls lacks %s:\n%s", name, r.Stdout)
		}
		b.Docker(tenant, "network", "rm", name).MustSucceed(t)
	})

	t.Run("volume create rm", func(t *testing.T) {
		name := objectName(t, "v")
		cleanupUpstream(t, "volume", name)
		b.Docker(tenant, "volume", "create", name).MustSucceed(t)
		r := b.Docker(tenant, "volume", "ls", "--format", "{{.Name}}").MustSucceed(t)
		if !slices.Contains(strings.Fields(r.Stdout), name) {
			t.Errorf("volume ls lacks %s:\n%s", name, r.Stdout)
		}
		b.Docker(tenant, "volume", "rm", name).MustSucceed(t)
	})

	t.Run("rm -f", func(t *testing.T) {
		name := objectName(t, "c")
		cleanupUpstream(t, "container", name)
		b.Docker(tenant, "run", "-d", "--name", name, testImage, "sleep", "60").MustSucceed(t)
		b.Docker(tenant, "rm", "-f", name).MustSucceed(t)
		if r := upstreamDocker("inspect", name); r.Code == 0 {
			t.Errorf("container %s still exists after rm -f", name)
		}
	})
}

// TestBuildDenied: docker build is refused with the policy message, the
// refusal answers like dockerd (403, JSON message) and is in the deny log.
func TestBuildDenied(t *testing.T) {
	b := StartBroker(t)
	sock := b.CreateSocket(t, tenant, preset)
	start := time.Now().Add(-time.Second)

	tag := objectName(t, "img")
	cleanupUpstream(t, "image", tag)
	r := b.Docker(tenant, "build", "-t", tag, buildContext(t)).MustFail(t)
	if !strings.Contains(r.Combined(), deniedPrefix) {
		t.Errorf("docker build output lacks %q:\n%s", deniedPrefix, r)
	}

	// Raw HTTP, as dockerd would answer a refusal.
	status, hdr, body := doRaw(t, sock, "POST", "/v1.41/build?t=x", "application/x-tar", strings.NewReader(""))
	if status != 403 {
		t.Errorf("POST /build status %d, want 403; body %s", status, body)
	}
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("POST /build Content-Type %q, want application/json", ct)
	}
	var msg dockerError
	if err := json.Unmarshal(body, &msg); err != nil || !strings.HasPrefix(msg.Message, deniedPrefix) {
		t.Errorf("POST /build body %s (err %v), want {\"message\": %q...}", body, err, deniedPrefix)
	}

	d, ok := b.waitDenial(t, tenant, isDenial("POST", "/build"))
	if !ok {
		t.Fatalf("sgctl denials --socket %s lacks POST /build:\n%s", tenant, b.Sgctl("-o", "json", "denials", "--socket", tenant).Stdout)
	}
	if d.Socket != tenant {
		t.Errorf("denial socket %q, want %q", d.Socket, tenant)
	}
	if d.Reason == "" {
		t.Errorf("denial has no reason: %+v", d)
	}
	when, err := time.Parse(time.RFC3339Nano, d.Time)
	if err != nil {
		t.Errorf("denial time %q: %v", d.Time, err)
	} else if when.Before(start) || when.After(time.Now().Add(time.Second)) {
		t.Errorf("denial time %s not within the test (started %s)", when, start)
	}

	// The table form shows it too.
	r = b.Sgctl("denials", "--socket", tenant).MustSucceed(t)
	if !strings.Contains(r.Stdout, "/build") {
		t.Errorf("sgctl denials table lacks /build:\n%s", r.Stdout)
	}
}

// TestPrivilegedDenied: a privileged container is refused by the broker, not
// by dockerd, with the policy message.
func TestPrivilegedDenied(t *testing.T) {
	b := StartBroker(t)
	b.CreateSocket(t, tenant, preset)
	name := objectName(t, "c")
	cleanupUpstream(t, "container", name)
	r := b.Docker(tenant, "run", "--rm", "--name", name, "--privileged", testImage, "true").MustFail(t)
	if !strings.Contains(r.Combined(), deniedPrefix) {
		t.Errorf("privileged run output lacks %q:\n%s", deniedPrefix, r)
	}
	if r := upstreamDocker("inspect", name); r.Code == 0 {
		t.Errorf("privileged container %s was created upstream", name)
	}
	if _, ok := b.waitDenial(t, tenant, isDenial("POST", "/containers/create")); !ok {
		t.Errorf("deny log lacks POST /containers/create")
	}
}

// TestRestartKeepsSocketsAndDenials: after SIGTERM and a new start on the
// same dirs, the tenant socket serves again without being re-created and the
// deny log survived.
func TestRestartKeepsSocketsAndDenials(t *testing.T) {
	b := StartBroker(t)
	b.CreateSocket(t, tenant, preset)
	b.Docker(tenant, "version").MustSucceed(t)
	b.Docker(tenant, "build", "-t", objectName(t, "img"), buildContext(t)).MustFail(t)
	before, ok := b.waitDenial(t, tenant, isDenial("POST", "/build"))
	if !ok {
		t.Fatal("no POST /build denial before the restart")
	}

	b.Restart()

	if names := b.socketNames(t); !slices.Contains(names, tenant) {
		t.Fatalf("list-sockets after restart: %q, want %s", names, tenant)
	}
	r := b.Sgctl("list-sockets").MustSucceed(t)
	if !strings.Contains(r.Stdout, tenant) {
		t.Errorf("list-sockets table lacks %s:\n%s", tenant, r.Stdout)
	}
	waitDial(t, b.TenantSocket(tenant), 10*time.Second)
	b.Docker(tenant, "version").MustSucceed(t)
	r = b.Docker(tenant, "run", "--rm", testImage, "echo", "hi").MustSucceed(t)
	if got := strings.TrimSpace(r.Stdout); got != "hi" {
		t.Errorf("docker run after restart printed %q", got)
	}
	after, ok := findDenial(b.denials(t, tenant), "POST", "/build")
	if !ok {
		t.Fatal("the POST /build denial is gone after the restart")
	}
	if after.Time != before.Time || after.ID != before.ID {
		t.Errorf("denial changed across restart: before %+v, after %+v", before, after)
	}
}

// TestCreateSocketRejectsBadInput: invalid names, unknown presets and
// duplicates get a one-line error and change nothing.
func TestCreateSocketRejectsBadInput(t *testing.T) {
	b := StartBroker(t)
	b.CreateSocket(t, tenant, preset)

	for _, tc := range []struct {
		name string
		args []string
	}{
		{"path traversal", []string{"create-socket", "../x", "--preset", preset}},
		{"space and uppercase", []string{"create-socket", "A B", "--preset", preset}},
		{"slash", []string{"create-socket", "a/b", "--preset", preset}},
		{"empty", []string{"create-socket", "", "--preset", preset}},
		{"unknown preset", []string{"create-socket", "runner-2", "--preset", "no-such-preset"}},
		{"duplicate", []string{"create-socket", tenant, "--preset", preset}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rootBefore := dirEntries(t, b.Dir)
			sockBefore := dirEntries(t, b.SocketDir)
			listBefore := b.Sgctl("-o", "json", "list-sockets").MustSucceed(t).Stdout

			r := b.Sgctl(tc.args...).MustFail(t)
			msg := strings.TrimSpace(r.Stderr)
			if msg == "" {
				t.Errorf("no error message on stderr: %s", r)
			} else if strings.Contains(msg, "\n") {
				t.Errorf("error is not one line:\n%s", msg)
			}
			t.Logf("error: %s", msg)

			if got := dirEntries(t, b.SocketDir); !slices.Equal(got, sockBefore) {
				t.Errorf("socket dir changed: %q -> %q", sockBefore, got)
			}
			if got := dirEntries(t, b.Dir); !slices.Equal(got, rootBefore) {
				t.Errorf("broker dir changed: %q -> %q", rootBefore, got)
			}
			if got := b.Sgctl("-o", "json", "list-sockets").MustSucceed(t).Stdout; got != listBefore {
				t.Errorf("list-sockets changed:\n%s\n->\n%s", listBefore, got)
			}
		})
	}
	// The good socket still serves.
	b.Docker(tenant, "version").MustSucceed(t)
}

// TestAdminSocketMode: without --admin-group only root may use the admin
// socket.
func TestAdminSocketMode(t *testing.T) {
	b := StartBroker(t)
	fi, err := os.Lstat(b.AdminSocket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("%s is %v, want a socket", b.AdminSocket, fi.Mode())
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("admin socket mode %#o, want 0600", perm)
	}
}

// TestCreateSocketRefusesSymlink: a symlink planted at <socket-dir>/<name>
// makes create-socket fail, and nothing is created through it.
func TestCreateSocketRefusesSymlink(t *testing.T) {
	b := StartBroker(t)
	if err := os.MkdirAll(b.SocketDir, 0o755); err != nil {
		t.Fatal(err)
	}
	target, err := os.MkdirTemp("/tmp", "sgt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(target) })
	link := filepath.Join(b.SocketDir, "evil")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}

	r := b.Sgctl("create-socket", "evil", "--preset", preset).MustFail(t)
	t.Logf("error: %s", firstLine(r.Stderr))
	if got := dirEntries(t, target); len(got) != 0 {
		t.Errorf("files created through the symlink in %s: %q", target, got)
	}
	if slices.Contains(b.socketNames(t), "evil") {
		t.Errorf("list-sockets shows the refused socket")
	}
	fi, err := os.Lstat(link)
	if err == nil && fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("%s is no longer the planted symlink but %v", link, fi.Mode())
	}
}

// TestSecondBrokerRefused: a second broker on the same admin socket and
// state dir refuses to start, and the first keeps working.
func TestSecondBrokerRefused(t *testing.T) {
	b := StartBroker(t)
	b.CreateSocket(t, tenant, preset)

	r := RunBrokerExpectingFailure(t, 30*time.Second, b.Args()...)
	msg := strings.TrimSpace(r.Stderr + r.Stdout)
	if msg == "" {
		t.Errorf("second broker exited %d without saying why", r.Code)
	}
	t.Logf("second broker: exit %d: %s", r.Code, msg)

	if fi, err := os.Lstat(b.AdminSocket); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("admin socket gone after the second broker: %v", err)
	}
	b.Sgctl("status").MustSucceed(t)
	if !slices.Contains(b.socketNames(t), tenant) {
		t.Errorf("first broker lost %s", tenant)
	}
	b.Docker(tenant, "version").MustSucceed(t)

	// A second broker sharing only the state dir is refused as well.
	other := NewBroker(t)
	r = RunBrokerExpectingFailure(t, 30*time.Second,
		"--upstream", b.Upstream,
		"--admin-socket", other.AdminSocket,
		"--socket-dir", other.SocketDir,
		"--state-dir", b.StateDir)
	t.Logf("broker on the same state dir: exit %d: %s", r.Code, firstLine(r.Stderr))
	b.Docker(tenant, "version").MustSucceed(t)
}

// TestUpstreamUnreachable: with no dockerd behind it the broker still
// starts, and clients get a 502 with a dockerd-style JSON message.
func TestUpstreamUnreachable(t *testing.T) {
	b := NewBroker(t)
	b.Upstream = "unix://" + filepath.Join(b.Dir, "no-such-docker.sock")
	b.Start()
	sock := b.CreateSocket(t, tenant, preset)

	r := b.Docker(tenant, "version").MustFail(t)
	if strings.TrimSpace(r.Stderr) == "" {
		t.Errorf("docker version failed without a message: %s", r)
	}
	t.Logf("docker version: %s", firstLine(r.Stderr))

	for _, target := range []string{"/version", "/v1.41/version"} {
		status, hdr, body := doRaw(t, sock, "GET", target, "", nil)
		if status != 502 {
			t.Errorf("GET %s: status %d, want 502; body %s", target, status, body)
		}
		if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("GET %s: Content-Type %q, want application/json", target, ct)
		}
		var msg dockerError
		if err := json.Unmarshal(body, &msg); err != nil || msg.Message == "" {
			t.Errorf("GET %s: body %q (err %v), want {\"message\": ...}", target, body, err)
		}
	}
	// The admin plane works without the upstream; status prints its
	// report and, as a healthcheck, exits 1.
	st := b.Sgctl("status")
	if st.Code != 1 || !strings.Contains(st.Stdout, "not reachable") || !strings.Contains(st.Stdout, "sockets") {
		t.Errorf("status without the upstream: %s", st)
	}
	b.Sgctl("ls").MustSucceed(t)
}
