// Package pipeline judges one request on a tenant socket. Judge runs the
// stages in one fixed order and returns a Verdict, the only value the HTTP
// handler needs:
//
//		canonical → route → owners → rules → body → stamp
//
//	  - canonical: policy.Canonicalize; a request with no canonical form,
//	    or with a form-encoded body, is refused.
//	  - route: the Route made by Canonicalize. An object route whose rules
//	    refuse it whatever the object is (policy.DecideAnyObject) is refused
//	    here, before any upstream call, when Stages.Peek knows its object
//	    (refuseAnyObject); so is any other route the rules refuse from its
//	    text alone.
//	  - owners: the object the path names is resolved to a full id of the
//	    tenant's (Owners, Images), and the query narrowed to the tenant.
//	  - rules: policy.Decide on the resolved request, when the route stage
//	    could not decide.
//	  - body: the body is read under its cap and judged (policy.InspectBody,
//	    bind source resolution, registry host).
//	  - stamp: the body's references are resolved and the owner stamped
//	    (Owners.IsolateBody), the image checked (Images), binds pinned
//	    (Pins), a pull prepared.
//
// Audit mode is applied in one place (judge.deny): a refusal of the rules
// becomes a would-deny that is recorded and forwarded. Tenant isolation and
// the refusals of requests that cannot be judged (malformed, too large, a
// form body, an ambiguous body, pins) are enforced in every mode.
//
// The package does no I/O of its own: what it needs from the daemon and
// the host comes through the small interfaces below, which the broker
// implements and tests fake. A dry run gives implementations that cannot
// look anything up and return errors wrapping ErrUnknown: Judge then goes
// on as if the lookup had passed and lists what it could not know in
// Verdict.Unknown.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/sockguard/sockguard/broker/internal/bounded"
	"github.com/sockguard/sockguard/policy"
)

// Owners resolves, for one tenant, the objects a request names.
type Owners interface {
	// Resolve returns the full id (a volume's name) of the tenant's object
	// ref names.
	Resolve(ctx context.Context, kind policy.ObjectKind, ref string) (id string, err error)
	// IsolateQuery narrows a list, event or prune query to the tenant and
	// resolves the references a query names (build, commit, list filters).
	IsolateQuery(ctx context.Context, req policy.Request) (policy.Request, error)
	// IsolateBody resolves the references of a body whose route is
	// BodyIsolated and stamps the owner. It returns the body to forward
	// and the named volumes it mounts that do not exist yet: nothing is
	// created while the request is judged.
	IsolateBody(ctx context.Context, req policy.Request, body []byte) ([]byte, []Volume, error)
	// CreateVolumes creates, for the tenant, the volumes of a verdict to
	// forward, just before it is forwarded.
	CreateVolumes(ctx context.Context, vols []Volume) error
}

// Volume is a named volume a container create mounts that does not exist
// yet: dockerd would create it unlabelled, so the broker creates it first,
// the tenant's, as the body specifies it.
type Volume struct {
	Name string
	Spec policy.VolumeSpec
}

// Images keeps images to the tenants allowed to see them.
type Images interface {
	// CheckRef returns the id of the image ref names, if the tenant may
	// use it; op is the route's action ("json" for inspect).
	CheckRef(ctx context.Context, action, ref string) (id string, err error)
	// CheckCreate checks the images a container create body names and
	// returns the body with their ids in place.
	CheckCreate(ctx context.Context, body []byte) ([]byte, error)
	// CheckExport checks every image an export names.
	CheckExport(ctx context.Context, names []string) error
	// BeginPull prepares a pull (nil for an import); the handler calls
	// Done once the answer is over.
	BeginPull(ctx context.Context, req policy.Request, h http.Header) (Pull, error)
}

// Pull is a pull in progress, prepared by Images.BeginPull.
type Pull interface{ Done() }

// Pins judges and pins the host bind sources of a container create body.
type Pins interface {
	// Prepare returns the body to forward and the pin id ("" for none);
	// the handler finishes the pin once dockerd has answered.
	Prepare(ctx context.Context, body []byte) (out []byte, pinID string, err error)
	// Finish ends a pin id Prepare returned (created: dockerd created the
	// container).
	Finish(pinID string, created bool)
}

// Stages are the broker's implementations of what the pipeline needs for
// one tenant. Owners is required (Judge fails without it); Images and Pins
// may be nil (not configured); Registries nil skips the registry host
// lookup; ResolvePath nil forwards bind sources as written. A dry run
// gives stages whose lookups return errors wrapping ErrUnknown and whose
// CreateVolumes does nothing.
type Stages struct {
	Owners      Owners
	Images      Images
	Pins        Pins
	Registries  HostResolver
	ResolvePath func(field, src string) (string, error)
	// Peek, when set, answers without an upstream call the object of a
	// request the rules refuse whatever it is (see refuseAnyObject).
	Peek Peeker
}

// Tenant is whom the request is judged for.
type Tenant struct {
	ID     string
	Policy *policy.Policy
	Audit  bool // audit mode: the rules' refusals are recorded, not enforced
}

// In is a request as the HTTP layer knows it.
type In struct {
	Tenant Tenant
	// Method, Path and RawQuery are r.Method, r.URL.Path (decoded once
	// by net/http) and r.URL.RawQuery.
	Method, Path, RawQuery string
	Header                 http.Header
	Body                   io.Reader // nil: none
	// Upgrade: the client asks to switch protocols (Connection: Upgrade).
	Upgrade bool
	// Admit, when set, is asked once the request is canonical (a request
	// with no canonical form is refused without it): it takes the
	// request's place among those in flight, or returns the refusal.
	Admit func() *Refusal
}

// Limits of the bodies the pipeline reads beyond the preset's own caps.
const (
	// IsolationBodyLimit caps a body read only for isolation (a create on
	// a route the preset does not inspect, in audit mode).
	IsolationBodyLimit = 1 << 20
	// HijackBodyLimit caps the body of an attach or exec start that
	// switches protocols, read before the connection is taken over.
	HijackBodyLimit = 1 << 20
)

// Outcome is what the handler does with a request.
type Outcome uint8

const (
	// Forward: send Req (and Body, when BodyRead) upstream.
	Forward Outcome = iota
	// Refuse: answer Decision.Status with Message (or the standard
	// refusal message when Message is ""), record it, pace it.
	Refuse
	// NotFound: answer Decision.Status with Message, dockerd's own words
	// for a missing object; not a denial, neither recorded nor paced (but
	// held as long as a paced refusal would be).
	NotFound
	// Failed: the daemon could not be asked (Err); answer 502.
	Failed
)

func (o Outcome) String() string {
	switch o {
	case Forward:
		return "forward"
	case Refuse:
		return "refuse"
	case NotFound:
		return "not_found"
	}
	return "failed"
}

// Verdict is what Judge decided, and all the handler needs to carry it out.
type Verdict struct {
	Outcome Outcome
	// Req is the canonical request as judged and, when forwarded, as sent
	// (the zero Request when the request had no canonical form).
	Req      policy.Request
	Decision policy.Decision // Refuse, NotFound: the refusal
	Message  string          // Refuse, NotFound: the answer's message ("" for the standard one)
	Err      error           // Failed
	// Allowance is the rules' allowance of a forwarded request (its rule
	// and reason, for a dry run to show); zero when the rules refused it
	// in audit mode (see Audits).
	Allowance policy.Decision
	// Audits are the would-denies of an audit-mode socket, to record; the
	// request is forwarded anyway (or refused by a later stage).
	Audits []policy.Decision

	// What forwarding needs.
	Body     []byte // the body to send, when BodyRead
	BodyRead bool
	PinID    string // pins to Finish once dockerd has answered
	Pull     Pull   // a pull to settle and end (Done) with its answer
	// ListImages: the answer is an image list to filter to the tenant.
	ListImages bool
	// Volumes were created for the create this verdict forwards (a dry run
	// lists those it would create).
	Volumes []Volume

	// Unknown lists what a dry run could not know (ErrUnknown).
	Unknown []string
}

// Refusal is an error the Stages return to refuse a request in every mode:
// an ambiguous reference, another tenant's object, a name taken. Decision
// is what the deny log records; Message, when set, is the whole answer
// (dockerd's own words, so that another tenant's object reads as a
// missing one).
type Refusal struct {
	Decision policy.Decision
	Message  string
}

func (e *Refusal) Error() string { return e.Decision.Reason }

// Missing is an error the Stages return for an object that does not
// exist: dockerd's own answer, which is not a denial.
type Missing struct {
	Status  int
	Message string
}

func (e *Missing) Error() string { return e.Message }

// ErrUnknown marks what a dry run cannot know: Judge goes on as if the
// lookup passed and lists the error in Verdict.Unknown.
var ErrUnknown = errors.New("not known without the daemon")

// Judge runs the stages on one request. It never forwards anything
// itself and creates nothing upstream except through the Stages' explicit
// steps (a pin, a pull's gate), which the Verdict hands to the handler to
// finish.
func Judge(ctx context.Context, in In, st Stages) Verdict {
	j := judge{in: in, st: st}
	if st.Owners == nil || in.Tenant.Policy == nil {
		// Fail closed: without isolation or rules nothing is judged.
		j.fail("pipeline", errors.New("no owner resolver or policy"))
		return j.v
	}
	j.run(ctx)
	return j.v
}

// judge is one run of the stages.
type judge struct {
	in   In
	st   Stages
	v    Verdict
	done bool // a terminal outcome was set
	// unresolved: a dry run could not resolve the path's object.
	unresolved bool
}

func (j *judge) run(ctx context.Context) {
	pol := j.in.Tenant.Policy
	// canonical
	req, err := policy.Canonicalize(j.in.Method, j.in.Path, j.in.RawQuery)
	if err != nil {
		// Never forwarded, not even in audit mode: there is no canonical
		// form to judge or to send.
		j.refuse(policy.Decision{Status: http.StatusBadRequest, Code: policy.ReasonMalformed, Reason: err.Error(), Rule: "canonical request"})
		return
	}
	j.v.Req = req
	if j.in.Admit != nil {
		if rf := j.in.Admit(); rf != nil {
			j.v.Outcome, j.v.Decision, j.v.Message, j.done = Refuse, rf.Decision, rf.Message, true
			return
		}
	}
	// Fail closed on form bodies on every endpoint, not only the inspected
	// ones: their values would win over the query the policy and the
	// isolation filters saw.
	if policy.FormBody(j.in.Header) {
		j.refuse(policy.Decision{Status: http.StatusBadRequest, Code: policy.ReasonMalformed,
			Reason: "form-encoded request bodies are not accepted", Rule: "canonical request"})
		return
	}

	// route: the order of owners and rules. Tenant isolation is
	// enforced in every mode: audit relaxes the policy, never the boundary
	// between tenants.
	rt := req.Route()
	ownersFirst := rt.Object() != policy.ObjectNone && (rt.Object() != policy.ObjectImage || req.Method == http.MethodGet)
	var d policy.Decision
	if ownersFirst && j.st.Peek != nil {
		// A refusal whatever the object is costs no upstream call when
		// the object is already known (refuseAnyObject).
		if ad, ok := pol.DecideAnyObject(req); ok && !ad.Allow && j.refuseAnyObject(ctx, req, ad) {
			return
		}
	}
	if !ownersFirst {
		// The rules need no lookup: no object, or an image the rules judge
		// by the tenant's own text (tag, push, delete). A refusal costs
		// no upstream call (a build's network, a commit's container, a
		// list's references are not looked up for it).
		if d = pol.Decide(req); !d.Allow && j.deny(d) {
			return
		}
	}

	// owners: the object the path names, then the query. An object is
	// resolved before the rules so that another tenant's object answers
	// as a missing one whatever the rules would say (the owner cache
	// serves a full id without an upstream call).
	if req = j.owners(ctx, req); j.done {
		return
	}

	// rules, on the full id that is forwarded.
	if ownersFirst {
		d = j.decideObject(req)
		if !d.Allow && j.deny(d) {
			return
		}
	}
	j.v.Req = req

	// body
	body, ok := j.body(ctx, req, d.Allow)
	if !ok {
		return
	}
	// stamp
	j.stamp(ctx, req, body)
	if !j.done && d.Allow {
		j.v.Allowance = d
	}
}

// decideObject judges an object route. When a dry run could not resolve
// the object, the rules are asked whether they decide whatever the object
// is; if they do not, the decision is marked unknown.
func (j *judge) decideObject(req policy.Request) policy.Decision {
	pol := j.in.Tenant.Policy
	if !j.unresolved {
		return pol.Decide(req)
	}
	if d, ok := pol.DecideAnyObject(req); ok {
		return d
	}
	j.v.Unknown = append(j.v.Unknown, "rules: they depend on which object "+bounded.Clip(req.Route().Ref(), 128)+" is")
	return pol.Decide(req)
}

// deny applies the socket's mode to a refusal of the rules, in this one
// place: it refuses (and returns true), or in audit mode records a
// would-deny and lets the request through.
func (j *judge) deny(d policy.Decision) bool {
	if j.in.Tenant.Audit {
		j.v.Audits = append(j.v.Audits, d)
		return false
	}
	j.refuse(d)
	return true
}

// refuse ends the run with a refusal enforced in every mode.
func (j *judge) refuse(d policy.Decision) {
	j.v.Outcome, j.v.Decision, j.done = Refuse, d, true
}

// fail ends the run on an error of a stage (see Refusal, Missing); it
// returns false for an ErrUnknown, which is listed and passed over.
func (j *judge) fail(what string, err error) bool {
	var rf *Refusal
	var miss *Missing
	switch {
	case errors.Is(err, ErrUnknown):
		j.v.Unknown = append(j.v.Unknown, fmt.Sprintf("%s: %v", what, err))
		return false
	case errors.As(err, &rf):
		j.v.Outcome, j.v.Decision, j.v.Message = Refuse, rf.Decision, rf.Message
	case errors.As(err, &miss):
		j.v.Outcome, j.v.Message = NotFound, miss.Message
		j.v.Decision = policy.Decision{Status: miss.Status, Reason: miss.Message}
	default:
		j.v.Outcome, j.v.Err = Failed, err
	}
	j.done = true
	return true
}

// owners resolves the object the path names and narrows the query.
func (j *judge) owners(ctx context.Context, req policy.Request) policy.Request {
	if req = j.object(ctx, req); j.done {
		return req
	}
	r, err := j.st.Owners.IsolateQuery(ctx, req)
	if err != nil {
		j.fail("query", err)
		return req
	}
	return r
}

// object resolves the object the path names, if any, and returns the
// request with the checked id in place of the reference.
func (j *judge) object(ctx context.Context, req policy.Request) policy.Request {
	rt := req.Route()
	var id string
	var err error
	switch k := rt.Object(); k {
	case policy.ObjectNone:
		return req
	case policy.ObjectImage:
		if j.st.Images == nil {
			return req
		}
		id, err = j.st.Images.CheckRef(ctx, rt.Action(), rt.Ref())
	default:
		id, err = j.st.Owners.Resolve(ctx, k, rt.Ref())
	}
	if err != nil {
		if !j.fail(rt.Object().String()+" "+bounded.Clip(rt.Ref(), 128), err) {
			j.unresolved = true
		}
		return req
	}
	if !rt.ForwardsResolvedID() {
		return req
	}
	// The id that was checked is what is judged and sent, so a rename or
	// a moved tag meanwhile cannot redirect the request.
	r, err := req.WithObjectID(id)
	if err != nil {
		j.fail("object id", fmt.Errorf("the daemon answered %s %q with an id of an unexpected form: %w", rt.Object(), rt.Ref(), err))
		return req
	}
	return r
}

// body reads and judges the body; ok is false when the run ended.
// allowed: the rules allowed the route (in audit mode a refused route's
// body is not inspected).
func (j *judge) body(ctx context.Context, req policy.Request, allowed bool) ([]byte, bool) {
	rt := req.Route()
	pol := j.in.Tenant.Policy
	inspect, limit := pol.BodyPolicy(req)
	inspect = inspect && allowed
	switch {
	case inspect:
	case rt.BodyIsolated():
		limit = IsolationBodyLimit
	case j.in.Upgrade && rt.MayUpgrade():
		limit = HijackBodyLimit
	default:
		return nil, true // the body streams through unread
	}
	// The body is read whatever Content-Length or Transfer-Encoding
	// claim, and never beyond the cap.
	body, err := bounded.ReadAll(j.in.Body, limit)
	switch {
	case errors.Is(err, bounded.ErrTooLarge):
		j.refuse(policy.TooLarge(limit))
		return nil, false
	case err != nil:
		j.refuse(policy.Decision{Status: http.StatusBadRequest, Code: policy.ReasonMalformed,
			Reason: "cannot read request body: " + err.Error(), Rule: "body"})
		return nil, false
	}
	j.v.Body, j.v.BodyRead = body, true
	hp := &hostPaths{pol: pol, audit: j.in.Tenant.Audit, resolve: j.st.ResolvePath}
	if rt.CreatesContainer() && j.st.ResolvePath != nil {
		// Judge and forward the real paths, so a symlink under an
		// allowed root cannot reach outside it (hostPaths: without
		// telling the tenant about the host).
		rb, err := policy.ResolveBindSources(body, hp.resolveSource)
		switch {
		case errors.Is(err, policy.ErrMalformed):
			j.refuse(policy.Decision{Status: http.StatusBadRequest, Code: policy.ReasonMalformed, Reason: err.Error(), Rule: "strict body"})
			return nil, false
		case err != nil:
			if j.deny(policy.Decision{Status: http.StatusForbidden, Code: policy.ReasonBindMount, Reason: err.Error(), Rule: "bind source resolution"}) {
				return nil, false
			}
		case rb != nil:
			body, j.v.Body = rb, rb
		}
	}
	if !inspect {
		return body, true
	}
	d, nb := pol.InspectBody(req, j.in.Header, body)
	d = hp.scrub(d)
	if !d.Allow && (d.Code == policy.ReasonMalformed || d.Code == policy.ReasonBodyTooLarge) {
		// An ambiguous body is never forwarded, even in audit mode.
		j.refuse(d)
		return nil, false
	}
	if !d.Allow && j.deny(d) {
		return nil, false
	}
	if nb != nil {
		j.v.Body = nb
	}
	if j.st.Registries != nil {
		d, ok, unknown := checkRegistryHost(ctx, j.st.Registries, pol, req, body)
		if unknown != nil {
			j.fail("registry", unknown) // listed, not an end
		}
		if !ok && j.deny(d) {
			return nil, false
		}
	}
	return j.v.Body, true
}

// stamp resolves the body's references, stamps the owner, checks the
// images, pins the binds and prepares what the answer needs.
func (j *judge) stamp(ctx context.Context, req policy.Request, body []byte) {
	rt := req.Route()
	if rt.BodyIsolated() {
		nb, vols, err := j.st.Owners.IsolateBody(ctx, req, body)
		if err != nil {
			if j.fail("body references", err) {
				return
			}
		} else {
			body, j.v.Body, j.v.Volumes = nb, nb, vols
		}
	}
	if rt.CreatesContainer() && j.st.Images != nil {
		// The image, checked and forwarded by its id, before anything is
		// pinned.
		nb, err := j.st.Images.CheckCreate(ctx, body)
		if err != nil {
			if j.fail("image", err) {
				return
			}
		} else {
			body, j.v.Body = nb, nb
		}
	}
	if rt.CreatesContainer() && j.st.Pins != nil {
		// Last, on the body as it will be sent: each host bind source is
		// judged again against the broker's own paths and pinned, so
		// nothing done under the tenant's bind roots from now on changes
		// what a start or restart mounts. Enforced in every mode.
		nb, id, err := j.st.Pins.Prepare(ctx, body)
		if err != nil {
			if j.fail("bind pins", err) {
				return
			}
		} else {
			j.v.Body, j.v.PinID = nb, id
		}
	}
	if j.st.Images != nil {
		var err error
		switch rt.Endpoint() {
		case policy.EndpointImagePull:
			var pull Pull
			if pull, err = j.st.Images.BeginPull(ctx, req, j.in.Header); pull != nil {
				j.v.Pull = pull
			}
		case policy.EndpointImageExport:
			err = j.st.Images.CheckExport(ctx, req.Params("names"))
		case policy.EndpointImageList:
			j.v.ListImages = true
		}
		if err != nil && j.fail("image", err) {
			j.undo()
			return
		}
	}
	// Judged: the verdict is to forward. Only now is anything created
	// upstream for it.
	if len(j.v.Volumes) > 0 {
		if err := j.st.Owners.CreateVolumes(ctx, j.v.Volumes); err != nil && j.fail("volumes", err) {
			j.undo()
		}
	}
}

// undo gives back what a refused verdict holds (a pin, a pull's gate).
func (j *judge) undo() {
	if j.v.PinID != "" && j.st.Pins != nil {
		j.st.Pins.Finish(j.v.PinID, false)
		j.v.PinID = ""
	}
	if j.v.Pull != nil {
		j.v.Pull.Done()
		j.v.Pull = nil
	}
}
