package broker

import (
	"context"
	"errors"
	"net/http"
	"testing"

	"github.com/sockguard/sockguard/broker/isolation"
	"github.com/sockguard/sockguard/broker/pipeline"
	"github.com/sockguard/sockguard/policy"
)

// TestPipelineError: every isolation and image error becomes the verdict
// it always got: another tenant's object a refusal in dockerd's words for
// a missing one, a missing object not a denial, ambiguity a refusal in
// the broker's words, anything else the daemon's failure.
func TestPipelineError(t *testing.T) {
	upstream := errors.New("connection refused")
	tests := []struct {
		name    string
		err     error
		refusal bool
		missing bool
		status  int
		code    policy.ReasonCode
		message string // the whole answer, when dockerd's words
	}{
		{"foreign container", &isolation.NoSuchObject{Kind: policy.ObjectContainer, Ref: "web", Foreign: true}, true, false, 404, policy.ReasonForeignObject, "No such container: web"},
		{"foreign container in a body", &isolation.NoSuchObject{Kind: policy.ObjectContainer, Ref: "web", Foreign: true, InBody: true}, true, false, 400, policy.ReasonForeignObject, "No such container: web"},
		{"missing network", &isolation.NoSuchObject{Kind: policy.ObjectNetwork, Ref: "n"}, false, true, 404, 0, "network n not found"},
		{"missing list reference, dockerd's answer", &isolation.NoSuchObject{Kind: policy.ObjectContainer, Ref: "c", AnswerStatus: 400, Answer: "no such container c"}, false, true, 400, 0, "no such container c"},
		{"ambiguous", errAmbiguous("more than one filters parameter"), true, false, 400, policy.ReasonMalformed, ""},
		{"malformed for isolation", isolation.Malformed("more than one filters parameter"), true, false, 400, policy.ReasonMalformed, ""},
		{"name taken", &isolation.NameTaken{Message: "volume name \"v\" is already in use"}, true, false, 409, policy.ReasonForeignObject, "volume name \"v\" is already in use"},
		{"hidden image", &errImageHidden{ref: "r/p:1", msg: "No such image: r/p:1"}, true, false, 404, policy.ReasonForeignObject, "No such image: r/p:1"},
		{"missing image", &errImageMissing{status: 404, msg: "No such image: x"}, false, true, 404, 0, "No such image: x"},
		{"pull refused", &errPullRefused{status: 503, msg: "sockguard: busy"}, true, false, 503, policy.ReasonMalformed, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := pipelineError(tc.err)
			var rf *pipeline.Refusal
			var miss *pipeline.Missing
			switch {
			case tc.refusal:
				if !errors.As(err, &rf) || rf.Decision.Status != tc.status || rf.Decision.Code != tc.code || rf.Decision.Allow || rf.Message != tc.message {
					t.Fatalf("got %#v, want a refusal %d %v %q", err, tc.status, tc.code, tc.message)
				}
			case tc.missing:
				if !errors.As(err, &miss) || miss.Status != tc.status || miss.Message != tc.message {
					t.Fatalf("got %#v, want missing %d %q", err, tc.status, tc.message)
				}
			}
		})
	}
	if pipelineError(nil) != nil {
		t.Fatal("nil is not nil")
	}
	if err := pipelineError(upstream); err != upstream { //nolint:errorlint // the very value, not a wrapper of it
		t.Fatalf("an upstream error became %#v", err)
	}
}

// TestStagesIsolateBodyRefusesUnknownRoutes: a body isolation the broker
// does not know for a route is refused, never forwarded as sent.
func TestStagesIsolateBodyRefusesUnknownRoutes(t *testing.T) {
	// No daemon: refusing must not look anything up.
	s := &tenantStages{iso: isolation.New(nil, nil, "t-a"), tenant: &Tenant{ID: "t-a"}}
	_, _, err := s.IsolateBody(context.Background(), mustReq(t, http.MethodPost, "/auth"), []byte(`{}`))
	var rf *pipeline.Refusal
	if !errors.As(err, &rf) || rf.Decision.Code != policy.ReasonMalformed {
		t.Fatalf("err = %v, want a malformed refusal", err)
	}
}
