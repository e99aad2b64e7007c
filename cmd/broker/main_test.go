package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigFile(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		args    []string
		wantErr string
		check   func(t *testing.T, o *options)
	}{
		{
			name: "file sets flags",
			yaml: "upstream: unix:///tmp/d.sock\nsocket-dir: /tmp/s\ndeny-rate: 7\n",
			check: func(t *testing.T, o *options) {
				if o.upstream != "unix:///tmp/d.sock" || o.socketDir != "/tmp/s" || o.denyRate != 7 {
					t.Fatalf("options %+v", o)
				}
			},
		},
		{
			name: "command line wins",
			yaml: "upstream: unix:///tmp/d.sock\n",
			args: []string{"--upstream", "unix:///tmp/cli.sock"},
			check: func(t *testing.T, o *options) {
				if o.upstream != "unix:///tmp/cli.sock" {
					t.Fatalf("upstream %q", o.upstream)
				}
			},
		},
		{name: "empty file", yaml: "", check: func(t *testing.T, o *options) {}},
		{name: "unknown key", yaml: "upstrem: x\n", wantErr: `line 1: unknown key "upstrem"`},
		{name: "config inside config", yaml: "config: other.yaml\n", wantErr: "unknown key"},
		{name: "twice", yaml: "upstream: a\nupstream: b\n", wantErr: "given twice"},
		{name: "not a scalar", yaml: "upstream: [a, b]\n", wantErr: "single value"},
		{name: "bad value", yaml: "deny-rate: lots\n", wantErr: "line 1: deny-rate"},
		{name: "not a mapping", yaml: "- a\n", wantErr: "want a mapping"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "broker.yaml")
			if err := os.WriteFile(file, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			var o options
			fs := newFlagSet(&o, io.Discard)
			if err := fs.Parse(append([]string{"--config", file}, tt.args...)); err != nil {
				t.Fatal(err)
			}
			err := applyConfigFile(fs, o.config)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, &o)
		})
	}
}

func TestDays(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		str  string
		bad  bool
	}{
		{in: "30d", want: 30 * 24 * time.Hour, str: "30d"},
		{in: "0d", want: 0, str: "0s"},
		{in: "36h", want: 36 * time.Hour, str: "36h0m0s"},
		{in: "48h", want: 48 * time.Hour, str: "2d"},
		{in: "0", want: 0, str: "0s"},
		{in: "1.5d", bad: true},
		{in: "d", bad: true},
		{in: "30 days", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var d days
			err := d.Set(tt.in)
			if tt.bad {
				if err == nil {
					t.Fatalf("Set(%q) accepted: %v", tt.in, time.Duration(d))
				}
				return
			}
			if err != nil || time.Duration(d) != tt.want || d.String() != tt.str {
				t.Fatalf("Set(%q) = %v, %q, %v; want %v, %q", tt.in, time.Duration(d), d.String(), err, tt.want, tt.str)
			}
		})
	}
}

func TestRunRejectsBadInput(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"stray argument", []string{"extra"}, 2, "unexpected argument"},
		{"bad log level", []string{"--log-level", "loud"}, 2, "--log-level"},
		{"bad upstream", []string{"--upstream", "ftp://x", "--state-dir", "/tmp/x", "--socket-dir", "/tmp/y", "--admin-socket", "/tmp/z.sock"}, 2, "--upstream \"ftp://x\""},
		{"bare upstream path", []string{"--upstream", "/var/run/docker.sock"}, 2, "--upstream"},
		{"http upstream", []string{"--upstream", "http://127.0.0.1:2375"}, 2, "--upstream"},
		{"missing preset dir", []string{"--preset-dir", "/nonexistent-sockguard-presets"}, 2, "--preset-dir"},
		{"preset dir is a file", []string{"--preset-dir", "/etc/hostname"}, 2, "--preset-dir /etc/hostname: not a directory"},
		{"negative deny rate", []string{"--deny-rate", "-1"}, 2, "--deny-rate -1 must not be negative"},
		{"negative shutdown timeout", []string{"--shutdown-timeout", "-5s"}, 2, "--shutdown-timeout -5s must be positive"},
		{"zero shutdown timeout", []string{"--shutdown-timeout", "0s"}, 2, "--shutdown-timeout 0s must be positive"},
		{"negative deny-log age", []string{"--deny-log-max-age", "-1d"}, 2, "--deny-log-max-age"},
		{"bad deny-log age", []string{"--deny-log-max-age", "thirty"}, 2, "deny-log-max-age"},
		{"zero pin sweep", []string{"--pin-sweep-interval", "0s"}, 2, "--pin-sweep-interval"},
		{"relative health socket", []string{"--health-socket", "health.sock"}, 2, "--health-socket"},
		{"relative state dir", []string{"--state-dir", "state"}, 1, "absolute"},
		{"missing config", []string{"--config", "/nonexistent.yaml"}, 2, "config"},
		{"zero connection limit", []string{"--max-conns-per-socket", "0"}, 2, "--max-conns-per-socket must be positive"},
		{"negative request limit", []string{"--max-requests-per-socket", "-1"}, 2, "--max-requests-per-socket must be positive"},
		{"zero idle timeout", []string{"--idle-timeout", "0s"}, 2, "--idle-timeout must be positive"},
		{"fd reserve above the limit", []string{"--fd-reserve", "100000000", "--state-dir", "/tmp/sglimits-x", "--socket-dir", "/tmp/sglimits-y", "--admin-socket", "/tmp/sglimits-z.sock"}, 1, "--fd-reserve"},
		{"negative per-tenant bound", []string{"--deny-log-max-records-per-tenant", "-1"}, 2, "must not be negative"},
		{"negative global bound", []string{"--deny-log-max-records", "-5"}, 2, "must not be negative"},
		{"tiny deny queue", []string{"--deny-log-queue-bytes", "100"}, 2, "--deny-log-queue-bytes 100"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr strings.Builder
			code := run(t.Context(), tt.args, io.Discard, &stderr)
			if code != tt.code || !strings.Contains(stderr.String(), tt.want) {
				t.Fatalf("exit %d stderr %q, want %d and %q", code, stderr.String(), tt.code, tt.want)
			}
		})
	}
}

// TestRunRefusesSharedDirs: a state or socket dir someone else could
// write is refused, naming the flag, before anything is created in it.
func TestRunRefusesSharedDirs(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  string
	}{
		{"world-writable state dir", func(t *testing.T, dir string) {
			mkdirMode(t, filepath.Join(dir, "state"), 0o777)
		}, "--state-dir"},
		{"group-writable state dir", func(t *testing.T, dir string) {
			mkdirMode(t, filepath.Join(dir, "state"), 0o770)
		}, "--state-dir"},
		{"state dir of another uid", func(t *testing.T, dir string) {
			if os.Geteuid() != 0 {
				t.Skip("needs root to chown")
			}
			mkdirMode(t, filepath.Join(dir, "state"), 0o700)
			if err := os.Chown(filepath.Join(dir, "state"), 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}, "--state-dir"},
		{"world-writable socket dir", func(t *testing.T, dir string) {
			mkdirMode(t, filepath.Join(dir, "s"), 0o777)
		}, "--socket-dir"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, err := os.MkdirTemp("/tmp", "sgdirs")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			tt.setup(t, dir)
			var stderr strings.Builder
			code := run(t.Context(), []string{"--state-dir", filepath.Join(dir, "state"), "--socket-dir", filepath.Join(dir, "s"),
				"--admin-socket", filepath.Join(dir, "a.sock"), "--upstream", "unix://" + filepath.Join(dir, "d.sock"), "--log-level", "error"}, io.Discard, &stderr)
			if code != 1 || !strings.Contains(stderr.String(), tt.want) || !strings.Contains(stderr.String(), "--allow-shared-dirs") {
				t.Fatalf("exit %d stderr %q, want 1 naming %s", code, stderr.String(), tt.want)
			}
			if _, err := os.Stat(filepath.Join(dir, "state", "state.db")); err == nil && tt.want == "--state-dir" {
				t.Fatal("state.db created in a refused dir")
			}
		})
	}
}

func mkdirMode(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Mkdir(path, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}
