package pipeline

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/sockguard/sockguard/policy"
)

type fakeResolver map[string][]string

func (f fakeResolver) LookupIPAddr(_ context.Context, host string) ([]net.IPAddr, error) {
	ips, ok := f[host]
	if !ok {
		return nil, errors.New("no such host")
	}
	out := make([]net.IPAddr, len(ips))
	for i, ip := range ips {
		out[i] = net.IPAddr{IP: net.ParseIP(ip)}
	}
	return out, nil
}

// TestCheckRegistryHost: a pull or login whose registry NAME resolves to
// the broker's own host or link is refused (dockerd would reach it from
// the host's network namespace); a name that does not resolve, a public
// one, an IP literal (judged by policy) and an exactly listed registry are
// not looked at further.
func TestCheckRegistryHost(t *testing.T) {
	cat, err := policy.BuiltinCatalog()
	if err != nil {
		t.Fatal(err)
	}
	pre, err := cat.Get("github-actions-runner")
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.NewPolicy(pre, policy.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	res := fakeResolver{
		"ghcr.io":           {"140.82.112.33"},
		"rebind.example":    {"140.82.112.33", "127.0.0.1"},
		"metadata.example":  {"169.254.169.254"},
		"v6loop.example":    {"::1"},
		"internal.example":  {"10.1.2.3"},
		"unspecified.local": {"0.0.0.0"},
	}
	pull := func(img string) policy.Request {
		return mustReq(t, http.MethodPost, "/images/create?"+url.Values{"fromImage": {img}}.Encode())
	}
	login := mustReq(t, http.MethodPost, "/auth")
	tests := []struct {
		name string
		req  policy.Request
		body string
		ok   bool
	}{
		{"public registry", pull("ghcr.io/o/app"), "", true},
		{"one of the addresses is loopback", pull("rebind.example/app"), "", false},
		{"metadata service", pull("metadata.example:80/app"), "", false},
		{"IPv6 loopback", pull("v6loop.example/app"), "", false},
		{"unspecified", pull("unspecified.local/app"), "", false},
		{"private network stays the operator's business", pull("internal.example/app"), "", true},
		{"does not resolve", pull("nosuch.invalid/app"), "", true},
		{"docker hub", pull("busybox"), "", true},
		{"login", login, `{"serveraddress":"rebind.example","password":"x"}`, false},
		{"login to hub", login, `{"password":"x"}`, true},
		{"not a pull", mustReq(t, http.MethodGet, "/_ping"), "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, ok, _ := checkRegistryHost(context.Background(), res, pol, tt.req, []byte(tt.body))
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v (%+v)", ok, tt.ok, d)
			}
			if !ok && (d.Status != http.StatusForbidden || d.Allow || d.Reason == "") {
				t.Fatalf("refusal %+v", d)
			}
		})
	}
}

// mustReq canonicalizes method and target (path?query).
func mustReq(t testing.TB, method, target string) policy.Request {
	t.Helper()
	p, q, _ := strings.Cut(target, "?")
	req, err := policy.Canonicalize(method, p, q)
	if err != nil {
		t.Fatal(err)
	}
	return req
}
