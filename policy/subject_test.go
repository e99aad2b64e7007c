package policy

import (
	"net/http"
	"strings"
	"testing"
)

// checkSubject holds a decision to the Subject invariants: every refusal
// says what would permit it (or that nothing can), an allowance is
// complete, and an allowed decision carries no subject.
func checkSubject(t *testing.T, d Decision) {
	t.Helper()
	s := d.Subject
	if d.Allow {
		if s != (Subject{}) {
			t.Fatalf("allowed decision with a subject: %+v", s)
		}
		return
	}
	switch a := s.Allow; a.Kind {
	case AllowanceNone:
		if a != (Allowance{Kind: AllowanceNone}) {
			t.Fatalf("allowance none with data: %+v", a)
		}
	case AllowanceSetting:
		if a.Setting == "" || a.Method != "" || a.PathGlob != "" {
			t.Fatalf("incomplete setting allowance: %+v", a)
		}
	case AllowanceRule:
		if a.Method == "" || a.Section != "" || a.Setting != "" || a.Value != "" {
			t.Fatalf("incomplete rule allowance: %+v", a)
		}
		if _, err := compileGlob(a.PathGlob); err != nil {
			t.Fatalf("rule allowance glob: %v", err)
		}
	default:
		t.Fatalf("refusal without an allowance (%s): %+v", d.Reason, d)
	}
}

// TestDecisionSubjects: the subject of each kind of refusal names the
// field, the value where it is safe to keep, and the allowance that would
// permit it, so programs never read the Reason sentence.
func TestDecisionSubjects(t *testing.T) {
	preset, err := ParsePreset("strict", []byte(`rules:
  - {method: POST, path: /build, action: deny}
  - {method: [GET, POST, DELETE], path: [/containers/create, /containers/*/exec, /images/create, /images/*, /auth, /volumes/create, /networks/create]}
images: {allowed_registries: [docker.io]}
volumes: {allowed_drivers: [local]}
network: {allowed_drivers: [bridge]}
`))
	if err != nil {
		t.Fatal(err)
	}
	pol, err := NewPolicy(preset, Overrides{
		AllowBinds:    []BindRoot{{Path: "/srv/work"}, {Path: "/srv/ro", ReadOnly: true}},
		SelfSocket:    "/run/sockguard/t.sock",
		DaemonSockets: []string{"/var/run/docker.sock"},
	})
	if err != nil {
		t.Fatal(err)
	}
	create := func(hc string) string { return `{"Image":"busybox","HostConfig":{` + hc + `}}` }
	set := func(sec, name, v string) Allowance { return setting(sec, name, v) }
	tests := []struct {
		name           string
		method, target string
		header         http.Header
		body           string
		field, value   string
		allow          Allowance
	}{
		{"privileged", "POST", "/containers/create", nil, create(`"Privileged":true`),
			"HostConfig.Privileged", "", set("container", "allow_privileged", "true")},
		{"top-level privileged", "POST", "/containers/create", nil, `{"Image":"busybox","Privileged":true}`,
			"Privileged", "", set("container", "allow_privileged", "true")},
		{"bind outside roots", "POST", "/containers/create", nil, create(`"Binds":["/opt/data/:/x:ro"]`),
			"HostConfig.Binds[0]", "/opt/data/", set("container", "allowed_bind_roots", "/opt/data")},
		{"second bind", "POST", "/containers/create", nil, create(`"Binds":["/srv/work/a:/a","/opt:/b"]`),
			"HostConfig.Binds[1]", "/opt", set("container", "allowed_bind_roots", "/opt")},
		{"mount outside roots", "POST", "/containers/create", nil, create(`"Mounts":[{"Type":"bind","Source":"/opt","Target":"/x"}]`),
			"HostConfig.Mounts[0].Source", "/opt", set("container", "allowed_bind_roots", "/opt")},
		{"bind of /", "POST", "/containers/create", nil, create(`"Binds":["/:/host"]`),
			"HostConfig.Binds[0]", "/", never()},
		{"bind with a comma", "POST", "/containers/create", nil, create(`"Binds":["/a,b:/x"]`),
			"HostConfig.Binds[0]", "/a,b", never()},
		{"read-only root mounted rw", "POST", "/containers/create", nil, create(`"Binds":["/srv/ro/x:/x"]`),
			"HostConfig.Binds[0]", "/srv/ro/x", set("container", "allowed_bind_roots", "/srv/ro/x")},
		{"daemon socket", "POST", "/containers/create", nil, create(`"Binds":["/var/run/docker.sock:/s"]`),
			"HostConfig.Binds[0]", "/var/run/docker.sock", set("container", "daemon_socket_bind", "rewrite")},
		{"parent of the daemon socket", "POST", "/containers/create", nil, create(`"Binds":["/var/run:/r"]`),
			"HostConfig.Binds[0]", "/var/run", never()},
		{"broker sockets", "POST", "/containers/create", nil, create(`"Binds":["/run/sockguard:/r"]`),
			"HostConfig.Binds[0]", "/run/sockguard", never()},
		{"capability", "POST", "/containers/create", nil, create(`"CapAdd":["cap_sys_admin"]`),
			"HostConfig.CapAdd", "SYS_ADMIN", set("container", "allowed_capabilities", "SYS_ADMIN")},
		{"not a capability", "POST", "/containers/create", nil, create(`"CapAdd":["FLY"]`),
			"HostConfig.CapAdd", "FLY", never()},
		{"all capabilities", "POST", "/containers/create", nil, create(`"CapAdd":["ALL"]`),
			"HostConfig.CapAdd", "", never()},
		{"runtime", "POST", "/containers/create", nil, create(`"Runtime":"kata"`),
			"HostConfig.Runtime", "kata", set("container", "allowed_runtimes", "kata")},
		{"log driver", "POST", "/containers/create", nil, create(`"LogConfig":{"Type":"gelf"}`),
			"HostConfig.LogConfig.Type", "gelf", set("container", "allowed_log_drivers", "gelf")},
		{"host pid", "POST", "/containers/create", nil, create(`"PidMode":"host"`),
			"HostConfig.PidMode", "", never()},
		{"device", "POST", "/containers/create", nil, create(`"Devices":[{"PathOnHost":"/dev/sda"}]`),
			"HostConfig.Devices", "", never()},
		{"volumes from", "POST", "/containers/create", nil, create(`"VolumesFrom":["other"]`),
			"HostConfig.VolumesFrom", "", set("container", "allow_volumes_from", "true")},
		{"env is never a value", "POST", "/containers/create", nil, `{"Image":"b","Env":["A=s3cr3t"],"HostConfig":{"Privileged":true}}`,
			"HostConfig.Privileged", "", set("container", "allow_privileged", "true")},
		{"exec privileged", "POST", "/containers/abc/exec", nil, `{"Cmd":["sh"],"Privileged":true}`,
			"Privileged", "", set("exec", "allow_privileged", "true")},
		{"registry", "POST", "/images/create?fromImage=Quay.io/o/app&tag=1", nil, "",
			"query fromImage", "quay.io", set("images", "allowed_registries", "quay.io")},
		{"login with credentials in the address", "POST", "/auth", nil, `{"username":"u","password":"p","serveraddress":"https://u:s3cr3t@evil.example"}`,
			"serveraddress", "", never()},
		{"login", "POST", "/auth", nil, `{"username":"u","password":"p","serveraddress":"https://evil.example/v1/"}`,
			"serveraddress", "evil.example", set("images", "allowed_registries", "evil.example")},
		{"import", "POST", "/images/create?fromSrc=-", nil, "",
			"query fromSrc", "", set("images", "allow_import", "true")},
		{"volume driver", "POST", "/volumes/create", nil, `{"Name":"v","Driver":"nfs-plugin"}`,
			"Driver", "nfs-plugin", set("volumes", "allowed_drivers", "nfs-plugin")},
		{"network driver", "POST", "/networks/create", nil, `{"Name":"n","Driver":"macvlan"}`,
			"Driver", "macvlan", set("network", "allowed_drivers", "macvlan")},
		{"network options", "POST", "/networks/create", nil, `{"Name":"n","Options":{"a":"b"}}`,
			"Options", "", set("network", "allow_options", "true")},
		{"unknown field", "POST", "/containers/create", nil, `{"Image":"b","Sneaky":1}`,
			"Sneaky", "", never()},
		{"refused field", "POST", "/containers/create", nil, create(`"Sysctls":{"net.ipv4.ip_forward":"1"}`),
			`HostConfig.Sysctls["net.ipv4.ip_forward"]`, "", never()},
		{"malformed", "POST", "/containers/create", nil, `{"Image":`, "", "", never()},
		{"default deny", "POST", "/containers/3f2a/export", nil, "",
			"", "", Allowance{Kind: AllowanceRule, Method: "POST", PathGlob: "/containers/*/export"}},
		{"deny rule", "POST", "/build?t=x", nil, "",
			"", "", Allowance{Kind: AllowanceRule, Method: "POST", PathGlob: "/build"}},
		{"default deny of /", "GET", "/", nil, "",
			"", "", Allowance{Kind: AllowanceRule, Method: "GET", PathGlob: "/"}},
		{"image with a slash", "DELETE", "/images/ghcr.io/o/app", nil, "",
			"", "", Allowance{Kind: AllowanceRule, Method: "DELETE", PathGlob: "/images/**"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body []byte
			if tt.body != "" {
				body = []byte(tt.body)
			}
			_, d := pol.Evaluate(tt.method, tt.target, tt.header, body)
			if d.Allow {
				t.Fatalf("allowed: %+v", d)
			}
			checkSubject(t, d)
			want := Subject{Field: tt.field, Value: tt.value, Allow: tt.allow}
			if d.Subject != want {
				t.Fatalf("subject\n got %+v\nwant %+v\n(reason %q)", d.Subject, want, d.Reason)
			}
			if strings.Contains(d.Subject.Value, "s3cr3t") || strings.Contains(d.Reason, "s3cr3t") {
				t.Fatalf("the decision keeps a secret: %q %+v", d.Reason, d.Subject)
			}
		})
	}
}

// TestTooLargeSubject: the body cap names its setting, with no value (the
// read stopped at the cap, so the needed size is not known).
func TestTooLargeSubject(t *testing.T) {
	d := TooLarge(10)
	checkSubject(t, d)
	if d.Subject.Allow != setting("", "max_body_bytes", "") {
		t.Fatalf("%+v", d.Subject)
	}
}

// BenchmarkDecideRefusedBuild: a rule refusal with its subject (the
// refused-/build flood of the bench) allocates nothing.

func BenchmarkDecideRefusedBuild(b *testing.B) {
	pol := mustPolicy(b, "github-actions-runner", Overrides{})
	r, err := Canonicalize("POST", "/v1.41/build", "t=x")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if d := pol.Decide(r); d.Allow {
			b.Fatal("allowed")
		}
	}
}
