package policy

import "testing"

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
