package policy

import (
	"net/http"
	"strings"
	"testing"
)

type decideCase struct {
	name     string
	method   string
	target   string
	allow    bool
	rule     string // substring of Decision.Rule
	reason   string // substring of Decision.Reason
	wantCode ReasonCode
	status   int // of a denial; 0 means 403
}

func runDecide(t *testing.T, pol *Policy, tests []decideCase) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, rq := goPath(t, tc.target)
			req, err := Canonicalize(tc.method, p, rq)
			if err != nil {
				t.Fatalf("Canonicalize: %v", err)
			}
			d := pol.Decide(req)
			checkSubject(t, d)
			if d.Allow != tc.allow {
				t.Fatalf("%s %s: Allow=%v want %v (%+v)", tc.method, tc.target, d.Allow, tc.allow, d)
			}
			wantStatus := tc.status
			if wantStatus == 0 {
				wantStatus = http.StatusForbidden
			}
			if !d.Allow && (d.Status != wantStatus || d.Code != tc.wantCode) {
				t.Fatalf("denial status %d code %v, want %d %v", d.Status, d.Code, wantStatus, tc.wantCode)
			}
			if !strings.Contains(d.Rule, tc.rule) || !strings.Contains(d.Reason, tc.reason) {
				t.Fatalf("rule %q reason %q; want %q / %q", d.Rule, d.Reason, tc.rule, tc.reason)
			}
		})
	}
}

func TestDecideRunner(t *testing.T) {
	pol := mustPolicy(t, "github-actions-runner", Overrides{})
	const rd = ReasonRuleDenied
	runDecide(t, pol, []decideCase{
		{name: "ping", method: "GET", target: "/_ping", allow: true, rule: "allow GET|HEAD /_ping"},
		{name: "ping head", method: "HEAD", target: "/v1.41/_ping", allow: true},
		{name: "ping lower method", method: "get", target: "/_ping", allow: true},
		{name: "ping post", method: "POST", target: "/_ping", rule: "default deny", reason: "no rule allows POST /_ping", wantCode: rd},
		{name: "version", method: "GET", target: "/v1.43/version", allow: true},
		{name: "info", method: "GET", target: "/info", allow: true},
		{name: "events", method: "GET", target: "/events?filters=%7B%7D", allow: true},
		{name: "containers list", method: "GET", target: "/v1.41/containers/json?all=1", allow: true},
		{name: "container inspect", method: "GET", target: "/containers/abc/json", allow: true},
		{name: "container logs", method: "GET", target: "/containers/abc/logs?follow=1", allow: true},
		{name: "container stats", method: "GET", target: "/containers/abc/stats", allow: true},
		{name: "container top", method: "GET", target: "/containers/abc/top", allow: true},
		{name: "container create", method: "POST", target: "/v1.41/containers/create?name=job", allow: true},
		{name: "container start", method: "POST", target: "/containers/abc/start", allow: true},
		{name: "container stop", method: "POST", target: "/containers/abc/stop", allow: true},
		{name: "container kill", method: "POST", target: "/containers/abc/kill", allow: true},
		{name: "container restart", method: "POST", target: "/containers/abc/restart", allow: true},
		{name: "container wait", method: "POST", target: "/containers/abc/wait", allow: true},
		{name: "container attach", method: "POST", target: "/containers/abc/attach?stream=1", allow: true},
		{name: "container resize", method: "POST", target: "/containers/abc/resize", allow: true},
		{name: "container rename", method: "POST", target: "/containers/abc/rename", allow: true},
		{name: "container update", method: "POST", target: "/containers/abc/update", allow: true},
		{name: "container delete", method: "DELETE", target: "/containers/abc?force=1", allow: true},
		{name: "container prune", method: "POST", target: "/containers/prune", allow: true},
		{name: "exec create", method: "POST", target: "/containers/abc/exec", allow: true},
		{name: "exec start", method: "POST", target: "/exec/123/start", allow: true},
		{name: "exec resize", method: "POST", target: "/exec/123/resize", allow: true},
		{name: "exec inspect", method: "GET", target: "/exec/123/json", allow: true},
		{name: "images list", method: "GET", target: "/images/json", allow: true},
		{name: "image inspect", method: "GET", target: "/images/alpine/json", allow: true},
		{name: "image inspect slashes", method: "GET", target: "/images/ghcr.io/org/app:1/json", allow: true},
		{name: "image pull", method: "POST", target: "/images/create?fromImage=alpine&tag=3", allow: true},
		{name: "networks", method: "GET", target: "/networks", allow: true},
		{name: "network inspect", method: "GET", target: "/networks/n1", allow: true},
		{name: "network create", method: "POST", target: "/networks/create", allow: true},
		{name: "network connect", method: "POST", target: "/networks/n1/connect", allow: true},
		{name: "network disconnect", method: "POST", target: "/networks/n1/disconnect", allow: true},
		{name: "network delete", method: "DELETE", target: "/networks/n1", allow: true},
		{name: "network prune", method: "POST", target: "/networks/prune", allow: true},
		{name: "volumes", method: "GET", target: "/volumes", allow: true},
		{name: "volume inspect", method: "GET", target: "/volumes/v1", allow: true},
		{name: "volume create", method: "POST", target: "/volumes/create", allow: true},
		{name: "volume delete", method: "DELETE", target: "/volumes/v1", allow: true},
		{name: "volume prune", method: "POST", target: "/volumes/prune", allow: true},

		{name: "build", method: "POST", target: "/v1.41/build?t=x", rule: "rules[0]: deny POST /build", reason: "image builds are denied", wantCode: rd},
		{name: "build lower method", method: "post", target: "/build", rule: "deny POST /build", wantCode: rd},
		{name: "build via dotdot", method: "POST", target: "/containers/../build", rule: "deny POST /build", wantCode: rd},
		{name: "swarm init", method: "POST", target: "/swarm/init", reason: "swarm", wantCode: rd},
		{name: "swarm", method: "GET", target: "/swarm", reason: "swarm", wantCode: rd},
		{name: "services", method: "GET", target: "/services", reason: "swarm", wantCode: rd},
		{name: "services create", method: "POST", target: "/services/create", reason: "swarm", wantCode: rd},
		{name: "nodes", method: "GET", target: "/nodes", reason: "swarm", wantCode: rd},
		{name: "node update", method: "POST", target: "/nodes/x/update", reason: "swarm", wantCode: rd},
		{name: "tasks", method: "GET", target: "/tasks", reason: "swarm", wantCode: rd},
		{name: "secrets", method: "POST", target: "/secrets/create", reason: "swarm", wantCode: rd},
		{name: "configs", method: "GET", target: "/configs", reason: "swarm", wantCode: rd},
		{name: "plugins", method: "POST", target: "/plugins/pull", reason: "plugins", wantCode: rd},
		{name: "image export", method: "GET", target: "/images/get?names=alpine", reason: "image export", wantCode: rd},
		{name: "image export one", method: "GET", target: "/images/alpine/get", reason: "image export", wantCode: rd},
		{name: "image export slashes", method: "GET", target: "/images/ghcr.io/a/b/get", reason: "image export", wantCode: rd},
		{name: "container export", method: "GET", target: "/containers/abc/export", reason: "container export", wantCode: rd},
		{name: "archive get", method: "GET", target: "/containers/abc/archive?path=/etc", reason: "docker cp", wantCode: rd},
		{name: "archive head", method: "HEAD", target: "/containers/abc/archive?path=/etc", reason: "docker cp", wantCode: rd},
		{name: "archive put", method: "PUT", target: "/containers/abc/archive?path=/", reason: "docker cp", wantCode: rd},
		{name: "attach ws", method: "GET", target: "/containers/abc/attach/ws", reason: "websocket", wantCode: rd},
		{name: "commit", method: "POST", target: "/commit?container=abc", reason: "committing", wantCode: rd},
		{name: "session", method: "POST", target: "/session", reason: "BuildKit", wantCode: rd},
		{name: "grpc", method: "POST", target: "/grpc", reason: "BuildKit", wantCode: rd},
		{name: "distribution", method: "GET", target: "/distribution/alpine/json", reason: "distribution", wantCode: rd},
		{name: "image load", method: "POST", target: "/images/load", rule: "default deny", wantCode: rd},
		{name: "plugin enable", method: "POST", target: "/plugins/vieux/sshfs:latest/enable", reason: "managing daemon plugins", wantCode: rd},
		{name: "plugin remove", method: "DELETE", target: "/plugins/x", reason: "managing daemon plugins", wantCode: rd},

		// Tenants share the image cache and own no image.
		{name: "image delete", method: "DELETE", target: "/images/alpine?force=1", rule: "deny DELETE /images/**", reason: "removing images", wantCode: rd},
		{name: "image delete slashes", method: "DELETE", target: "/images/ghcr.io/org/app:1", rule: "deny DELETE /images/**", reason: "removing images", wantCode: rd},
		{name: "image delete by id", method: "DELETE", target: "/images/sha256:0123", reason: "removing images", wantCode: rd},
		{name: "image tag", method: "POST", target: "/images/ghcr.io/org/app/tag?repo=x", reason: "tagging images", wantCode: rd},
		{name: "image tag one segment", method: "POST", target: "/v1.41/images/alpine/tag?repo=x", reason: "tagging images", wantCode: rd},
		{name: "image push", method: "POST", target: "/images/alpine/push", reason: "pushing images", wantCode: rd},
		{name: "image push slashes", method: "POST", target: "/images/ghcr.io/org/app/push?tag=1", reason: "pushing images", wantCode: rd},
		{name: "image prune", method: "POST", target: "/images/prune", reason: "pruning images", wantCode: rd},
		{name: "image named tag still pulls", method: "POST", target: "/images/create?fromImage=org/tag", allow: true},

		// docker inspect NAME probes: 404 so the CLI moves on to the next type.
		{name: "inspect probe plugin", method: "GET", target: "/plugins/foo/json", reason: "plugins", wantCode: rd, status: 404},
		{name: "inspect probe plugin slashes", method: "GET", target: "/v1.41/plugins/vieux/sshfs:latest/json", reason: "plugins", wantCode: rd, status: 404},
		{name: "inspect probe node", method: "GET", target: "/nodes/x", reason: "swarm", wantCode: rd, status: 404},
		{name: "inspect probe service", method: "GET", target: "/services/x?insertDefaults=true", reason: "swarm", wantCode: rd, status: 404},
		{name: "inspect probe task", method: "GET", target: "/tasks/x", reason: "swarm", wantCode: rd, status: 404},
		{name: "inspect probe secret", method: "GET", target: "/secrets/x", reason: "swarm", wantCode: rd, status: 404},
		{name: "inspect probe config", method: "GET", target: "/configs/x", reason: "swarm", wantCode: rd, status: 404},
		{name: "inspect probe container slashes", method: "GET", target: "/containers/ghcr.io/org/app:1/json", reason: "slash", wantCode: rd, status: 404},
		{name: "inspect probe network slashes", method: "GET", target: "/networks/ghcr.io/org/app:1", reason: "slash", wantCode: rd, status: 404},
		{name: "inspect probe volume slashes", method: "GET", target: "/volumes/ghcr.io/org/app:1", reason: "slash", wantCode: rd, status: 404},
		{name: "container export stays 403", method: "GET", target: "/containers/abc/export", reason: "container export", wantCode: rd},
		{name: "system df", method: "GET", target: "/system/df", rule: "default deny", wantCode: rd},
		{name: "upper case path", method: "GET", target: "/CONTAINERS/json", rule: "default deny", wantCode: rd},
		{name: "double encoded dots", method: "GET", target: "/containers/%252e%252e/json", allow: true},
		{name: "double encoded dots build", method: "POST", target: "/containers/%252e%252e/%252e%252e/build", rule: "default deny", wantCode: rd},
		{name: "container name with slash", method: "GET", target: "/containers/a%2Fb/json", rule: "deny GET /containers/**/json", wantCode: rd, status: 404},
		{name: "old api version", method: "POST", target: "/v1.23/containers/abc/start", rule: "min_api_version", reason: "1.23", wantCode: rd},
		{name: "old api version major", method: "GET", target: "/v1/_ping", rule: "min_api_version", wantCode: rd},
		{name: "new api version", method: "GET", target: "/v1.100/_ping", allow: true},
	})
}

func TestDecideReadOnly(t *testing.T) {
	pol := mustPolicy(t, "read-only", Overrides{})
	const rd = ReasonRuleDenied
	runDecide(t, pol, []decideCase{
		{name: "ping", method: "GET", target: "/_ping", allow: true},
		{name: "ping head", method: "HEAD", target: "/_ping", allow: true},
		{name: "version", method: "GET", target: "/version", allow: true},
		{name: "info", method: "GET", target: "/info", allow: true},
		{name: "events", method: "GET", target: "/events", allow: true},
		{name: "containers", method: "GET", target: "/v1.41/containers/json", allow: true},
		{name: "container inspect", method: "GET", target: "/containers/x/json", allow: true},
		{name: "logs", method: "GET", target: "/containers/x/logs", allow: true},
		{name: "stats", method: "GET", target: "/containers/x/stats", allow: true},
		{name: "top", method: "GET", target: "/containers/x/top", allow: true},
		{name: "images", method: "GET", target: "/images/json", allow: true},
		{name: "image inspect", method: "GET", target: "/images/ghcr.io/x/y/json", allow: true},
		{name: "networks", method: "GET", target: "/networks", allow: true},
		{name: "volumes", method: "GET", target: "/volumes/v", allow: true},
		{name: "create", method: "POST", target: "/containers/create", reason: "read-only preset denies every write", wantCode: rd},
		{name: "inspect probe plugin", method: "GET", target: "/plugins/x/json", reason: "read-only", wantCode: rd, status: 404},
		{name: "inspect probe secret", method: "GET", target: "/secrets/x", reason: "read-only", wantCode: rd, status: 404},
		{name: "inspect probe container slashes", method: "GET", target: "/containers/a/b/json", reason: "read-only", wantCode: rd, status: 404},
		{name: "plugin write stays 403", method: "POST", target: "/plugins/pull", reason: "every write", wantCode: rd},
		{name: "start", method: "POST", target: "/containers/x/start", reason: "read-only", wantCode: rd},
		{name: "delete", method: "DELETE", target: "/containers/x", reason: "read-only", wantCode: rd},
		{name: "put archive", method: "PUT", target: "/containers/x/archive", reason: "read-only", wantCode: rd},
		{name: "exec", method: "POST", target: "/containers/x/exec", reason: "read-only", wantCode: rd},
		{name: "pull", method: "POST", target: "/images/create?fromImage=alpine", reason: "read-only", wantCode: rd},
		{name: "build", method: "POST", target: "/build", reason: "read-only", wantCode: rd},
		{name: "export", method: "GET", target: "/containers/x/export", rule: "default deny", reason: "no rule allows GET /containers/x/export", wantCode: rd},
		{name: "archive get", method: "GET", target: "/containers/x/archive", rule: "default deny", wantCode: rd},
		{name: "image save", method: "GET", target: "/images/get", rule: "default deny", wantCode: rd},
	})
}

func TestDecideBuildQuery(t *testing.T) {
	src := `rules:
  - {method: POST, path: /build}
`
	p, err := ParsePreset("builder", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	pol, err := NewPolicy(p, Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	runDecide(t, pol, []decideCase{
		{name: "plain build", method: "POST", target: "/build?t=app", allow: true},
		{name: "remote context", method: "POST", target: "/build?remote=https://evil.example/ctx.tar", rule: "build.allow_remote_context", wantCode: ReasonBodyDenied},
		{name: "host network", method: "POST", target: "/build?networkmode=host", rule: "build.allow_host_network", wantCode: ReasonHostNamespace},
		{name: "host network case", method: "POST", target: "/build?networkmode=HOST", rule: "build.allow_host_network", wantCode: ReasonHostNamespace},
		{name: "deny rule default reason", method: "GET", target: "/x", rule: "default deny", reason: "no rule allows GET /x", wantCode: ReasonRuleDenied},
	})
}

func TestDecideRuleReason(t *testing.T) {
	p, err := ParsePreset("p", []byte("rules:\n  - {method: \"*\", path: /secret/**, action: deny}\n"))
	if err != nil {
		t.Fatal(err)
	}
	pol, _ := NewPolicy(p, Overrides{})
	runDecide(t, pol, []decideCase{
		{name: "deny without reason", method: "PATCH", target: "/secret/a", rule: "rules[0]: deny * /secret/**", reason: "rule denies PATCH /secret/a", wantCode: ReasonRuleDenied},
	})
}

func TestDecideRefusesNonCanonical(t *testing.T) {
	pol := mustPolicy(t, "github-actions-runner", Overrides{})
	// Only the zero Request can be non-canonical: the fields are unexported.
	if d := pol.Decide(Request{}); d.Allow || d.Status != http.StatusBadRequest || d.Code != ReasonMalformed {
		t.Fatalf("Decide(zero) = %+v; want 400 malformed", d)
	}
	if _, ok := pol.DecideAnyObject(Request{}); ok {
		t.Fatal("DecideAnyObject(zero) claims a decision")
	}
	// A request whose exported copies were changed is not judged.
	for name, tamper := range map[string]func(*Request){
		"path":    func(r *Request) { r.Path = "/_ping" },
		"method":  func(r *Request) { r.Method = "GET" },
		"version": func(r *Request) { r.Version = "" },
		"query":   func(r *Request) { r.RawQuery = "" },
	} {
		r := mustReq("POST", "/v1.41/containers/x/kill?signal=KILL")
		tamper(&r)
		if d := pol.Decide(r); d.Allow || d.Code != ReasonMalformed {
			t.Errorf("%s changed: Decide = %+v; want malformed", name, d)
		}
		if _, ok := pol.DecideAnyObject(r); ok {
			t.Errorf("%s changed: DecideAnyObject claims a decision", name)
		}
	}
}

func BenchmarkDecide(b *testing.B) {
	pol := mustPolicy(b, "github-actions-runner", Overrides{})
	reqs := []Request{}
	for _, target := range []string{"/v1.41/_ping", "/v1.41/containers/abc/json", "/v1.41/images/ghcr.io/org/app/json", "/v1.41/volumes/prune", "/v1.41/system/df"} {
		p, rq := goPath(b, target)
		r, err := Canonicalize("GET", p, rq)
		if err != nil {
			b.Fatal(err)
		}
		reqs = append(reqs, r)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		_ = pol.Decide(reqs[i%len(reqs)])
	}
}

func BenchmarkCanonicalizeDecide(b *testing.B) {
	pol := mustPolicy(b, "github-actions-runner", Overrides{})
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		r, _ := Canonicalize("POST", "/v1.41/containers/abc/start", "")
		_ = pol.Decide(r)
	}
}

func TestVersionLess(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"1.23", "1.24", true},
		{"1.24", "1.24", false},
		{"1.9", "1.24", true},
		{"1.100", "1.24", false},
		{"1", "1.24", true},
		{"2", "1.24", false},
		{"1.24.0", "1.24", false},
		{"01.024", "1.24", false},
		{"1.23.9", "1.24", true},
	}
	for _, tc := range tests {
		t.Run(tc.a+"<"+tc.b, func(t *testing.T) {
			if got := versionLess(tc.a, tc.b); got != tc.want {
				t.Fatalf("versionLess(%q, %q) = %v", tc.a, tc.b, got)
			}
		})
	}
}

func TestFormBody(t *testing.T) {
	tests := []struct {
		ct   []string
		want bool
	}{
		{nil, false},
		{[]string{"application/json"}, false},
		{[]string{"application/x-tar"}, false},
		{[]string{"application/x-www-form-urlencoded"}, true},
		{[]string{"Application/X-WWW-Form-Urlencoded; charset=utf-8"}, true},
		{[]string{"application/x-www-form-urlencoded; bad"}, true},
		{[]string{"multipart/form-data; boundary=x"}, true},
		{[]string{"application/json", "application/x-www-form-urlencoded"}, true},
	}
	for _, tt := range tests {
		h := http.Header{"Content-Type": tt.ct}
		if got := FormBody(h); got != tt.want {
			t.Errorf("FormBody(%q) = %v, want %v", tt.ct, got, tt.want)
		}
	}
}
