package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
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

func TestRunRejectsBadInput(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"stray argument", []string{"extra"}, 2, "unexpected argument"},
		{"bad log level", []string{"--log-level", "loud"}, 2, "--log-level"},
		{"bad upstream", []string{"--upstream", "ftp://x", "--state-dir", "/tmp/x", "--socket-dir", "/tmp/y", "--admin-socket", "/tmp/z.sock"}, 1, "upstream"},
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
