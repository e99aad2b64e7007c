package policy

import (
	"strings"
	"testing"
)

// TestMayBindAsWritten: only the sockets and paths under an allowed root
// may pass the bind rules as written; roots match on whole segments.
func TestMayBindAsWritten(t *testing.T) {
	pre, err := BuiltinCatalog()
	if err != nil {
		t.Fatal(err)
	}
	runner, err := pre.Get("github-actions-runner")
	if err != nil {
		t.Fatal(err)
	}
	pol, err := NewPolicy(runner, Overrides{SelfSocket: "/srv/sg/t/sockguard.sock",
		AllowBinds: []BindRoot{{Path: "/home/runner/work"}}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		src  string
		want bool
	}{
		{"/home/runner/work", true},
		{"/home/runner/work/repo/../x", true},
		{"/home/runner/workx", false},
		{"/home/runner/work/../../../etc/passwd", false},
		{"/var/run/docker.sock", true},
		{"/srv/sg/t/sockguard.sock", true},
		{"/etc/hostname/x", false},
		{"relative", false},
		{"", false},
	}
	for _, tc := range tests {
		if got := pol.MayBindAsWritten(tc.src); got != tc.want {
			t.Errorf("MayBindAsWritten(%q) = %v, want %v", tc.src, got, tc.want)
		}
	}
	var none *Policy
	if none.MayBindAsWritten("/home/runner/work") {
		t.Error("a nil policy allows a source")
	}
}

// TestBindRefusalsNameNoHiddenPath: a bind source above the daemon socket
// or above one of the broker's own paths is refused without naming that
// path (probing "/tmp", "/srv"... would otherwise find where the daemon
// listens and where the broker keeps its state); a source at or inside a
// broker path may name it, the tenant wrote it.
func TestBindRefusalsNameNoHiddenPath(t *testing.T) {
	const hidden = "/srv/hidden-broker-state"
	const sock = "/srv/hidden-daemon/docker.sock"
	pol := mustPolicy(t, "github-actions-runner", Overrides{ProtectedPaths: []string{hidden}, DaemonSockets: []string{sock}})
	req, err := Canonicalize("POST", "/containers/create", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{"/", "/srv", "/srv/hidden-daemon"} {
		d, _ := pol.InspectBody(req, nil, []byte(`{"HostConfig":{"Binds":["`+src+`:/x:ro"]}}`))
		if d.Allow || d.Code != ReasonBindMount {
			t.Fatalf("%s: %+v, want a bind-mount refusal", src, d)
		}
		if strings.Contains(d.Reason, "hidden") && !strings.Contains(src, "hidden") ||
			strings.Contains(d.Reason, sock) || strings.Contains(d.Reason, hidden) {
			t.Errorf("%s: the refusal names a path the tenant did not write: %s", src, d.Reason)
		}
	}
}
