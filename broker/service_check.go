package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/sockguard/sockguard/broker/pipeline"
	"github.com/sockguard/sockguard/policy"
	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Bounds of a dry run's request headers (CheckRequestRequest.headers).
const (
	maxCheckHeaders     = 64
	maxCheckHeaderName  = 256
	maxCheckHeaderValue = 16 << 10
	maxCheckHeaderBytes = 64 << 10
)

// CheckRequest is the dry run: the live pipeline (pipeline.Judge) with the
// request's own headers and body, over stages that look nothing up
// (dryStages). What it could not know is listed in the answer's unknown.
// The request's header values are judged only: never logged, stored or
// quoted back (registry credentials travel in them).
func (s *service) CheckRequest(ctx context.Context, req *sockguardv1.CheckRequestRequest) (*sockguardv1.CheckRequestResponse, error) {
	notes := &dryNotes{}
	var tenant pipeline.Tenant
	var st pipeline.Stages
	switch {
	case req.GetSocket() != "":
		t, pol, err := s.b.reg.dryRunTenant(req.GetSocket())
		if err != nil {
			return nil, toStatus(err)
		}
		tenant = pipeline.Tenant{ID: t.ID, Policy: pol, Audit: t.Mode == ModeAudit}
		st = s.b.reg.proxy.dryStages(t, notes)
	case req.GetPreset() != "":
		p, err := s.preset(req.GetPreset())
		if err != nil {
			return nil, toStatus(err)
		}
		pol, err := policy.NewPolicy(p, policy.Overrides{})
		if err != nil {
			return nil, toStatus(err)
		}
		tenant = pipeline.Tenant{ID: dryTenant, Policy: pol}
		st = s.b.reg.proxy.dryStages(&Tenant{ID: dryTenant}, notes)
	default:
		return nil, toStatus(errors.Join(ErrInvalidArgument, errors.New("a preset or a socket is required")))
	}
	if req.GetMethod() == "" || req.GetTarget() == "" {
		return nil, status.Error(codes.InvalidArgument, "method and target are required")
	}
	// Host paths are read only where the rules may allow a bind as written.
	notes.mayRead = tenant.Policy.MayBindAsWritten
	header, err := checkHeaders(req.GetHeaders())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	mode := sockguardv1.PolicyMode_POLICY_MODE_ENFORCE
	if tenant.Audit {
		mode = sockguardv1.PolicyMode_POLICY_MODE_AUDIT
	}
	// The target is decoded once, as net/http decodes a request line.
	u, err := url.ParseRequestURI(req.GetTarget())
	if err != nil {
		return &sockguardv1.CheckRequestResponse{Method: req.GetMethod(), ReasonCode: sockguardv1.DenialReason(policy.ReasonMalformed),
			Rule: "canonical request", Reason: "request target: " + clipText(err.Error(), 512), PolicyMode: mode}, nil
	}
	v := pipeline.Judge(ctx, pipeline.In{
		Tenant: tenant, Method: req.GetMethod(), Path: u.Path, RawQuery: u.RawQuery,
		Header: header, Body: bytes.NewReader(req.GetBody()), Upgrade: isUpgrade(header),
	}, st)
	return checkResponse(v, mode, notes)
}

// checkResponse is the answer for a dry run's verdict.
func checkResponse(v pipeline.Verdict, mode sockguardv1.PolicyMode, notes *dryNotes) (*sockguardv1.CheckRequestResponse, error) {
	unknown := make([]string, len(v.Unknown))
	for i, u := range v.Unknown {
		unknown[i] = notes.maskNote(u)
	}
	resp := &sockguardv1.CheckRequestResponse{
		Method: v.Req.Method, Path: v.Req.Path, PolicyMode: mode, Unknown: notes.merge(unknown),
	}
	for i, d := range v.Audits {
		if i == maxDryUnknown {
			break
		}
		w := &sockguardv1.CheckWouldDeny{ReasonCode: sockguardv1.DenialReason(d.Code),
			Reason: d.Reason, Rule: d.Rule, Subject: subjectToProto(boundedSubject(d.Subject))}
		notes.maskBinds(d.Code, &w.Reason, w.Subject)
		resp.WouldDeny = append(resp.WouldDeny, w)
	}
	switch v.Outcome {
	case pipeline.Forward:
		resp.Allowed = true
		resp.Rule, resp.Reason = v.Allowance.Rule, v.Allowance.Reason
		if len(v.Audits) > 0 {
			first := v.Audits[0]
			resp.Rule = first.Rule
			resp.Reason = "audit mode: forwarded, and recorded as a would-deny: " + first.Reason
		}
	case pipeline.Refuse:
		d := v.Decision
		resp.Rule, resp.Reason = d.Rule, d.Reason
		resp.ReasonCode = sockguardv1.DenialReason(d.Code)
		resp.Subject = subjectToProto(boundedSubject(d.Subject))
		notes.maskBinds(d.Code, &resp.Reason, resp.Subject)
	case pipeline.NotFound:
		// Known offline: the reference names no object (dockerd's answer).
		resp.Rule, resp.Reason = "tenant isolation", v.Message
	default:
		// The dry stages ask no daemon, so this is the broker's own error.
		return nil, status.Error(codes.Internal, "the dry run failed: "+clipText(fmt.Sprint(v.Err), 512))
	}
	return resp, nil
}

// checkHeaders turns a dry run's headers into an http.Header, bounded.
// Errors name the header, never its value.
func checkHeaders(hs []*sockguardv1.CheckHeader) (http.Header, error) {
	if len(hs) > maxCheckHeaders {
		return nil, fmt.Errorf("more than %d headers", maxCheckHeaders)
	}
	h := make(http.Header, len(hs))
	total := 0
	for _, kv := range hs {
		name, value := kv.GetName(), kv.GetValue()
		if !validHeaderName(name) {
			return nil, fmt.Errorf("header name %s is not a valid HTTP header name of at most %d bytes", quoteBounded(name), maxCheckHeaderName)
		}
		if len(value) > maxCheckHeaderValue {
			return nil, fmt.Errorf("header %s: value longer than %d bytes", name, maxCheckHeaderValue)
		}
		if !validHeaderValue(value) {
			return nil, fmt.Errorf("header %s: value has a control character", name)
		}
		if total += len(name) + len(value); total > maxCheckHeaderBytes {
			return nil, fmt.Errorf("headers longer than %d bytes in all", maxCheckHeaderBytes)
		}
		h.Add(name, value)
	}
	return h, nil
}

// validHeaderName: an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" || len(s) > maxCheckHeaderName {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
			continue
		}
		switch c {
		case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
			continue
		}
		return false
	}
	return true
}

// validHeaderValue: no control characters but tab (net/http refuses a
// request with them).
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// dryRunTenant is the socket name's settings and policy, for a dry run.
func (r *Registry) dryRunTenant(name string) (*Tenant, *policy.Policy, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.tenants[name]
	if !ok {
		return nil, nil, fmt.Errorf("%w: socket %s", ErrNotFound, quoteBounded(name))
	}
	if st := s.state.Load(); st.pol != nil {
		return st.t, st.pol, nil
	}
	return nil, nil, fmt.Errorf("%w: socket %s has no valid policy: %s", ErrUnavailable, quoteBounded(name), s.failed)
}
