package policy

import (
	"net/http"
	"strings"
	"testing"
)

// TestRegistriesOnTheBrokersHost: "*" and "*.domain" never cover a
// registry on the broker's own host (dockerd would reach it from the host's
// network namespace, over plain HTTP for 127.0.0.0/8); an exact entry does.
func TestRegistriesOnTheBrokersHost(t *testing.T) {
	runner := mustPolicy(t, "github-actions-runner", Overrides{})
	src := `name: listed
rules: [{method: POST, path: [/images/create, /auth]}]
images: {allowed_registries: ["*", "127.0.0.1:5000", "*.localhost", "*.example.com"]}
`
	pre, err := ParsePreset("listed", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	listed, err := NewPolicy(pre, Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		domain        string
		runner, extra bool // allowed by the runner preset ("*"), by "listed"
	}{
		{"ghcr.io", true, true},
		{"docker.io", true, true},
		{"1.2.3.4:5000", true, true},
		{"registry.example.com:443", true, true},
		{"127.0.0.1:5000", false, true},
		{"127.0.0.1:5001", false, false},
		{"127.0.0.2", false, false},
		{"localhost:5000", false, false},
		{"LocalHost", false, false},
		{"reg.localhost", false, false}, // "*.localhost" is a wildcard too
		{"127.1:5000", false, false},
		{"2130706433", false, false},
		{"0x7f.1", false, false},
		{"0177.0.0.1", false, false},
		{"[::1]:5000", false, false},
		{"[::ffff:127.0.0.1]:5000", false, false},
		{"169.254.169.254", false, false},
		{"[fe80::1]:5000", false, false},
		{"0.0.0.0:5000", false, false},
		{"[::]:5000", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.domain, func(t *testing.T) {
			if got := runner.registryAllowed(tt.domain); got != tt.runner {
				t.Errorf("runner preset allows %s: %v, want %v", tt.domain, got, tt.runner)
			}
			if got := listed.registryAllowed(tt.domain); got != tt.extra {
				t.Errorf("listing preset allows %s: %v, want %v", tt.domain, got, tt.extra)
			}
		})
	}
}

// TestInspectAuth: a login is judged on the registry it names, never on
// (or quoting) its credentials, and an ambiguous body is refused.
func TestInspectAuth(t *testing.T) {
	pol := mustPolicy(t, "github-actions-runner", Overrides{})
	const secret = "hunter2-secret"
	req := mustReq(http.MethodPost, "/auth")
	tests := []struct {
		name, body string
		allow      bool
		code       ReasonCode
	}{
		{"docker hub by default", `{"username":"u","password":"` + secret + `"}`, true, 0},
		{"ghcr", `{"username":"u","password":"` + secret + `","serveraddress":"ghcr.io"}`, true, 0},
		{"hub as a URL", `{"password":"` + secret + `","serveraddress":"https://index.docker.io/v1/"}`, true, 0},
		{"loopback", `{"password":"` + secret + `","serveraddress":"127.0.0.1:5000"}`, false, ReasonBodyDenied},
		{"loopback as a URL", `{"password":"` + secret + `","serveraddress":"http://localhost:5000/v2/"}`, false, ReasonBodyDenied},
		{"link-local", `{"password":"` + secret + `","serveraddress":"169.254.169.254"}`, false, ReasonBodyDenied},
		{"two server addresses", `{"serveraddress":"ghcr.io","ServerAddress":"127.0.0.1:1","password":"` + secret + `"}`, false, ReasonMalformed},
		{"not an object", `["` + secret + `"]`, false, ReasonMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, _ := pol.InspectBody(req, http.Header{}, []byte(tt.body))
			checkSubject(t, d)
			if d.Allow != tt.allow || (!tt.allow && d.Code != tt.code) {
				t.Fatalf("decision %+v, want allow=%v code=%v", d, tt.allow, tt.code)
			}
			if strings.Contains(d.Reason, secret) {
				t.Fatalf("the reason quotes the password: %s", d.Reason)
			}
			if dom, ok := RequestRegistry(req, []byte(tt.body)); tt.allow && (!ok || dom == "") {
				t.Fatalf("RequestRegistry = %q, %v", dom, ok)
			}
		})
	}
}
