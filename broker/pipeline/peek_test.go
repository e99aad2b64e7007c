package pipeline

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/sockguard/sockguard/policy"
)

// fakePeek knows some references without the daemon, as the owner cache
// and the name index do.
type fakePeek struct {
	known map[string]bool // ref → known (answered as fakeOwners would)
	o     *fakeOwners
	calls int
}

func (f *fakePeek) Peek(ctx context.Context, k policy.ObjectKind, ref string) (string, bool, error) {
	f.calls++
	if !f.known[ref] {
		return "", false, nil
	}
	calls := f.o.calls
	id, err := f.o.Resolve(ctx, k, ref)
	f.o.calls = calls // the peek's answer is not an upstream lookup
	return id, true, err
}

func TestRefuseAnyObjectPeeks(t *testing.T) {
	pol := runner(t)
	known := map[string]bool{"web": true, "victim": true, "gone": true}
	tests := []struct {
		name    string
		audit   bool
		method  string
		target  string
		outcome Outcome
		status  int
		code    policy.ReasonCode
		path    string // the judged request's path
		message string
		peeks   int // Peek asked
		lookups int // Resolve asked (upstream)
	}{
		{name: "own container by name: the rules' refusal, no lookup", method: "GET", target: "/v1.41/containers/web/export",
			outcome: Refuse, status: http.StatusForbidden, code: policy.ReasonRuleDenied, path: "/containers/" + idWeb + "/export", peeks: 1},
		{name: "another tenant's: dockerd's missing answer, a denial, no lookup", method: "GET", target: "/v1.41/containers/victim/export",
			outcome: Refuse, status: http.StatusNotFound, code: policy.ReasonForeignObject, message: "No such container: victim", peeks: 1},
		{name: "missing: the same answer, not a denial, no lookup", method: "GET", target: "/v1.41/containers/gone/export",
			outcome: NotFound, status: http.StatusNotFound, message: "No such container: gone", peeks: 1},
		{name: "cp (archive) of the own container", method: "HEAD", target: "/v1.41/containers/web/archive?path=/etc",
			outcome: Refuse, status: http.StatusForbidden, code: policy.ReasonRuleDenied, peeks: 1},
		{name: "not known: resolved upstream as before", method: "GET", target: "/v1.41/containers/abc123/export",
			outcome: NotFound, status: http.StatusNotFound, message: "No such container: abc123", peeks: 1, lookups: 1},
		{name: "audit mode forwards: resolved upstream, no peek", audit: true, method: "GET", target: "/v1.41/containers/web/export",
			outcome: Forward, path: "/containers/" + idWeb + "/export", lookups: 1},
		{name: "allowed route: no peek", method: "GET", target: "/v1.41/containers/web/json",
			outcome: Forward, path: "/containers/" + idWeb + "/json", lookups: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := world{owners: newOwners(), images: &fakeImages{}, pins: &fakePins{}}
			pk := &fakePeek{known: known, o: w.owners}
			st := w.stages()
			st.Peek = pk
			path, query, _ := strings.Cut(tc.target, "?")
			v := Judge(context.Background(), In{Tenant: Tenant{ID: "t1", Policy: pol, Audit: tc.audit},
				Method: tc.method, Path: path, RawQuery: query, Header: http.Header{}}, st)
			if v.Outcome != tc.outcome {
				t.Fatalf("outcome %v (%+v), want %v", v.Outcome, v.Decision, tc.outcome)
			}
			if tc.status != 0 && v.Decision.Status != tc.status {
				t.Errorf("status %d, want %d", v.Decision.Status, tc.status)
			}
			if tc.code != 0 && v.Decision.Code != tc.code {
				t.Errorf("code %v, want %v", v.Decision.Code, tc.code)
			}
			if tc.path != "" && v.Req.Path != tc.path {
				t.Errorf("path %q, want %q", v.Req.Path, tc.path)
			}
			if tc.message != "" && v.Message != tc.message {
				t.Errorf("message %q, want %q", v.Message, tc.message)
			}
			if pk.calls != tc.peeks || w.owners.calls != tc.lookups {
				t.Errorf("peeks %d, lookups %d; want %d, %d", pk.calls, w.owners.calls, tc.peeks, tc.lookups)
			}
		})
	}
}
