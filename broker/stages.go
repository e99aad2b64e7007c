package broker

import (
	"context"
	"errors"
	"net"
	"net/http"

	"github.com/sockguard/sockguard/broker/isolation"
	"github.com/sockguard/sockguard/broker/pipeline"
	"github.com/sockguard/sockguard/policy"
)

// The broker's implementations of the pipeline's stages for one tenant:
// isolation over the isolation.Isolator, images over the imageGuard, pins over the
// pinner. Their errors are turned into the pipeline's vocabulary here
// (pipelineError), the one place that knows both.

// tenantStages serves one request of one tenant.
type tenantStages struct {
	iso    isolation.Isolator
	names  nameLookup // nil: container names always resolve upstream
	tenant *Tenant
	log    interface {
		Error(msg string, args ...any)
	}
}

var (
	_ pipeline.Owners = (*tenantStages)(nil)
	_ pipeline.Images = tenantImages{}
	_ pipeline.Pins   = tenantPins{}
)

// stages are the pipeline's stages for tenant t.
func (p *Proxy) stages(t *Tenant) pipeline.Stages {
	ts := &tenantStages{iso: isolation.New(p.up, p.owners, t.ID), tenant: t, log: p.log}
	if p.names != nil {
		ts.names = p.names
	}
	st := pipeline.Stages{Owners: ts, Peek: ts}
	if p.images != nil {
		st.Images = tenantImages{ts, p.images}
	}
	if p.pins != nil {
		st.Pins = tenantPins{ts, p.pins}
	}
	if p.resolveBinds {
		st.ResolvePath = resolveHostPath
	}
	st.Registries = p.registries
	if st.Registries == nil {
		st.Registries = net.DefaultResolver
	}
	return st
}

func (s *tenantStages) Resolve(ctx context.Context, k policy.ObjectKind, ref string) (string, error) {
	id, err := s.iso.Resolve(ctx, k, ref)
	return id, pipelineError(err)
}

func (s *tenantStages) IsolateQuery(ctx context.Context, req policy.Request) (policy.Request, error) {
	r, err := s.iso.IsolateQuery(ctx, req)
	return r, pipelineError(err)
}

func (s *tenantStages) IsolateBody(ctx context.Context, req policy.Request, body []byte) ([]byte, []pipeline.Volume, error) {
	body, vols, err := s.iso.IsolateBody(ctx, req, body)
	return body, vols, pipelineError(err)
}

func (s *tenantStages) CreateVolumes(ctx context.Context, vols []pipeline.Volume) error {
	return pipelineError(s.iso.CreateVolumes(ctx, vols))
}

// tenantImages is the imageGuard for one tenant.
type tenantImages struct {
	*tenantStages
	g *imageGuard
}

func (t tenantImages) CheckRef(ctx context.Context, action, ref string) (string, error) {
	op := opOther
	if action == "json" {
		op = opInspect
	}
	id, err := t.g.checkRef(ctx, op, t.tenant.ID, ref)
	return id, pipelineError(err)
}

func (t tenantImages) CheckCreate(ctx context.Context, body []byte) ([]byte, error) {
	body, err := t.g.checkCreate(ctx, t.tenant.ID, body)
	return body, pipelineError(err)
}

func (t tenantImages) CheckExport(ctx context.Context, names []string) error {
	return pipelineError(t.g.checkExport(ctx, t.tenant.ID, names))
}

func (t tenantImages) BeginPull(ctx context.Context, req policy.Request, h http.Header) (pipeline.Pull, error) {
	plan, err := t.g.beginPull(ctx, t.tenant.ID, req, h)
	if plan == nil {
		return nil, pipelineError(err) // never a typed nil in the interface
	}
	return plan, pipelineError(err)
}

// Done ends the pull (pipeline.Pull).
func (p *pullPlan) Done() { p.done() }

// tenantPins is the pinner for one tenant.
type tenantPins struct {
	*tenantStages
	pn *pinner
}

func (t tenantPins) Prepare(ctx context.Context, body []byte) ([]byte, string, error) {
	out, id, err := t.pn.prepare(ctx, t.tenant.ID, t.tenant.Name, body)
	if err != nil {
		return nil, "", t.pinError(err)
	}
	return out, id, nil
}

// pinError is the pipeline's word for a pinner's error.
func (s *tenantStages) pinError(err error) error {
	var pr *pinRefused
	switch {
	case errors.As(err, &pr):
		return &pipeline.Refusal{Decision: policy.Decision{Status: pr.status, Code: policy.ReasonBindMount, Reason: err.Error(), Rule: "bind pins"}}
	case errors.Is(err, pipeline.ErrUnknown):
		return err
	}
	s.log.Error("bind_pin_failed", "socket", s.tenant.Name, "err", err)
	return &pipeline.Refusal{Decision: policy.Decision{Status: http.StatusInternalServerError, Code: policy.ReasonBindMount,
		Reason: "cannot pin the bind sources: " + err.Error(), Rule: "bind pins"}}
}

func (t tenantPins) Finish(pinID string, created bool) { t.pn.finish(t.tenant.ID, pinID, created) }

// pipelineError turns an isolation or image error into the pipeline's
// vocabulary. A foreign or missing object gets dockerd's own answer for a
// missing one, so its existence is not confirmed; only a foreign one is a
// refusal (recorded and paced). Any other error is the daemon's: 502.
func pipelineError(err error) error {
	if err == nil {
		return nil
	}
	var nf *isolation.NoSuchObject
	var amb errAmbiguous
	var malformed isolation.Malformed
	var taken *isolation.NameTaken
	var hidden *errImageHidden
	var missing *errImageMissing
	var pr *errPullRefused
	switch {
	case errors.As(err, &hidden):
		// dockerd's own answer for a missing image: on create, the docker
		// CLI then pulls with the tenant's own credentials.
		return &pipeline.Refusal{Decision: policy.Decision{Status: http.StatusNotFound, Code: policy.ReasonForeignObject,
			Reason: "image pulled with credentials by another tenant: " + hidden.ref, Rule: "image ownership"}, Message: hidden.Error()}
	case errors.As(err, &missing):
		return &pipeline.Missing{Status: missing.status, Message: missing.msg}
	case errors.As(err, &pr):
		return &pipeline.Refusal{Decision: policy.Decision{Status: pr.status, Code: policy.ReasonMalformed, Reason: pr.msg, Rule: "image ownership"}}
	case errors.As(err, &taken):
		return &pipeline.Refusal{Decision: policy.Decision{Status: http.StatusConflict, Code: policy.ReasonForeignObject,
			Reason: taken.Error() + " by another tenant", Rule: "tenant isolation"}, Message: taken.Error()}
	case errors.As(err, &nf) && nf.Foreign:
		return &pipeline.Refusal{Decision: policy.Decision{Status: nf.Status(), Code: policy.ReasonForeignObject,
			Reason: "not owned by this tenant: " + nf.Error(), Rule: "tenant isolation"}, Message: nf.Error()}
	case errors.As(err, &nf):
		// Missing: not a denial (compose and docker inspect probe names
		// that do not exist yet).
		return &pipeline.Missing{Status: nf.Status(), Message: nf.Error()}
	case errors.As(err, &amb):
		return &pipeline.Refusal{Decision: policy.Decision{Status: http.StatusBadRequest, Code: policy.ReasonMalformed, Reason: string(amb), Rule: "tenant isolation"}}
	case errors.As(err, &malformed):
		return &pipeline.Refusal{Decision: policy.Decision{Status: http.StatusBadRequest, Code: policy.ReasonMalformed, Reason: string(malformed), Rule: "tenant isolation"}}
	}
	return err
}
