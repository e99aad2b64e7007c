package policy

import (
	"net/http"
	"strings"
	"testing"
)

// The broker's own paths (class 5 of issue 8): no bind root and no bind
// may name, contain or lie inside one; the tenant's own socket is the one
// bind that reaches into the socket directory.

var brokerPaths = []string{"/run/sockguard", "/run/sockguard-admin/admin.sock", "/var/lib/sockguard"}

func TestProtectedBindRoots(t *testing.T) {
	p := mustPreset(t, "github-actions-runner")
	tests := []struct {
		name, root string
		wantErr    string
	}{
		{"work dir", "/home/runner/_work", ""},
		{"sibling with a shared prefix", "/var/lib/sockguardx", ""},
		{"the state dir", "/var/lib/sockguard", "contains the broker's own path"},
		{"inside the state dir", "/var/lib/sockguard/pins", "lies inside the broker's own path"},
		{"holding the state dir", "/var/lib", "contains the broker's own path"},
		{"the socket dir", "/run/sockguard", "contains the broker's own path"},
		{"a tenant's socket dir", "/run/sockguard/other", "lies inside the broker's own path"},
		{"holding the admin socket", "/run/sockguard-admin", "contains the broker's own path"},
		{"the admin socket", "/run/sockguard-admin/admin.sock", "contains the broker's own path"},
		{"holding the daemon socket", "/run", "daemon socket"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewPolicy(p, Overrides{AllowBinds: []BindRoot{{Path: tc.root}}, ProtectedPaths: brokerPaths})
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("NewPolicy: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("NewPolicy err = %v, want %q", err, tc.wantErr)
			}
		})
	}
	if _, err := NewPolicy(p, Overrides{ProtectedPaths: []string{"relative"}}); err == nil {
		t.Fatal("a relative protected path was accepted")
	}
}

func TestProtectedBinds(t *testing.T) {
	const self = "/run/sockguard/r1/sockguard.sock"
	// A root above the broker's paths cannot be configured, so the binds
	// below are judged with a preset root of "/srv" plus paths that reach
	// the broker's files from outside any root: the protected check must
	// name them whatever the roots say.
	pol := mustPolicy(t, "github-actions-runner", Overrides{
		AllowBinds: []BindRoot{{Path: "/srv"}}, SelfSocket: self, ProtectedPaths: brokerPaths,
	})
	tests := []struct {
		name, body string
		allow      bool
		reason     string
	}{
		{"bind under a root", `{"HostConfig":{"Binds":["/srv/x:/x"]}}`, true, ""},
		{"the tenant's own socket", `{"HostConfig":{"Binds":["` + self + `:/var/run/docker.sock"]}}`, true, ""},
		{"docker.sock is rewritten", `{"HostConfig":{"Binds":["/var/run/docker.sock:/var/run/docker.sock"]}}`, true, ""},
		{"the state dir", `{"HostConfig":{"Binds":["/var/lib/sockguard:/x"]}}`, false, "broker's own path /var/lib/sockguard"},
		{"a pin", `{"HostConfig":{"Binds":["/var/lib/sockguard/pins/t-1/p/0:/x"]}}`, false, "broker's own path /var/lib/sockguard"},
		{"the admin socket", `{"HostConfig":{"Mounts":[{"Type":"bind","Source":"/run/sockguard-admin/admin.sock","Target":"/a"}]}}`, false, "broker's own path"},
		{"another tenant's socket", `{"HostConfig":{"Binds":["/run/sockguard/r2/sockguard.sock:/s"]}}`, false, "broker's own path /run/sockguard"},
		{"top-level binds too", `{"Binds":["/var/lib/sockguard/state.db:/db"]}`, false, "broker's own path"},
	}
	req, err := Canonicalize(http.MethodPost, "/v1.45/containers/create", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := pol.InspectBody(req, http.Header{}, []byte(tc.body))
			checkSubject(t, d)
			if d.Allow != tc.allow {
				t.Fatalf("allow = %v, want %v (%s)", d.Allow, tc.allow, d.Reason)
			}
			if tc.reason != "" && !strings.Contains(d.Reason, tc.reason) {
				t.Fatalf("reason %q lacks %q", d.Reason, tc.reason)
			}
		})
	}
}

func TestProtectedOverlap(t *testing.T) {
	tests := []struct {
		p    string
		want string
	}{
		{"/var/lib/sockguard", "/var/lib/sockguard"},
		{"/var/lib/sockguard/", "/var/lib/sockguard"},
		{"/var/lib/sockguard/pins/x", "/var/lib/sockguard"},
		{"/var/lib", "/var/lib/sockguard"},
		{"/", "/run/sockguard"},
		{"/var/lib/sockguardx", ""},
		{"/run/sockguard-adminx", ""},
		{"/srv", ""},
	}
	for _, tc := range tests {
		got, ok := ProtectedOverlap(tc.p, brokerPaths)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("ProtectedOverlap(%q) = %q, %v; want %q", tc.p, got, ok, tc.want)
		}
	}
}

func TestRewriteBindSourcesOptions(t *testing.T) {
	body := `{"HostConfig":{"Binds":["/a:/a:ro","/b:/b","/c:/c:rw,z"],"Mounts":[` +
		`{"Type":"bind","Source":"/d","Target":"/d","ReadOnly":true},` +
		`{"Type":"bind","Source":"/e","Target":"/e","ReadOnly":true,"BindOptions":{"ReadOnlyNonRecursive":true}},` +
		`{"Type":"bind","Source":"/f","Target":"/f","BindOptions":{"NonRecursive":true,"CreateMountpoint":true}}]},` +
		`"Mounts":[{"Type":"bind","Source":"/g","Target":"/g"}]}`
	var got []BindSource
	out, err := RewriteBindSources([]byte(body), func(s BindSource) (string, error) {
		got = append(got, s)
		return "/pin" + s.Source, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []BindSource{
		{Field: "Mounts[0].Source", Source: "/g", Mount: true},
		{Field: "HostConfig.Binds[0]", Source: "/a", ReadOnly: true},
		{Field: "HostConfig.Binds[1]", Source: "/b"},
		{Field: "HostConfig.Binds[2]", Source: "/c"},
		{Field: "HostConfig.Mounts[0].Source", Source: "/d", Mount: true, ReadOnly: true},
		{Field: "HostConfig.Mounts[1].Source", Source: "/e", Mount: true},
		{Field: "HostConfig.Mounts[2].Source", Source: "/f", Mount: true, NonRecursive: true, CreateMountpoint: true},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d sources, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("source %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, s := range []string{`"/pin/a:/a:ro"`, `"/pin/c:/c:rw,z"`, `"Source":"/pin/f"`, `"Source":"/pin/g"`} {
		if !strings.Contains(string(out), s) {
			t.Errorf("rewritten body lacks %s: %s", s, out)
		}
	}
}
