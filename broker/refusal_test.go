package broker

import (
	"net/http"
	"strings"
	"testing"

	"github.com/sockguard/sockguard/policy"
)

func TestRefusalMessage(t *testing.T) {
	tn := &Tenant{Name: "runner-7", Preset: "github-actions-runner"}
	rd := policy.ReasonRuleDenied
	tests := []struct {
		name     string
		method   string
		path     string
		code     policy.ReasonCode
		wantHint string // "" : no hint at all
	}{
		{"docker cp out", http.MethodGet, "/containers/abc/archive", rd, "does not allow `docker cp`"},
		{"docker cp in", http.MethodPut, "/containers/abc/archive", rd, "does not allow `docker cp`"},
		{"build", http.MethodPost, "/build", rd, "`docker build`"},
		{"exec", http.MethodPost, "/containers/abc/exec", rd, "`docker exec`"},
		{"commit", http.MethodPost, "/commit", rd, "`docker commit`"},
		{"other route", http.MethodPost, "/swarm/init", rd, "plugin or swarm"},
		{"unknown route", http.MethodGet, "/session", rd, "this Docker API call (GET /session)"},
		{"privileged", http.MethodPost, "/containers/create", policy.ReasonPrivileged, "privileged containers"},
		{"host bind", http.MethodPost, "/containers/create", policy.ReasonBindMount, "mounting this host path"},
		{"host namespace", http.MethodPost, "/containers/create", policy.ReasonHostNamespace, "host's namespaces"},
		{"escalation", http.MethodPost, "/containers/create", policy.ReasonEscalation, "capabilities"},
		{"malformed", http.MethodGet, "/containers/json", policy.ReasonMalformed, ""},
		{"foreign", http.MethodGet, "/containers/x/json", policy.ReasonForeignObject, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := policy.Decision{Code: tc.code, Reason: "REASON"}
			msg := refusalMessage(tn, "abc-1", mustReq(t, tc.method, tc.path), d)
			if !strings.HasPrefix(msg, "sockguard: denied by policy: REASON [socket runner-7, preset github-actions-runner, request abc-1]") {
				t.Fatalf("message %q", msg)
			}
			if tc.wantHint == "" {
				if strings.Contains(msg, "ask your CI admin") {
					t.Fatalf("hint where none is wanted: %q", msg)
				}
				return
			}
			if !strings.Contains(msg, tc.wantHint) || !strings.HasSuffix(msg, "; ask your CI admin (request abc-1)") {
				t.Fatalf("message %q lacks %q", msg, tc.wantHint)
			}
		})
	}
}
