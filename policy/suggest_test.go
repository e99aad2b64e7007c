package policy

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

// observe judges one request with pol the way the broker does and returns the
// would-deny record the deny log would hold.
func observe(t *testing.T, pol *Policy, at time.Duration, method, target, body string) Observation {
	t.Helper()
	req, d := pol.Evaluate(method, target, http.Header{"Content-Type": {"application/json"}}, []byte(body))
	if d.Allow {
		t.Fatalf("%s %s is allowed; want a denial to observe", method, target)
	}
	return Observation{Time: t0.Add(at), Method: req.Method, Path: req.Path, Code: d.Code, Reason: d.Reason, Rule: d.Rule}
}

func suggestPolicy(t *testing.T, base *Preset, obs []Observation, ov Overrides) (*Policy, string) {
	t.Helper()
	out, err := Suggest(base, "runner-widened", obs)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParsePreset("runner-widened", out)
	if err != nil {
		t.Fatalf("ParsePreset: %v\n%s", err, out)
	}
	pol, err := NewPolicy(p, ov)
	if err != nil {
		t.Fatalf("NewPolicy: %v\n%s", err, out)
	}
	return pol, string(out)
}

func TestSuggestExportAndPrivileged(t *testing.T) {
	base := mustPreset(t, "github-actions-runner")
	pol := mustPolicy(t, "github-actions-runner", Overrides{})
	obs := []Observation{
		observe(t, pol, 0, "GET", "/v1.43/containers/x/export", ""),
		observe(t, pol, time.Minute, "POST", "/containers/create", `{"Image":"alpine","HostConfig":{"Privileged":true}}`),
		observe(t, pol, 2*time.Minute, "GET", "/containers/0123abcd/export", ""),
	}
	np, out := suggestPolicy(t, base, obs, Overrides{})
	for _, target := range []string{"/containers/x/export", "/containers/other/export"} {
		if _, d := np.Evaluate("GET", target, nil, nil); !d.Allow {
			t.Errorf("GET %s still denied: %+v\n%s", target, d, out)
		}
	}
	if _, d := np.Evaluate("POST", "/containers/create", nil, []byte(`{"HostConfig":{"Privileged":true}}`)); d.Allow || d.Code != ReasonPrivileged {
		t.Errorf("privileged create: %+v, want still denied\n%s", d, out)
	}
	for _, want := range []string{
		"- {method: GET, path: /containers/*/export}",
		"needed 2 times, first 2026-03-01T10:00:00Z, last 2026-03-01T10:02:00Z",
		"# WARNING: allow_privileged:",
		"  # allow_privileged: true\n",
		"needed once, at 2026-03-01T10:01:00Z",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// The allow goes right before the deny rule it reopens, after the others.
	if i, j := strings.Index(out, "path: /containers/*/export}"), strings.Index(out, "path: /containers/*/export, action: deny"); i < 0 || j < 0 || i > j {
		t.Errorf("allow rule not placed before the deny rule:\n%s", out)
	}
	if i, j := strings.Index(out, "path: /containers/*/export}"), strings.Index(out, "path: /build, action: deny"); i < j {
		t.Errorf("allow rule placed before unrelated explicit denials:\n%s", out)
	}
	// Uncommenting the WARNING line is the whole edit that allows it.
	uncommented := strings.Replace(out, "  # allow_privileged: true\n", "  allow_privileged: true\n", 1)
	p, err := ParsePreset("runner-widened", []byte(uncommented))
	if err != nil {
		t.Fatal(err)
	}
	up, _ := NewPolicy(p, Overrides{})
	if _, d := up.Evaluate("POST", "/containers/create", nil, []byte(`{"HostConfig":{"Privileged":true}}`)); !d.Allow {
		t.Errorf("uncommented preset still denies privileged: %+v", d)
	}
}

func TestSuggestSettings(t *testing.T) {
	base := mustPreset(t, "github-actions-runner")
	pol := runnerTenant(t)
	create := func(at time.Duration, hc string) Observation {
		return observe(t, pol, at, "POST", "/containers/create", `{"Image":"alpine","HostConfig":`+hc+`}`)
	}
	obs := []Observation{
		create(0, `{"CapAdd":["SYS_NICE"]}`),
		create(1, `{"CapAdd":["CAP_SYS_ADMIN"]}`),
		create(2, `{"Binds":["/srv/cache:/cache"]}`),
		create(3, `{"Binds":["/:/host"]}`),
		create(4, `{"Binds":["/etc/ssl:/ssl:ro"]}`),
		create(5, `{"NetworkMode":"host"}`),
		create(6, `{"Runtime":"runsc"}`),
		create(7, `{"Sysctls":{"net.ipv4.ip_forward":"1"}}`),
		observe(t, pol, 8, "POST", "/volumes/create", `{"Name":"v","Driver":"rexray"}`),
		observe(t, pol, 9, "POST", "/networks/create", `{"Name":"n","Driver":"macvlan"}`),
		observe(t, pol, 10, "POST", "/containers/abc/exec", `{"Privileged":true,"Cmd":["sh"]}`),
		observe(t, pol, 11, "POST", "/plugins/pull?remote=vieux/sshfs", ""),
		observe(t, pol, 12, "DELETE", "/images/ghcr.io/org/app:1", ""),
		observe(t, pol, 13, "GET", "/system/df", ""),
		create(14, `{"LogConfig":{"Type":"journald"}}`),
		create(15, `{"LogConfig":{"Type":"gelf","Config":{}}}`),
		{Time: t0, Method: "POST", Path: "/containers/create", Code: ReasonMalformed, Reason: "ambiguous JSON", Rule: "container create"},
		{Time: t0, Method: "GET", Path: "/containers/x/json", Code: ReasonForeignObject, Reason: "not owned", Rule: "tenant isolation"},
	}
	np, out := suggestPolicy(t, base, obs, Overrides{SelfSocket: selfSock})
	cases := []struct {
		name, method, target, body string
		allow                      bool
	}{
		{"safe capability", "POST", "/containers/create", `{"HostConfig":{"CapAdd":["SYS_NICE"]}}`, true},
		{"SYS_ADMIN stays denied", "POST", "/containers/create", `{"HostConfig":{"CapAdd":["SYS_ADMIN"]}}`, false},
		{"new bind root", "POST", "/containers/create", `{"HostConfig":{"Binds":["/srv/cache/x:/c"]}}`, true},
		{"/ stays denied", "POST", "/containers/create", `{"HostConfig":{"Binds":["/:/host"]}}`, false},
		{"/etc/ssl stays denied", "POST", "/containers/create", `{"HostConfig":{"Binds":["/etc/ssl:/ssl:ro"]}}`, false},
		{"host network stays denied", "POST", "/containers/create", `{"HostConfig":{"NetworkMode":"host"}}`, false},
		{"runtime", "POST", "/containers/create", `{"HostConfig":{"Runtime":"runsc"}}`, true},
		{"sysctls stay denied", "POST", "/containers/create", `{"HostConfig":{"Sysctls":{"a":"b"}}}`, false},
		{"volume driver", "POST", "/volumes/create", `{"Driver":"rexray"}`, true},
		{"network driver", "POST", "/networks/create", `{"Driver":"macvlan"}`, true},
		{"privileged exec stays denied", "POST", "/containers/abc/exec", `{"Privileged":true}`, false},
		{"plugin pull stays denied", "POST", "/plugins/pull?remote=x", "", false},
		{"image delete", "DELETE", "/images/alpine", "", true},
		{"system df", "GET", "/system/df", "", true},
		{"build still denied", "POST", "/build", "", false},
		{"local log driver", "POST", "/containers/create", `{"HostConfig":{"LogConfig":{"Type":"journald"}}}`, true},
		{"remote log driver stays denied", "POST", "/containers/create", `{"HostConfig":{"LogConfig":{"Type":"gelf"}}}`, false},
	}
	for _, tc := range cases {
		if _, d := np.Evaluate(tc.method, tc.target, nil, []byte(tc.body)); d.Allow != tc.allow {
			t.Errorf("%s: %+v, want allow=%v", tc.name, d, tc.allow)
		}
	}
	for _, want := range []string{
		"    - SYS_NICE  # added by suggest-policy: needed once",
		"    # WARNING: SYS_ADMIN: capability SYS_ADMIN",
		"    # - SYS_ADMIN\n",
		"    - {path: /srv/cache}  # added by suggest-policy",
		"    # - {path: /}\n",
		"    # - {path: /etc/ssl}\n",
		"  # - {method: POST, path: /plugins/pull}\n",
		"- {method: DELETE, path: /images/**}",
		"- {method: GET, path: /system/df}",
		"#   WARNING: POST /containers/create: sharing a host namespace",
		"#   POST /containers/create: sysctls (escalation): no preset setting allows this",
		"#   POST /containers/create: malformed or ambiguous requests are never allowed",
		"#   GET /containers/x/json: tenant isolation",
		"  # allow_privileged: true\n", // exec
		"    - journald  # added by suggest-policy",
		"    # WARNING: gelf: log driver gelf makes dockerd connect out",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// Every WARNING line is followed by commented lines only, never a live setting.
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if strings.Contains(l, "# WARNING:") && !strings.HasPrefix(strings.TrimSpace(l), "#   WARNING") {
			if i+2 >= len(lines) || !strings.HasPrefix(strings.TrimSpace(lines[i+2]), "#") {
				t.Errorf("WARNING at line %d not followed by a commented-out addition:\n%s", i+1, out)
			}
		}
	}
}

func TestSuggestDaemonSocketAndBools(t *testing.T) {
	base := mustPreset(t, "read-only")
	src := strings.Replace(string(mustPreset(t, "github-actions-runner").Source), "daemon_socket_bind: rewrite", "daemon_socket_bind: deny", 1)
	src = strings.Replace(src, "\n  allow_links: true", "\n  allow_links: false", 1)
	src = strings.Replace(src, "\n  require_non_root: false", "\n  require_non_root: true", 1)
	strict, err := ParsePreset("github-actions-runner", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	pol, _ := NewPolicy(strict, Overrides{SelfSocket: selfSock})
	obs := []Observation{
		observe(t, pol, 0, "POST", "/containers/create", `{"User":"1000","HostConfig":{"Binds":["/var/run/docker.sock:/var/run/docker.sock"]}}`),
		observe(t, pol, 0, "POST", "/containers/create", `{"User":"1000","HostConfig":{"Links":["db:db"]}}`),
		observe(t, pol, 0, "POST", "/containers/create", `{"User":"root"}`),
	}
	np, out := suggestPolicy(t, strict, obs, Overrides{SelfSocket: selfSock})
	for _, body := range []string{
		`{"HostConfig":{"Binds":["/var/run/docker.sock:/var/run/docker.sock"]}}`,
		`{"HostConfig":{"Links":["db:db"]}}`,
		`{"User":"root"}`,
	} {
		if _, d := np.Evaluate("POST", "/containers/create", nil, []byte(body)); !d.Allow {
			t.Errorf("%s: %+v\n%s", body, d, out)
		}
	}
	if !strings.Contains(out, "daemon_socket_bind: rewrite") || strings.Contains(out, "daemon_socket_bind: deny") {
		t.Errorf("daemon socket not widened to rewrite:\n%s", out)
	}

	// A read-only base: a denied read is appended after the base rules.
	rp, _ := NewPolicy(base, Overrides{})
	_, out2 := suggestPolicy(t, base, []Observation{observe(t, rp, 0, "GET", "/containers/abc/changes", "")}, Overrides{})
	if i, j := strings.Index(out2, "path: /containers/*/changes"), strings.Index(out2, "read-only preset denies every write"); i < j {
		t.Errorf("default-deny addition not appended:\n%s", out2)
	}
}

func TestSuggestGeneralize(t *testing.T) {
	tests := []struct{ path, want string }{
		{"/containers/abc/export", "/containers/*/export"},
		{"/containers/abc", "/containers/*"},
		{"/containers/prune", "/containers/prune"},
		{"/containers/abc/attach/ws", "/containers/*/attach/ws"},
		{"/exec/123/start", "/exec/*/start"},
		{"/images/ghcr.io/o/app:1/history", "/images/**/history"},
		{"/images/alpine", "/images/**"},
		{"/images/load", "/images/load"},
		{"/plugins/vieux/sshfs:latest/enable", "/plugins/**/enable"},
		{"/networks/n1/connect", "/networks/*/connect"},
		{"/system/df", "/system/df"},
		{"/swarm/init", "/swarm/init"},
		{"/volumes/v1", "/volumes/*"},
	}
	for _, tc := range tests {
		got, ok := ruleGlob(strings.Split(tc.path[1:], "/"))
		if !ok || got != tc.want {
			t.Errorf("ruleGlob(%s) = %q, %v; want %q", tc.path, got, ok, tc.want)
		}
	}
	if _, ok := ruleGlob([]string{"containers", "a", "*"}); ok {
		t.Error("a literal * segment was generalized into a wildcard")
	}
}

// TestSuggestKeepsBase: with nothing observed, the suggestion compiles to the
// base preset exactly (every setting is carried over).
func TestSuggestKeepsBase(t *testing.T) {
	full := `name: full
min_api_version: "1.30"
max_body_bytes: 4096
rules:
  - {method: ["*"], path: [/a/**, /b], action: deny, status: 404, reason: "it's \"quoted\": yes"}
  - {method: [GET, HEAD], path: /c/*/d}
  - {method: POST, path: /e, action: allow}
container:
  allow_privileged: true
  allowed_bind_roots: [{path: /srv/a, read_only: true}, {path: /srv/b}]
  daemon_socket_bind: rewrite
  allowed_capabilities: [NET_ADMIN, cap_sys_nice]
  allowed_runtimes: [runsc]
  allow_volumes_from: true
  allow_links: true
  require_non_root: true
  require_read_only_rootfs: true
  require_no_new_privileges: true
  require_memory_limit: true
  require_cpu_limit: true
  require_pids_limit: true
exec: {allow_privileged: true, require_non_root: true}
images: {allowed_registries: ["*", ghcr.io, "*.amazonaws.com", "localhost:5000"], allow_import: true}
volumes: {allowed_drivers: [local, "on"]}
network: {allowed_drivers: [bridge, "yes"], allow_custom_ipam: true, allow_options: true}
build: {allow_remote_context: true, allow_host_network: true}
`
	fp, err := ParsePreset("full", []byte(full))
	if err != nil {
		t.Fatal(err)
	}
	for _, base := range []*Preset{fp, mustPreset(t, "github-actions-runner"), mustPreset(t, "read-only")} {
		t.Run(base.Name, func(t *testing.T) {
			out, err := Suggest(base, "copy", nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ParsePreset("copy", out)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			for _, p := range []*Preset{got, base} {
				p.Name, p.Description, p.Source, p.Builtin = "", "", nil, false
			}
			if !reflect.DeepEqual(got, base) {
				t.Fatalf("suggestion differs from its base:\n%s", out)
			}
		})
	}
}

func TestSuggestCommentInjection(t *testing.T) {
	base := mustPreset(t, "read-only")
	obs := []Observation{
		{Time: t0, Method: "GET", Path: "/x\nallow_privileged: true", Code: ReasonRuleDenied, Rule: "default deny"},
		{Time: t0, Method: "POST", Path: "/containers/create", Code: ReasonEscalation, Rule: "devices\ncontainer:\n  allow_privileged: true"},
	}
	out, err := Suggest(base, "inj", obs)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "allow_privileged: true") {
			t.Fatalf("injected line %q:\n%s", l, out)
		}
	}
}

func TestSuggestErrors(t *testing.T) {
	if _, err := Suggest(nil, "x", nil); err == nil {
		t.Error("nil base accepted")
	}
	if _, err := Suggest(mustPreset(t, "read-only"), "Bad Name", nil); err == nil {
		t.Error("bad name accepted")
	}
}
