package policy

import (
	"errors"
	"strings"
	"testing"
)

func TestBuiltinCatalog(t *testing.T) {
	c, err := BuiltinCatalog()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range c.List() {
		names = append(names, p.Name)
		if !p.Builtin || p.Description == "" || len(p.Source) == 0 {
			t.Errorf("preset %q: builtin=%v description=%q", p.Name, p.Builtin, p.Description)
		}
	}
	if got := strings.Join(names, ","); got != "github-actions-runner,read-only" {
		t.Fatalf("List() = %s", got)
	}
	if _, err := c.Get("nope"); !errors.Is(err, ErrUnknownPreset) {
		t.Fatalf("Get(nope) = %v, want ErrUnknownPreset", err)
	}
	if p, err := c.Get("read-only"); err != nil || p.Name != "read-only" {
		t.Fatalf("Get(read-only) = %v, %v", p, err)
	}
}

func TestParsePresetErrors(t *testing.T) {
	tests := []struct {
		name    string
		preset  string
		src     string
		wantErr string // substring; "" means success
	}{
		{name: "minimal", preset: "p", src: "rules:\n  - {method: GET, path: /_ping}\n"},
		{name: "method list and path list", preset: "p", src: "rules:\n  - {method: [get, HEAD], path: [/_ping, /version]}\n"},
		{name: "empty", preset: "p", src: "  \n", wantErr: "empty document"},
		{name: "no rules", preset: "p", src: "name: p\n", wantErr: "at least one rule"},
		{name: "unknown top key", preset: "p", src: "rules:\n  - {method: GET, path: /}\nrulez: []\n", wantErr: "line 3: field rulez not found"},
		{name: "unknown rule key", preset: "p", src: "rules:\n  - {method: GET, path: /, actoin: deny}\n", wantErr: "line 2: field actoin not found"},
		{name: "unknown container key", preset: "p", src: "rules:\n  - {method: GET, path: /}\ncontainer:\n  allow_privilegd: true\n", wantErr: "line 4"},
		{name: "bad method", preset: "p", src: "rules:\n  - {method: GTE, path: /}\n", wantErr: "line 2: rules[0]: method \"GTE\""},
		{name: "star method mixed", preset: "p", src: "rules:\n  - {method: [\"*\", GET], path: /}\n", wantErr: "cannot be combined"},
		{name: "partial glob", preset: "p", src: "rules:\n  - {method: GET, path: /x}\n  - {method: GET, path: /containers/abc*}\n", wantErr: "line 3: rules[1]"},
		{name: "relative glob", preset: "p", src: "rules:\n  - {method: GET, path: containers}\n", wantErr: "must start with /"},
		{name: "dotdot glob", preset: "p", src: "rules:\n  - {method: GET, path: /a/../b}\n", wantErr: "segment"},
		{name: "trailing slash glob", preset: "p", src: "rules:\n  - {method: GET, path: /a/}\n", wantErr: "segment"},
		{name: "versioned glob", preset: "p", src: "rules:\n  - {method: GET, path: /v1.41/info}\n", wantErr: "API version"},
		{name: "bad action", preset: "p", src: "rules:\n  - {method: GET, path: /, action: maybe}\n", wantErr: "action"},
		{name: "missing path", preset: "p", src: "rules:\n  - {method: GET}\n", wantErr: "path is required"},
		{name: "name mismatch", preset: "p", src: "name: q\nrules:\n  - {method: GET, path: /}\n", wantErr: "does not match"},
		{name: "bad preset name", preset: "P!", src: "rules:\n  - {method: GET, path: /}\n", wantErr: "preset name"},
		{name: "two documents", preset: "p", src: "rules:\n  - {method: GET, path: /}\n---\nrules: []\n", wantErr: "more than one"},
		{name: "cap ALL", preset: "p", src: "rules:\n  - {method: GET, path: /}\ncontainer: {allowed_capabilities: [ALL]}\n", wantErr: "ALL"},
		{name: "unknown cap", preset: "p", src: "rules:\n  - {method: GET, path: /}\ncontainer: {allowed_capabilities: [SYS_ADMN]}\n", wantErr: "not a Linux capability"},
		{name: "root bind root", preset: "p", src: "rules:\n  - {method: GET, path: /}\ncontainer: {allowed_bind_roots: [{path: /}]}\n", wantErr: "every host path"},
		{name: "bad socket mode", preset: "p", src: "rules:\n  - {method: GET, path: /}\ncontainer: {daemon_socket_bind: allow}\n", wantErr: "daemon_socket_bind"},
		{name: "bad registry", preset: "p", src: "rules:\n  - {method: GET, path: /}\nimages: {allowed_registries: [\"ghcr.io/org\"]}\n", wantErr: "allowed_registries"},
		{name: "bad min version", preset: "p", src: "min_api_version: latest\nrules:\n  - {method: GET, path: /}\n", wantErr: "min_api_version"},
		{name: "wrong type", preset: "p", src: "rules:\n  - {method: GET, path: /}\ncontainer: {allow_privileged: maybe}\n", wantErr: "line 3"},
		{name: "status 404", preset: "p", src: "rules:\n  - {method: GET, path: /plugins/**, action: deny, status: 404}\n"},
		{name: "status 403", preset: "p", src: "rules:\n  - {method: GET, path: /x, action: deny, status: 403}\n"},
		{name: "status other", preset: "p", src: "rules:\n  - {method: GET, path: /}\n  - {method: GET, path: /x, action: deny, status: 401}\n", wantErr: "line 3: rules[1]: status 401: must be 403 or 404"},
		{name: "status 200", preset: "p", src: "rules:\n  - {method: GET, path: /x, action: deny, status: 200}\n", wantErr: "must be 403 or 404"},
		{name: "status string", preset: "p", src: "rules:\n  - {method: GET, path: /x, action: deny, status: \"404\"}\n", wantErr: "line 2"},
		{name: "status word", preset: "p", src: "rules:\n  - {method: GET, path: /x, action: deny, status: notfound}\n", wantErr: "line 2"},
		{name: "status float", preset: "p", src: "rules:\n  - {method: GET, path: /x, action: deny, status: 404.5}\n", wantErr: "line 2"},
		{name: "status hex", preset: "p", src: "rules:\n  - {method: GET, path: /x, action: deny, status: 0x194}\n", wantErr: "line 2"},
		{name: "status on allow", preset: "p", src: "rules:\n  - {method: GET, path: /x, status: 404}\n", wantErr: "deny rules only"},
		{name: "status on explicit allow", preset: "p", src: "rules:\n  - {method: GET, path: /x, action: allow, status: 403}\n", wantErr: "deny rules only"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParsePreset(tc.preset, []byte(tc.src))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("ParsePreset: %v", err)
				}
				if p.Name != tc.preset {
					t.Fatalf("name %q", p.Name)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ParsePreset error = %v; want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestGlob(t *testing.T) {
	tests := []struct {
		name    string
		pattern string
		path    string
		want    bool
	}{
		{"literal", "/containers/json", "/containers/json", true},
		{"literal mismatch", "/containers/json", "/containers/jsonx", false},
		{"star one segment", "/containers/*/json", "/containers/abc/json", true},
		{"star not two", "/containers/*/json", "/containers/a/b/json", false},
		{"star not zero", "/containers/*/json", "/containers/json", false},
		{"doublestar zero", "/images/**/json", "/images/json", true},
		{"doublestar one", "/images/**/json", "/images/alpine/json", true},
		{"doublestar many", "/images/**/json", "/images/ghcr.io/org/app/json", true},
		{"doublestar last literal", "/images/**/json", "/images/alpine/get", false},
		{"doublestar literal inside", "/images/**/json", "/images/json/x", false},
		{"doublestar tail", "/swarm/**", "/swarm/init", true},
		{"doublestar tail zero", "/swarm/**", "/swarm", true},
		{"doublestar tail prefix", "/swarm/**", "/swarmx", false},
		{"two doublestars", "/a/**/b/**/c", "/a/x/b/y/b/z/c", true},
		{"two doublestars miss", "/a/**/b/**/c", "/a/x/c/b", false},
		{"root", "/", "/", true},
		{"root only", "/", "/x", false},
		{"all", "/**", "/", true},
		{"case sensitive", "/containers/json", "/Containers/json", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, err := compileGlob(tc.pattern)
			if err != nil {
				t.Fatal(err)
			}
			if got := g.match(appendSegments(nil, tc.path)); got != tc.want {
				t.Fatalf("%s ~ %s = %v, want %v", tc.pattern, tc.path, got, tc.want)
			}
		})
	}
}

func TestNewPolicyOverrides(t *testing.T) {
	p := mustPreset(t, "github-actions-runner")
	tests := []struct {
		name    string
		ov      Overrides
		wantErr bool
	}{
		{"none", Overrides{}, false},
		{"work dir", Overrides{AllowBinds: []BindRoot{{Path: "/home/runner/_work"}}, SelfSocket: "/run/sockguard/r1/sockguard.sock"}, false},
		{"relative root", Overrides{AllowBinds: []BindRoot{{Path: "home"}}}, true},
		{"slash root", Overrides{AllowBinds: []BindRoot{{Path: "/"}}}, true},
		{"root holding the socket", Overrides{AllowBinds: []BindRoot{{Path: "/var/run"}}}, true},
		{"root holding a custom socket", Overrides{AllowBinds: []BindRoot{{Path: "/srv"}}, DaemonSockets: []string{"/srv/docker.sock"}}, true},
		{"relative self socket", Overrides{SelfSocket: "sock"}, true},
		{"relative daemon socket", Overrides{DaemonSockets: []string{"d.sock"}}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewPolicy(p, tc.ov)
			if (err != nil) != tc.wantErr {
				t.Fatalf("NewPolicy err = %v, wantErr %v", err, tc.wantErr)
			}
		})
	}
}

func mustPreset(t testing.TB, name string) *Preset {
	t.Helper()
	c, err := BuiltinCatalog()
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustPolicy(t testing.TB, name string, ov Overrides) *Policy {
	t.Helper()
	pol, err := NewPolicy(mustPreset(t, name), ov)
	if err != nil {
		t.Fatal(err)
	}
	return pol
}
