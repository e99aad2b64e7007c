package main

import (
	"strings"
	"testing"

	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
)

// TestCheckHeadersAndUnknowns: --header is sent as given (repeatable,
// "Name: value"), a bad one is a usage error that does not echo its
// value, and the answer's would-denies (with their subject; exit 1: the
// rules refuse it) and unknowns are printed.
func TestCheckHeadersAndUnknowns(t *testing.T) {
	const secret = "c2VjcmV0LXZhbHVl"
	f := &fakeBroker{checkFor: func(r *sockguardv1.CheckRequestRequest) *sockguardv1.CheckRequestResponse {
		return &sockguardv1.CheckRequestResponse{Allowed: true, Method: "POST", Path: "/containers/create", Rule: "body: privileged",
			Reason:     "audit mode: forwarded, and recorded as a would-deny: privileged containers are not allowed",
			PolicyMode: sockguardv1.PolicyMode_POLICY_MODE_AUDIT,
			WouldDeny: []*sockguardv1.CheckWouldDeny{{ReasonCode: sockguardv1.DenialReason_DENIAL_REASON_PRIVILEGED,
				Reason: "privileged containers are not allowed", Subject: &sockguardv1.DenialSubject{Field: "HostConfig.Privileged",
					Allowance: &sockguardv1.Allowance{Kind: sockguardv1.AllowanceKind_ALLOWANCE_KIND_SETTING, Section: "container", Setting: "allow_privileged", Value: "true"}}}},
			Unknown: []string{"container web: whether it exists and belongs to this socket (not known without the daemon)"}}
	}}
	sock := startBroker(t, f)
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     []string // lines of stdout, spaces collapsed
	}{
		{name: "audit with unknowns", wantCode: 1, // the rules refuse it
			args: []string{"check", "--socket", "s", "--header", "Content-Type: application/json", "--header", "X-Registry-Auth:" + secret, "POST", "/containers/create"},
			want: []string{"allow (audit: would deny)", "would deny: privileged: privileged containers are not allowed", "field: HostConfig.Privileged", "allowed by: container.allow_privileged: true", "unknown: container web: whether it exists"}},
		{name: "header without a colon", wantCode: 2, args: []string{"check", "--socket", "s", "--header", "X-Registry-Auth " + secret, "GET", "/_ping"}},
		{name: "header without a name", wantCode: 2, args: []string{"check", "--socket", "s", "--header", ": " + secret, "GET", "/_ping"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := sgctlStdin(t, sock, "", tt.args...)
			if res.code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", res.code, tt.wantCode, res.stdout, res.stderr)
			}
			if strings.Contains(res.stderr, secret) {
				t.Errorf("stderr echoes the header value: %q", res.stderr)
			}
			out := regexpSpaces(res.stdout)
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, res.stdout)
				}
			}
		})
	}
	reqs := requests[*sockguardv1.CheckRequestRequest](f)
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	h := reqs[0].GetHeaders()
	if len(h) != 2 || h[0].GetName() != "Content-Type" || h[0].GetValue() != "application/json" ||
		h[1].GetName() != "X-Registry-Auth" || h[1].GetValue() != secret {
		t.Errorf("headers sent: %v", h)
	}
}
