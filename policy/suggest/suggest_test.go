package suggest

import (
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sockguard/sockguard/policy"
)

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

const selfSock = "/run/sockguard/r1/sockguard.sock"

func mustPreset(t testing.TB, name string) *policy.Preset {
	t.Helper()
	c, err := policy.BuiltinCatalog()
	if err != nil {
		t.Fatal(err)
	}
	p, err := c.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func mustPolicy(t testing.TB, name string, ov policy.Overrides) *policy.Policy {
	t.Helper()
	pol, err := policy.NewPolicy(mustPreset(t, name), ov)
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

func runnerTenant(t testing.TB) *policy.Policy {
	return mustPolicy(t, "github-actions-runner", policy.Overrides{
		AllowBinds: []policy.BindRoot{
			{Path: "/home/runner/_work"},
			{Path: "/home/runner/externals", ReadOnly: true},
		},
		SelfSocket:    selfSock,
		DaemonSockets: []string{"/srv/docker/docker.sock"},
	})
}

// observe judges one request with pol the way the broker does and returns the
// would-deny record the deny log would hold.
func observe(t *testing.T, pol *policy.Policy, at time.Duration, method, target, body string) Observation {
	t.Helper()
	req, d := pol.Evaluate(method, target, http.Header{"Content-Type": {"application/json"}}, []byte(body))
	if d.Allow {
		t.Fatalf("%s %s is allowed; want a denial to observe", method, target)
	}
	return Observation{Time: t0.Add(at), Method: req.Method, Path: req.Path, Code: d.Code, Rule: d.Rule, Subject: d.Subject}
}

func suggestPolicy(t *testing.T, base *policy.Preset, obs []Observation, ov policy.Overrides) (*policy.Policy, string) {
	t.Helper()
	out, err := Suggest(base, "runner-widened", obs)
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.ParsePreset("runner-widened", out)
	if err != nil {
		t.Fatalf("ParsePreset: %v\n%s", err, out)
	}
	pol, err := policy.NewPolicy(p, ov)
	if err != nil {
		t.Fatalf("NewPolicy: %v\n%s", err, out)
	}
	return pol, string(out)
}

func TestSuggestExportAndPrivileged(t *testing.T) {
	base := mustPreset(t, "github-actions-runner")
	pol := mustPolicy(t, "github-actions-runner", policy.Overrides{})
	obs := []Observation{
		observe(t, pol, 0, "GET", "/v1.43/containers/x/export", ""),
		observe(t, pol, time.Minute, "POST", "/containers/create", `{"Image":"alpine","HostConfig":{"Privileged":true}}`),
		observe(t, pol, 2*time.Minute, "GET", "/containers/0123abcd/export", ""),
	}
	np, out := suggestPolicy(t, base, obs, policy.Overrides{})
	for _, target := range []string{"/containers/x/export", "/containers/other/export"} {
		if _, d := np.Evaluate("GET", target, nil, nil); !d.Allow {
			t.Errorf("GET %s still denied: %+v\n%s", target, d, out)
		}
	}
	if _, d := np.Evaluate("POST", "/containers/create", nil, []byte(`{"HostConfig":{"Privileged":true}}`)); d.Allow || d.Code != policy.ReasonPrivileged {
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
	p, err := policy.ParsePreset("runner-widened", []byte(uncommented))
	if err != nil {
		t.Fatal(err)
	}
	up, _ := policy.NewPolicy(p, policy.Overrides{})
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
		observe(t, pol, 16, "POST", "/images/create?fromImage=localhost:5000/app&tag=1", ""),
		{Time: t0, Method: "POST", Path: "/images/create", Code: policy.ReasonBodyDenied, Rule: "images.allowed_registries",
			Subject: policy.RegistrySubject("reg.internal:5000")},
		create(14, `{"LogConfig":{"Type":"journald"}}`),
		create(15, `{"LogConfig":{"Type":"gelf","Config":{}}}`),
		{Time: t0, Method: "POST", Path: "/containers/create", Code: policy.ReasonMalformed, Rule: "container create"},
		{Time: t0, Method: "GET", Path: "/containers/x/json", Code: policy.ReasonForeignObject, Rule: "tenant isolation"},
	}
	np, out := suggestPolicy(t, base, obs, policy.Overrides{SelfSocket: selfSock})
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
		"#   WARNING: POST /containers/create: HostConfig.Binds[0]: no bind root can allow this host path",
		"    # - {path: /etc/ssl}\n",
		"  # - {method: POST, path: /plugins/pull}\n",
		"- {method: DELETE, path: /images/**}",
		"- {method: GET, path: /system/df}",
		"#   WARNING: POST /containers/create: sharing a host namespace",
		"sysctls (escalation): no preset setting allows this",
		"#   POST /containers/create: malformed or ambiguous requests are never allowed",
		"#   GET /containers/x/json: tenant isolation",
		"  # allow_privileged: true\n", // exec
		"    - journald  # added by suggest-policy",
		"    # WARNING: gelf: log driver gelf makes dockerd connect out",
		"    # WARNING: localhost:5000: registry localhost:5000 is on the broker's host",
		"    # WARNING: reg.internal:5000: registry reg.internal:5000 is on the broker's host",
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
	strict, err := policy.ParsePreset("github-actions-runner", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	pol, _ := policy.NewPolicy(strict, policy.Overrides{SelfSocket: selfSock})
	obs := []Observation{
		observe(t, pol, 0, "POST", "/containers/create", `{"User":"1000","HostConfig":{"Binds":["/var/run/docker.sock:/var/run/docker.sock"]}}`),
		observe(t, pol, 0, "POST", "/containers/create", `{"User":"1000","HostConfig":{"Links":["db:db"]}}`),
		observe(t, pol, 0, "POST", "/containers/create", `{"User":"root"}`),
	}
	np, out := suggestPolicy(t, strict, obs, policy.Overrides{SelfSocket: selfSock})
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
	rp, _ := policy.NewPolicy(base, policy.Overrides{})
	_, out2 := suggestPolicy(t, base, []Observation{observe(t, rp, 0, "GET", "/containers/abc/changes", "")}, policy.Overrides{})
	if i, j := strings.Index(out2, "path: /containers/*/changes"), strings.Index(out2, "read-only preset denies every write"); i < j {
		t.Errorf("default-deny addition not appended:\n%s", out2)
	}
}

// TestSuggestKeepsBase: with nothing observed, the suggestion compiles to the
// base preset exactly (every setting is carried over).
func TestSuggestKeepsBase(t *testing.T) {
	full := `name: full
min_api_version: "1.30"
max_body_bytes: 4096
max_archive_bytes: 8192
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
	fp, err := policy.ParsePreset("full", []byte(full))
	if err != nil {
		t.Fatal(err)
	}
	for _, base := range []*policy.Preset{fp, mustPreset(t, "github-actions-runner"), mustPreset(t, "read-only")} {
		t.Run(base.Name, func(t *testing.T) {
			out, err := Suggest(base, "copy", nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := policy.ParsePreset("copy", out)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			for _, p := range []*policy.Preset{got, base} {
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
		{Time: t0, Method: "GET", Path: "/x\nallow_privileged: true", Code: policy.ReasonRuleDenied, Rule: "default deny"},
		{Time: t0, Method: "POST", Path: "/containers/create", Code: policy.ReasonEscalation, Rule: "devices\ncontainer:\n  allow_privileged: true"},
		{Time: t0, Method: "POST", Path: "/containers/create", Code: policy.ReasonEscalation, Rule: "devices",
			Subject: policy.Subject{Field: "x\ncontainer:\n  allow_privileged: true", Allow: policy.Allowance{Kind: policy.AllowanceNone}}},
		{Time: t0, Method: "GET", Path: "/x", Code: policy.ReasonRuleDenied, Rule: "default deny",
			Subject: policy.Subject{Allow: policy.Allowance{Kind: policy.AllowanceRule, Method: "GET", PathGlob: "/x\nallow_privileged: true"}}},
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

// TestSuggestReadsNoText: what is suggested depends on the records'
// codes and subjects only. Rewording every rule label (the one text an
// Observation still carries, for comments) changes no line of YAML.
func TestSuggestReadsNoText(t *testing.T) {
	base := mustPreset(t, "github-actions-runner")
	pol := runnerTenant(t)
	var obs []Observation
	for i, tc := range []struct{ method, target, body string }{
		{"POST", "/containers/create", `{"HostConfig":{"Privileged":true}}`},
		{"POST", "/containers/create", `{"HostConfig":{"CapAdd":["SYS_NICE"]}}`},
		{"POST", "/containers/create", `{"HostConfig":{"Binds":["/srv/cache:/c"]}}`},
		{"POST", "/containers/create", `{"HostConfig":{"Runtime":"runsc"}}`},
		{"POST", "/containers/create", `{"HostConfig":{"LogConfig":{"Type":"journald"}}}`},
		{"POST", "/volumes/create", `{"Driver":"rexray"}`},
		{"POST", "/networks/create", `{"Driver":"macvlan"}`},
		{"GET", "/containers/abc/export", ""},
		{"GET", "/system/df", ""},
	} {
		obs = append(obs, observe(t, pol, time.Duration(i), tc.method, tc.target, tc.body))
	}
	yamlLines := func(obs []Observation) string {
		out, err := Suggest(base, "x", obs)
		if err != nil {
			t.Fatal(err)
		}
		var keep []string
		for _, l := range strings.Split(string(out), "\n") {
			if !strings.HasPrefix(strings.TrimSpace(l), "#") {
				keep = append(keep, l)
			}
		}
		return strings.Join(keep, "\n")
	}
	want := yamlLines(obs)
	for i := range obs {
		obs[i].Rule = "reworded"
	}
	if got := yamlLines(obs); got != want {
		t.Fatalf("rewording the rule labels changed the suggestion:\n%s\nwant:\n%s", got, want)
	}
	for _, w := range []string{"SYS_NICE", "/srv/cache", "runsc", "journald", "rexray", "macvlan", "/containers/*/export", "/system/df"} {
		if !strings.Contains(want, w) {
			t.Errorf("suggestion lacks %s:\n%s", w, want)
		}
	}
}

// TestSuggestDistrustsRecords: a record's allowance is checked before it
// is written: values no preset accepts, a glob that does not match the
// record's own request, and settings this package does not know are
// listed, not suggested, and the result still loads.
func TestSuggestDistrustsRecords(t *testing.T) {
	base := mustPreset(t, "read-only")
	set := func(sec, name, v string) policy.Subject {
		return policy.Subject{Allow: policy.Allowance{Kind: policy.AllowanceSetting, Section: sec, Setting: name, Value: v}}
	}
	rule := func(m, g string) policy.Subject {
		return policy.Subject{Allow: policy.Allowance{Kind: policy.AllowanceRule, Method: m, PathGlob: g}}
	}
	obs := []Observation{
		{Method: "POST", Path: "/containers/create", Code: policy.ReasonBindMount, Subject: set("container", "allowed_bind_roots", "/")},
		{Method: "POST", Path: "/containers/create", Code: policy.ReasonBindMount, Subject: set("container", "allowed_bind_roots", "/a/../etc")},
		{Method: "POST", Path: "/containers/create", Code: policy.ReasonEscalation, Subject: set("container", "allowed_capabilities", "ALL")},
		{Method: "POST", Path: "/images/create", Code: policy.ReasonBodyDenied, Subject: set("images", "allowed_registries", "*")},
		{Method: "POST", Path: "/containers/create", Code: policy.ReasonBodyDenied, Subject: set("container", "allow_privileged", "yes")},
		{Method: "POST", Path: "/containers/create", Code: policy.ReasonBodyDenied, Subject: set("container", "require_non_root", "true")},
		{Method: "POST", Path: "/containers/create", Code: policy.ReasonBodyDenied, Subject: set("container", "daemon_socket_bind", "deny")},
		{Method: "POST", Path: "/containers/create", Code: policy.ReasonBodyDenied, Subject: set("container", "future_setting", "true")},
		{Method: "POST", Path: "/containers/create", Code: policy.ReasonBodyDenied, Subject: set("container", "allowed_runtimes", "a b")},
		{Method: "GET", Path: "/containers/x/export", Code: policy.ReasonRuleDenied, Subject: rule("GET", "/**")},
		{Method: "GET", Path: "/containers/x/export", Code: policy.ReasonRuleDenied, Subject: rule("POST", "/containers/*/export")},
		{Method: "GET", Path: "/containers/x/export", Code: policy.ReasonRuleDenied, Subject: rule("GET", "/containers/*/export\n- {method: \"*\", path: /**}")},
	}
	out, err := Suggest(base, "x", obs)
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.ParsePreset("x", out)
	if err != nil {
		t.Fatal(err)
	}
	bp := *base
	for _, p := range []*policy.Preset{p, &bp} {
		p.Name, p.Description, p.Source, p.Builtin = "", "", nil, false
	}
	if !reflect.DeepEqual(p, &bp) {
		t.Errorf("a distrusted record widened the preset:\n%s", out)
	}
	// One line per distinct refusal; the three rule records share one.
	if n := strings.Count(string(out), "\n#   "); n != 9 {
		t.Errorf("%d skip lines, want 9:\n%s", n, out)
	}
}
