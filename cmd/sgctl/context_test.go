package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// sgctlEnv runs one invocation with the given environment only (no
// --admin-socket), as a user with a config file would.
func sgctlEnv(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	c := &cli{
		stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr,
		getenv: func(k string) string { return env[k] },
		now:    func() time.Time { return testNow },
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code := c.main(ctx, append([]string{"--timeout", "5s"}, args...))
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

func TestContexts(t *testing.T) {
	a := &fakeBroker{sockets: testSockets()[:1], denials: testDenials(2), watch: testDenials(2)}
	bDenials := testDenials(2)
	for i, d := range bDenials {
		d.Socket = "build-1"
		d.Time = timestamppb.New(testNow.Add(-time.Duration(i)*time.Minute - 30*time.Second))
	}
	b := &fakeBroker{sockets: testSockets()[1:], denials: bDenials, watch: bDenials}
	sockA, sockB := startBroker(t, a), startBroker(t, b)
	env := map[string]string{configEnv: filepath.Join(t.TempDir(), "sub", "config.yaml")}

	for _, args := range [][]string{
		{"context", "add", "host-a", "--address", "unix://" + sockA},
		{"context", "add", "host-b", "--address", "unix://" + sockB},
	} {
		if r := sgctlEnv(t, env, args...); r.code != 0 {
			t.Fatalf("%v: %+v", args, r)
		}
	}
	if fi, err := os.Stat(env[configEnv]); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config file: %v %v", fi, err)
	}

	t.Run("ls marks the current context", func(t *testing.T) {
		r := sgctlEnv(t, env, "context", "ls")
		if r.code != 0 || !strings.Contains(r.stdout, "*         host-a") || !strings.Contains(r.stdout, "host-b") {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("current context and --context", func(t *testing.T) {
		if r := sgctlEnv(t, env, "ls", "-q"); r.code != 0 || r.stdout != "runner-1\n" {
			t.Fatalf("%+v", r)
		}
		if r := sgctlEnv(t, env, "--context", "host-b", "ls", "-q"); r.code != 0 || r.stdout != "runner-2\n" {
			t.Fatalf("%+v", r)
		}
		if r := sgctlEnv(t, env, "context", "use", "host-b"); r.code != 0 {
			t.Fatalf("%+v", r)
		}
		if r := sgctlEnv(t, env, "ls", "-q"); r.code != 0 || r.stdout != "runner-2\n" {
			t.Fatalf("after use: %+v", r)
		}
		// An explicit --admin-socket wins over the current context.
		if r := sgctlEnv(t, env, "--admin-socket", sockA, "ls", "-q"); r.code != 0 || r.stdout != "runner-1\n" {
			t.Fatalf("--admin-socket: %+v", r)
		}
	})
	t.Run("fan-out list has a HOST column", func(t *testing.T) {
		for _, flag := range [][]string{{"--context", "all"}, {"--all-contexts"}} {
			r := sgctlEnv(t, env, append(flag, "ls")...)
			lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
			if r.code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "HOST") ||
				!strings.HasPrefix(lines[1], "host-a") || !strings.Contains(lines[1], "runner-1") ||
				!strings.HasPrefix(lines[2], "host-b") || !strings.Contains(lines[2], "runner-2") {
				t.Fatalf("%v: %+v", flag, r)
			}
		}
	})
	t.Run("fan-out status", func(t *testing.T) {
		r := sgctlEnv(t, env, "--context", "all", "status")
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if len(lines) != 3 || !strings.HasPrefix(lines[0], "HOST") || !strings.HasPrefix(lines[1], "host-a") || !strings.HasPrefix(lines[2], "host-b") {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("fan-out denials merge newest first", func(t *testing.T) {
		r := sgctlEnv(t, env, "--context", "all", "denials")
		lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
		if r.code != 0 || len(lines) != 5 {
			t.Fatalf("%+v", r)
		}
		for i, want := range []string{"host-a", "host-b", "host-a", "host-b"} {
			if !strings.HasPrefix(lines[i+1], want) {
				t.Errorf("line %d %q, want host %s first", i+1, lines[i+1], want)
			}
		}
	})
	t.Run("fan-out follow merges the streams", func(t *testing.T) {
		r := sgctlEnv(t, env, "--context", "all", "denials", "--follow", "--limit", "4")
		if r.code != 0 || strings.Count(r.stdout, "host-a  ") != 2 || strings.Count(r.stdout, "host-b  ") != 2 {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("mutations and other commands refuse all contexts", func(t *testing.T) {
		for _, args := range [][]string{
			{"create-socket", "x", "--preset", "readonly"},
			{"delete-socket", "runner-1"},
			{"update-socket", "runner-1", "--policy-mode", "audit"},
			{"backup", "/tmp/never"},
			{"inspect-socket", "runner-1"},
		} {
			r := sgctlEnv(t, env, append([]string{"--all-contexts"}, args...)...)
			if r.code != exitUsage || !strings.Contains(r.stderr, "does not run on all contexts") {
				t.Errorf("%v: %+v", args, r)
			}
		}
		for _, f := range []*fakeBroker{a, b} {
			if n := len(requests[*sockguardv1.CreateSocketRequest](f)) + len(requests[*sockguardv1.DeleteSocketRequest](f)) +
				len(requests[*sockguardv1.UpdateSocketRequest](f)); n != 0 {
				t.Errorf("a refused fan-out reached a broker: %d requests", n)
			}
		}
	})
	t.Run("one broker down: the others print, exit 1", func(t *testing.T) {
		env2 := map[string]string{configEnv: filepath.Join(t.TempDir(), "c.yaml")}
		sgctlEnv(t, env2, "context", "add", "up", "--address", "unix://"+sockA)
		sgctlEnv(t, env2, "context", "add", "down", "--address", "unix://"+filepath.Join(t.TempDir(), "none.sock"))
		r := sgctlEnv(t, env2, "--context", "all", "ls")
		if r.code != exitFailure || !strings.Contains(r.stdout, "runner-1") || !strings.Contains(r.stderr, "sgctl: down: ") {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("rm", func(t *testing.T) {
		if r := sgctlEnv(t, env, "context", "rm", "host-b"); r.code != 0 {
			t.Fatalf("%+v", r)
		}
		if r := sgctlEnv(t, env, "--context", "host-b", "ls"); r.code != exitUsage || !strings.Contains(r.stderr, "no such context") {
			t.Fatalf("%+v", r)
		}
	})
}

func TestContextConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, file, args, err string }{
		{"unknown key", "contexts:\n- name: a\n  address: unix:///x\n  insecure: true\n", "ls", "field insecure not found"},
		{"tcp without client cert", "contexts:\n- name: a\n  address: tcp://127.0.0.1:1\n  ca: /c\n", "ls", "needs ca, cert and key"},
		{"relative unix path", "contexts:\n- name: a\n  address: unix://x.sock\n", "ls", "absolute"},
		{"http address", "contexts:\n- name: a\n  address: http://h:1\n", "ls", "want unix:///path or tcp://host:port"},
		{"twice", "contexts:\n- name: a\n  address: unix:///x\n- name: a\n  address: unix:///y\n", "ls", "given twice"},
		{"context named all", "contexts:\n- name: all\n  address: unix:///x\n", "ls", "not \"all\""},
		{"current is missing", "current-context: b\ncontexts:\n- name: a\n  address: unix:///x\n", "ls", "is not a context"},
		{"empty all", "", "--context all ls", "no contexts"},
		{"all contradicts a name", "contexts:\n- name: a\n  address: unix:///x\n", "--all-contexts --context a ls", "contradict"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			if err := os.WriteFile(f, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			r := sgctlEnv(t, map[string]string{configEnv: f}, strings.Fields(tc.args)...)
			if r.code == 0 || !strings.Contains(r.stderr, tc.err) {
				t.Fatalf("%+v, want %q", r, tc.err)
			}
		})
	}
	// add refuses a TCP context without mutual TLS files, and changes nothing.
	f := filepath.Join(dir, "add.yaml")
	r := sgctlEnv(t, map[string]string{configEnv: f}, "context", "add", "x", "--address", "tcp://127.0.0.1:7443")
	if r.code != exitUsage || !strings.Contains(r.stderr, "needs ca, cert and key") {
		t.Fatalf("%+v", r)
	}
	if _, err := os.Stat(f); !os.IsNotExist(err) {
		t.Fatalf("a refused add wrote the config: %v", err)
	}
}
