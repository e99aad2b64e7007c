package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestHelpNamesTheTarget: 'sgctl --help' says where a command would go now,
// and that is the current context when neither $SGCTL_ADMIN_SOCKET nor
// --admin-socket is given (it said the default socket, where no command went).
func TestHelpNamesTheTarget(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if r := sgctlEnv(t, map[string]string{configEnv: cfg}, "context", "add", "host-a", "--address", "unix:///tmp/a.sock"); r.code != 0 {
		t.Fatalf("context add: %+v", r)
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no config", map[string]string{configEnv: filepath.Join(t.TempDir(), "none.yaml")}, nil, "now " + defaultAdminSocket + ")"},
		{"current context", map[string]string{configEnv: cfg}, nil, "now context host-a, unix:///tmp/a.sock)"},
		{"env wins", map[string]string{configEnv: cfg, adminSocketEnv: "/tmp/env.sock"}, nil, "now /tmp/env.sock)"},
		{"flag wins", map[string]string{configEnv: cfg}, []string{"--admin-socket", "/tmp/flag.sock"}, "now /tmp/flag.sock)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := sgctlEnv(t, tc.env, append(tc.args, "--help")...)
			out := strings.Join(strings.Fields(r.stdout+r.stderr), " ")
			if !strings.Contains(out, tc.want) {
				t.Fatalf("help does not say %q:\n%s", tc.want, r.stdout+r.stderr)
			}
		})
	}
}
