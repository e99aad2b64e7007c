package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const unitFile = "../../examples/systemd/sockguard-broker.service"

// unitExecStart returns the broker arguments of the unit's ExecStart
// (continuation lines joined).
func unitExecStart(t *testing.T, unit string) (bin string, args []string) {
	t.Helper()
	joined := strings.ReplaceAll(unit, "\\\n", " ")
	for _, line := range strings.Split(joined, "\n") {
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			f := strings.Fields(v)
			return f[0], f[1:]
		}
	}
	t.Fatal("unit has no ExecStart")
	return "", nil
}

// TestUnitFlags: the flags the shipped unit passes are ones this broker
// accepts and its own checks pass (a renamed flag fails here, not on a
// host at boot).
func TestUnitFlags(t *testing.T) {
	src, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	bin, args := unitExecStart(t, string(src))
	if bin != "/usr/local/bin/broker" {
		t.Fatalf("ExecStart binary %q, want what make install installs", bin)
	}
	var o options
	fs := newFlagSet(&o, io.Discard)
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		t.Fatalf("unit flags: %v %v", err, fs.Args())
	}
	o.presetDir = "" // exists only on an installed host
	if err := checkOptions(&o); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify\n", "ExecReload=/bin/kill -HUP $MAINPID\n", "RuntimeDirectory=sockguard\n",
		"StateDirectory=sockguard\n", "RuntimeDirectoryPreserve=yes\n"} {
		if !strings.Contains(string(src), want) {
			t.Errorf("unit lacks %q", want)
		}
	}
	for _, dir := range []string{"/run/sockguard", "/var/lib/sockguard"} {
		if !strings.Contains(strings.Join(args, " "), dir) {
			t.Errorf("ExecStart does not use %s", dir)
		}
	}
	// A private mount namespace would hide the bind pins from dockerd.
	for _, bad := range []string{"ProtectSystem=", "PrivateTmp=", "PrivateMounts=", "ProtectHome=", "PrivateDevices=", "ReadWritePaths=", "ProtectKernelTunables="} {
		for _, line := range strings.Split(string(src), "\n") {
			if strings.HasPrefix(line, bad) {
				t.Errorf("unit sets %s: the service would get its own mount namespace", line)
			}
		}
	}
}

// TestUnitVerifies runs systemd-analyze verify on the shipped unit (with
// ExecStart pointed at an executable that exists here), and on a broken
// copy to show the check can fail.
func TestUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (apt-get install systemd): unit file not verified")
	}
	src, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	verify := func(unit string) (string, error) {
		dir := t.TempDir()
		p := filepath.Join(dir, "sockguard-broker.service")
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(unit, "/usr/local/bin/broker", self)), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(analyze, "verify", p).CombinedOutput()
		return string(out), err
	}
	out, err := verify(string(src))
	if err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	broken := strings.Replace(string(src), "Type=notify\n", "Type=notfy\n", 1)
	if out, err := verify(broken); err == nil && !strings.Contains(out, "notfy") {
		t.Fatalf("a broken unit verified cleanly:\n%s", out)
	}
}
