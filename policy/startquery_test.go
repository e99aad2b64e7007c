package policy

import (
	"net/http"
	"testing"
)

// TestContainerStartQuery: a container start forwards only detachKeys;
// checkpoint-dir (a host directory an experimental dockerd restores from)
// and any other parameter are refused.
func TestContainerStartQuery(t *testing.T) {
	pol := mustPolicy(t, "github-actions-runner", Overrides{})
	tests := []struct {
		query string
		allow bool
	}{
		{"", true},
		{"detachKeys=ctrl-p,ctrl-q", true},
		{"checkpoint=c1&checkpoint-dir=/etc", false},
		{"checkpoint-dir=/var/lib", false},
		{"checkpoint=c1", false},
		{"detachKeys=x&other=1", false},
	}
	for _, tc := range tests {
		req, err := Canonicalize(http.MethodPost, "/v1.41/containers/web/start", tc.query)
		if err != nil {
			t.Fatal(err)
		}
		d, _ := pol.InspectBody(req, http.Header{}, nil)
		if d.Allow != tc.allow {
			t.Errorf("%q: allow %v, want %v (%s)", tc.query, d.Allow, tc.allow, d.Reason)
		}
		if !d.Allow && d.Code != ReasonBodyDenied {
			t.Errorf("%q: code %v", tc.query, d.Code)
		}
	}
}
