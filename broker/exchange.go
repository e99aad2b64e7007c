package broker

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/sockguard/sockguard/broker/pipeline"
	"github.com/sockguard/sockguard/broker/store"
	"github.com/sockguard/sockguard/policy"
)

// exchange is one request on a tenant socket, from its arrival to its
// access log line: what the handler records and answers around the
// pipeline's verdict.
type exchange struct {
	h     *tenantHandler
	st    *tenantState
	w     http.ResponseWriter
	r     *http.Request
	ctx   context.Context
	cred  peerCred
	reqID string
	start time.Time
	sw    *statusWriter // nil without an access log
	// req is the canonical request once judged (the zero Request for a
	// malformed one); method is its method, or the client's.
	req     policy.Request
	method  string
	outcome string // allow, audit, deny, not_found, hijacked
}

// begin starts an exchange: the request id is set on every answer alike.
func (h *tenantHandler) begin(w http.ResponseWriter, r *http.Request) *exchange {
	p := h.p
	x := &exchange{h: h, st: h.ts.state.Load(), r: r, ctx: r.Context(), start: time.Now(),
		method: r.Method, outcome: "allow"}
	x.cred, _ = credFrom(x.ctx)
	x.reqID = p.reqBase + h.reqTag + "-" + strconv.FormatUint(h.reqSeq.Add(1), 36)
	w.Header().Set(requestIDHeader, x.reqID)
	if p.access != nil {
		x.sw = &statusWriter{ResponseWriter: w}
		w = x.sw
	}
	x.w = w
	return x
}

// end observes the request's duration and writes its access log line
// (never a body or a header value).
func (x *exchange) end() {
	p := x.h.p
	d := time.Since(x.start)
	p.observe(x.st.t.Name, x.req, x.outcome, d)
	if x.sw != nil {
		p.access.LogAttrs(x.ctx, slog.LevelInfo, "request",
			slog.String("request_id", x.reqID), slog.String("socket", x.st.t.Name),
			slog.Uint64("peer_uid", uint64(x.cred.UID)), slog.Int("peer_pid", int(x.cred.PID)),
			slog.String("method", clip(x.method, store.MaxDenialMethod)), slog.String("path", clip(x.req.Path, store.MaxDenialPath)),
			slog.String("decision", x.outcome), slog.Int("status", x.sw.status),
			slog.Duration("duration", d))
	}
}

// record counts and logs a verdict: its would-denies, and its refusal.
func (x *exchange) record(v pipeline.Verdict) {
	x.req = v.Req
	if !v.Req.IsZero() {
		x.method = v.Req.Method
	}
	for _, d := range v.Audits {
		x.deny(d, ModeAudit)
	}
	switch v.Outcome {
	case pipeline.Refuse:
		x.deny(v.Decision, ModeEnforce)
	case pipeline.NotFound:
		x.outcome = "not_found" // a missing object is not a denial
	}
}

// deny records one refusal (or would-deny) in the deny log and metrics.
func (x *exchange) deny(d policy.Decision, mode Mode) {
	ts := x.h.ts
	if mode == ModeAudit {
		x.outcome = "audit" // forwarded anyway, unless a later check refuses it
		ts.countWouldDeny(d.Code)
	} else {
		x.outcome = "deny"
		ts.countDenial(d.Code)
	}
	x.h.p.denials.Record(store.Denial{
		Time: time.Now().UTC(), Socket: x.st.t.Name, TenantID: x.st.t.ID, RequestID: x.reqID,
		PeerUID: x.cred.UID, PeerGID: x.cred.GID, PeerPID: x.cred.PID,
		Method: x.method, Path: x.req.Path, RawTarget: store.SafeTarget(x.r.RequestURI),
		Code: d.Code, Reason: d.Reason, Rule: d.Rule, Mode: mode, Subject: denialSubject(d.Subject),
	})
}

// answer writes a refusal (paced) or a missing object's answer (held as
// long as a paced refusal would be now, so another tenant's object, which
// is paced, cannot be told from a missing one by the delay).
func (x *exchange) answer(v pipeline.Verdict) {
	pacer := x.h.ts.pacer
	if v.Outcome == pipeline.NotFound {
		pacer.waitBacklog(x.ctx)
		writeDockerError(x.w, v.Decision.Status, v.Message)
		return
	}
	msg := v.Message
	if msg == "" {
		msg = refusalMessage(x.st.t, x.reqID, v.Req, v.Decision)
	}
	pacer.wait(x.ctx)
	writeDockerError(x.w, v.Decision.Status, msg)
}

// tooManyRequests is the refusal of a request over the socket's
// in-flight limit.
func (x *exchange) tooManyRequests(limit int) *pipeline.Refusal {
	// Close after the answer: the unread body of a refused request
	// (possibly one that never comes) is not waited for.
	x.w.Header().Set("Connection", "close")
	return &pipeline.Refusal{
		Decision: policy.Decision{Status: http.StatusTooManyRequests, Code: policy.ReasonLimit,
			Reason: fmt.Sprintf("over the limit of %d requests in flight on this socket", limit), Rule: "requests in flight limit"},
		Message: fmt.Sprintf("sockguard: too many requests in flight on this socket (limit %d, broker --max-requests-per-socket); retry when earlier requests have been answered [socket %s, request %s]", limit, x.st.t.Name, x.reqID),
	}
}

// forward sends a judged request upstream, through the reverse proxy or,
// for the streams that switch protocols, on a hijacked connection.
// answered gives back the request's slot once dockerd's answer head is in.
func (x *exchange) forward(v pipeline.Verdict, answered func()) {
	p, ts := x.h.p, x.h.ts
	f := &forward{req: v.Req, body: v.Body, bodyRead: v.BodyRead, answered: answered}
	w := x.w
	if v.PinID != "" {
		// The pins stay only if dockerd answers that it created the
		// container; the status is what the client got.
		cw := &statusWriter{ResponseWriter: w}
		w = cw
		defer func() { p.pins.finish(x.st.t.ID, v.PinID, cw.status == http.StatusCreated) }()
	}
	if p.pins != nil && v.Req.Route().MayRemoveContainer() {
		// The container may be gone once dockerd answers (rm, prune, or
		// wait for an --rm container): sweep its pins.
		defer p.pins.kickSweep()
	}
	if v.Pull != nil {
		f.pull, _ = v.Pull.(*pullPlan)
		defer v.Pull.Done()
	}
	if v.ListImages {
		f.listImagesFor = x.st.t.ID
	}
	if x.outcome == "audit" {
		ts.audited.Add(1)
	} else {
		ts.allowed.Add(1)
	}
	r := x.r.WithContext(context.WithValue(x.ctx, forwardKey{}, f))
	if isUpgrade(r.Header) {
		if v.Req.Route().MayUpgrade() {
			if p.hijack(w, r, f, ts) {
				x.outcome = "hijacked"
			}
			return
		}
		// Only the streaming routes switch protocols. Any other request
		// asking to goes through the reverse proxy like the rest, so its
		// answer passes the same filters (the 409 scrub, the image list,
		// the pull settlement): the upgrade intent is dropped.
		r.Header.Del("Upgrade")
	}
	p.rp.ServeHTTP(w, r)
}
