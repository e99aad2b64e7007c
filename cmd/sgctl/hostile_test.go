package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestHostileBrokerCannotWriteTerminalControls: a broker (or whoever
// answers at a context's address) chooses every string sgctl prints,
// error messages included. None of them may reach the operator's terminal
// as control characters (escape sequences retitle, hide or rewrite lines).
func TestHostileBrokerCannotWriteTerminalControls(t *testing.T) {
	const evil = "x\x1b]0;pwned\x07\x1b[2J\x1b[1A\rok\x9b31m"
	cases := []struct {
		name string
		f    *fakeBroker
		args []string
	}{
		{"error message", &fakeBroker{err: status.Error(codes.FailedPrecondition, evil)}, []string{"ls"}},
		{"error message inspect", &fakeBroker{err: status.Error(codes.NotFound, evil)}, []string{"inspect-socket", "a"}},
		{"preset source", &fakeBroker{presets: []*sockguardv1.Preset{{Name: "p", Yaml: "a: 1\n# " + evil + "\n"}}}, []string{"preset", "p"}},
		{"socket fields", &fakeBroker{sockets: []*sockguardv1.Socket{{Name: evil, Preset: evil, Path: evil, StateMessage: evil, State: sockguardv1.SocketState_SOCKET_STATE_FAILED}}}, []string{"ls"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := sgctl(t, startBroker(t, tc.f), tc.args...)
			for _, out := range []string{r.stdout, r.stderr} {
				if strings.ContainsAny(out, "\x1b\x07\r\u009b") {
					t.Fatalf("control characters reached the terminal: stdout %q stderr %q", r.stdout, r.stderr)
				}
			}
		})
	}
}

// TestSaveConfigIgnoresPlantedTemp: whoever can write the config file's
// directory (a shared $SGCTL_CONFIG location) planted FILE.tmp as a
// symlink; "sgctl context add" wrote the config through it into the
// symlink's target.
func TestSaveConfigIgnoresPlantedTemp(t *testing.T) {
	dir := shortTempDir(t)
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "config.yaml")
	if err := os.Symlink(victim, file+".tmp"); err != nil {
		t.Fatal(err)
	}
	if err := saveConfig(file, &sgConfig{}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Fatalf("the symlink's target was written: %q", b)
	}
	fi, err := os.Lstat(file)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config file: %v %v", fi, err)
	}
}
