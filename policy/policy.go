package policy

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strings"
)

// BindRoot is a host directory under which a tenant may bind-mount.
type BindRoot struct {
	Path     string
	ReadOnly bool
}

// Overrides are per-tenant additions on top of a preset.
type Overrides struct {
	AllowBinds []BindRoot
	// SelfSocket is the host path (as dockerd sees it) of this tenant's own
	// broker socket; a bind of the daemon socket is rewritten to it when the
	// preset says `rewrite`.
	SelfSocket string
	// DaemonSockets are extra host paths considered "the daemon socket" (the
	// configured upstream path) besides /var/run/docker.sock and
	// /run/docker.sock.
	DaemonSockets []string
	// ProtectedPaths are the broker's own files (admin socket, socket
	// directory, state directory, as dockerd sees them): no bind root may
	// contain or lie inside one, and no bind may name, contain or lie
	// inside one (the SelfSocket bind excepted).
	ProtectedPaths []string
}

// Policy is a preset compiled with one tenant's overrides. It is immutable
// and safe for concurrent use. All compilation happens in NewPolicy, never
// per request.
type Policy struct {
	preset        *Preset
	bindRoots     []bindRoot
	selfSocket    string
	daemonSockets []string
	protected     []string
}

// NewPolicy compiles p with one tenant's overrides.
func NewPolicy(p *Preset, ov Overrides) (*Policy, error) {
	if p == nil {
		return nil, errors.New("nil preset")
	}
	pol := &Policy{preset: p}
	pol.bindRoots = append(pol.bindRoots, p.ctr.bindRoots...)
	for _, br := range ov.AllowBinds {
		root, err := cleanBindRoot(br.Path)
		if err != nil {
			return nil, fmt.Errorf("allowed bind: %w", err)
		}
		pol.bindRoots = append(pol.bindRoots, bindRoot{path: root, readOnly: br.ReadOnly})
	}
	if ov.SelfSocket != "" {
		if !path.IsAbs(ov.SelfSocket) {
			return nil, fmt.Errorf("self socket %q must be an absolute path", ov.SelfSocket)
		}
		pol.selfSocket = path.Clean(ov.SelfSocket)
		if strings.ContainsAny(pol.selfSocket, ":,") {
			return nil, fmt.Errorf("self socket %q contains ':' or ','", ov.SelfSocket)
		}
	}
	pol.daemonSockets = []string{"/var/run/docker.sock", "/run/docker.sock"}
	for _, s := range ov.DaemonSockets {
		if !path.IsAbs(s) {
			return nil, fmt.Errorf("daemon socket %q must be an absolute path", s)
		}
		pol.daemonSockets = append(pol.daemonSockets, path.Clean(s))
	}
	for _, s := range ov.ProtectedPaths {
		if !path.IsAbs(s) {
			return nil, fmt.Errorf("protected path %q must be an absolute path", s)
		}
		pol.protected = append(pol.protected, path.Clean(s))
	}
	for _, r := range pol.bindRoots {
		for _, s := range pol.daemonSockets {
			if r.path == s || isUnder(s, r.path) {
				// Fail closed: no allowed root may contain the daemon socket.
				return nil, fmt.Errorf("allowed bind root %q contains the daemon socket %q", r.path, s)
			}
		}
		for _, s := range pol.protected {
			// Fail closed: a root holding the broker's own files (or held by
			// them) would hand the admin API or other tenants' sockets out.
			if r.path == s || isUnder(s, r.path) {
				return nil, fmt.Errorf("allowed bind root %q contains the broker's own path %q", r.path, s)
			}
			if isUnder(r.path, s) {
				return nil, fmt.Errorf("allowed bind root %q lies inside the broker's own path %q", r.path, s)
			}
		}
	}
	return pol, nil
}

// Preset returns the preset this policy was compiled from.
func (p *Policy) Preset() *Preset { return p.preset }

// Decide applies the rules: method + glob path, first match wins, default
// deny. For allowed endpoints whose query alone decides (POST /build), it
// also applies the query rails. An object route is judged with its
// reference as it stands: the broker resolves it first (WithObjectID) so
// the rules see the full id that is forwarded.
func (p *Policy) Decide(req Request) Decision {
	if !req.intact() {
		// Fail closed: only Canonicalize makes a Request that is judged,
		// and its exported copies must still say what is judged.
		return malformed("canonical form", "request is not in canonical form")
	}
	if d, ok := p.versionRule(req); !ok {
		return d
	}
	var buf [32]string
	i, j := p.preset.firstMatch(req.method, appendSegments(buf[:0], req.path))
	return p.ruleDecision(req, i, j)
}

// DecideAnyObject judges an object route without knowing its object: it
// returns the decision and true when the rules give that decision whatever
// full id the reference resolves to, false when some rule could match one
// id and not another (a literal where the id goes), and for routes whose
// rules judge the tenant's reference itself (image routes that keep it).
// A refusal known this way costs no upstream call and, being the same
// for every object, tells nothing about other tenants' objects.
func (p *Policy) DecideAnyObject(req Request) (Decision, bool) {
	rt := req.route
	if !req.intact() || !rt.ForwardsResolvedID() {
		return Decision{}, false
	}
	if d, ok := p.versionRule(req); !ok {
		return d, true
	}
	// The path as it will be judged, with a stand-in for the id that no
	// literal matches (no glob holds a control byte): a glob that matches
	// it matches every id. One that would match only with a literal at the
	// id's place makes the decision depend on the object.
	var buf [32]string
	segs := appendSegments(buf[:0], rt.prefix+anyObject+rt.suffix)
	wild := strings.Count(rt.prefix, "/") - 1 // the id's segment
	for i := range p.preset.rules {
		r := &p.preset.rules[i]
		if !r.matchMethod(req.method) {
			continue
		}
		for j, g := range r.globs {
			if g.match(segs) {
				return p.ruleDecision(req, i, j), true
			}
			if g.matchWild(segs, wild) {
				return Decision{}, false
			}
		}
	}
	return p.ruleDecision(req, -1, -1), true
}

// anyObject stands for an object id in DecideAnyObject: no canonical path
// and no glob holds a control byte.
const anyObject = "\x00"

// versionRule applies min_api_version; ok is false when it refuses.
func (p *Policy) versionRule(req Request) (Decision, bool) {
	if p.preset.minAPI != "" && req.version != "" && versionLess(req.version, p.preset.minAPI) {
		return forbid(ReasonRuleDenied, "min_api_version", aboutValue("API version", req.version, setting("", "min_api_version", req.version)),
			"API version %s is older than %s, the oldest this preset accepts", req.version, p.preset.minAPI), false
	}
	return Decision{}, true
}

// ruleDecision is the decision of rule i's glob j (-1: none matched).
func (p *Policy) ruleDecision(req Request, i, j int) Decision {
	if i < 0 {
		// Default deny: nothing matched.
		return Decision{
			Status: http.StatusForbidden,
			Code:   ReasonRuleDenied,
			Reason: "no rule allows " + req.method + " " + req.path,
			Rule:   "default deny",
			// Subject: an allow rule for this route would permit it.
			Subject: ruleSubject(req),
		}
	}
	r := &p.preset.rules[i]
	if r.deny {
		reason := r.reason
		if reason == "" {
			reason = "rule denies " + req.method + " " + req.path
		}
		return Decision{Status: r.status, Code: ReasonRuleDenied, Reason: reason, Rule: r.labels[j], Subject: ruleSubject(req)}
	}
	if req.route.endpoint == EndpointBuild {
		if d := p.buildQueryRails(req); !d.Allow {
			return d
		}
	}
	return allow(r.labels[j])
}

// firstMatch returns the index of the first rule matching method and the
// canonical path segments, and of its matching glob; -1, -1 when none does.
func (p *Preset) firstMatch(method string, segs []string) (ruleIdx, globIdx int) {
	for i := range p.rules {
		r := &p.rules[i]
		if !r.matchMethod(method) {
			continue
		}
		for j, g := range r.globs {
			if g.match(segs) {
				return i, j
			}
		}
	}
	return -1, -1
}

func (r *rule) matchMethod(m string) bool {
	if r.methods == nil {
		return true
	}
	for _, rm := range r.methods {
		if rm == m {
			return true
		}
	}
	return false
}

// versionLess compares dotted numeric versions ("1.9" < "1.24"); missing
// parts count as 0. It does not allocate: it runs on every request.
func versionLess(a, b string) bool {
	for a != "" || b != "" {
		var x, y string
		x, a, _ = strings.Cut(a, ".")
		y, b, _ = strings.Cut(b, ".")
		x, y = strings.TrimLeft(x, "0"), strings.TrimLeft(y, "0")
		if len(x) != len(y) {
			return len(x) < len(y)
		}
		if x != y {
			return x < y
		}
	}
	return false
}

func (p *Policy) buildQueryRails(req Request) Decision {
	const rule = "build"
	for _, k := range []string{"remote", "networkmode"} {
		if len(req.query[k]) > 1 {
			return malformed(rule, "query parameter %q is repeated", k)
		}
	}
	if req.query.Get("remote") != "" && !p.preset.build.allowRemoteContext {
		return forbid(ReasonBodyDenied, "build.allow_remote_context", about("query remote", setting("build", "allow_remote_context", "true")), "query remote: remote build contexts are not allowed")
	}
	if nm := req.query.Get("networkmode"); !p.preset.build.allowHostNetwork && (strings.EqualFold(nm, "host") || hasPrefixFold(nm, "container:")) {
		return forbid(ReasonHostNamespace, "build.allow_host_network", about("query networkmode", setting("build", "allow_host_network", "true")), "query networkmode %s: builds may not share the host's or a container's network", q(nm))
	}
	return allow(rule)
}

// endpoint is an endpoint whose body (or query and headers) InspectBody judges.
type endpoint int

const (
	epNone endpoint = iota
	epContainerCreate
	epContainerUpdate
	epContainerStart
	epExecCreate
	epImageCreate
	epVolumeCreate
	epNetworkCreate
	epNetworkConnect
	epNetworkDisconnect
	epExecStart
	epArchivePut
	epAuth
)

// BodyPolicy tells the broker whether this (already allowed) request's body
// must be read and inspected, and the byte cap. The broker never decides from
// Content-Length or Content-Type: it reads up to limit+1 bytes and, if more
// than limit arrive, answers TooLarge(limit) without forwarding.
func (p *Policy) BodyPolicy(req Request) (inspect bool, limit int64) {
	switch req.route.body {
	case epNone:
		return false, 0
	case epArchivePut:
		return true, p.preset.maxArchive
	}
	return true, p.preset.maxBody
}

// InspectBody judges the body of an allowed request. It returns the decision
// and, when the broker must forward a changed body (the daemon-socket bind
// rewrite), the new body; nil means forward the original. header gives access
// to headers like X-Registry-Auth, whose value never appears in a Reason.
func (p *Policy) InspectBody(req Request, header http.Header, body []byte) (Decision, []byte) {
	ep := req.route.body
	if ep == epNone {
		return allow("no body inspection"), nil
	}
	if _, limit := p.BodyPolicy(req); int64(len(body)) > limit {
		return TooLarge(limit), nil
	}
	if len(body) > 0 && FormBody(header) {
		// dockerd's ParseForm reads a form-encoded body into the same values as
		// the query (body first): it could override what we judged.
		return malformed("strict body", "a form-encoded body is not accepted: it could override query parameters"), nil
	}
	switch ep {
	case epContainerCreate:
		return p.inspectContainerCreate(body)
	case epContainerUpdate:
		return p.inspectContainerUpdate(body), nil
	case epContainerStart:
		if d := startQuery(req); !d.Allow {
			return d, nil
		}
		return inspectContainerStart(body), nil
	case epExecCreate:
		return p.inspectExecCreate(body), nil
	case epImageCreate:
		return p.inspectImageCreate(req, header), nil
	case epAuth:
		return p.inspectAuth(body), nil
	case epVolumeCreate:
		return p.inspectVolumeCreate(body), nil
	case epNetworkCreate:
		return p.inspectNetworkCreate(body), nil
	case epNetworkConnect:
		return p.inspectNetworkConnect(body), nil
	case epNetworkDisconnect:
		return inspectTableOnly(body, BodyNetworkDisconnect), nil
	case epExecStart:
		return inspectTableOnly(body, BodyExecStart), nil
	case epArchivePut:
		return inspectArchive(body, 16*p.preset.maxArchive), nil
	}
	return allow("no body inspection"), nil
}

// FormBody reports whether a request declares a form-encoded body
// (application/x-www-form-urlencoded or multipart/form-data). dockerd's
// ParseForm reads such a body into the same values as the query, where the
// body wins: it could override what was judged (a prune's owner filter, an
// image pull's fromSrc). No Docker endpoint takes one, so the broker refuses
// them on every endpoint.
func FormBody(h http.Header) bool {
	for _, v := range h.Values("Content-Type") {
		// ParseMediaType returns the media type even when a parameter is
		// malformed, as dockerd's ParseForm reads it.
		mt, _, _ := mime.ParseMediaType(v)
		if mt == "" {
			mt, _, _ = strings.Cut(v, ";")
			mt = strings.ToLower(strings.TrimSpace(mt))
		}
		if mt == "application/x-www-form-urlencoded" || mt == "multipart/form-data" {
			return true
		}
	}
	return false
}

// Evaluate judges a request by the preset's rules alone: Canonicalize,
// Decide, and BodyPolicy/InspectBody when the endpoint inspects bodies (a
// nil body is judged as empty). target is path?query as a client sends it
// (percent-encoded); it is decoded once, as net/http would.
//
// It is not the dry run: `sgctl check` and CheckRequest run the broker's
// pipeline (broker/pipeline.Judge), which adds the form-body refusal,
// tenant isolation, bind resolution and pins, images and audit mode.
// Evaluate stays for callers that have only a policy (the tests of this
// package, of policy/suggest and of sgctl's suggest-policy), and it calls
// the same policy stages in the same order the pipeline does.
func (p *Policy) Evaluate(method, target string, header http.Header, body []byte) (Request, Decision) {
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return Request{}, malformed("canonicalize", "request target: %v", err)
	}
	req, err := Canonicalize(method, u.Path, u.RawQuery)
	if err != nil {
		return Request{}, malformed("canonicalize", "%v", err)
	}
	d := p.Decide(req)
	if !d.Allow {
		return req, d
	}
	inspect, limit := p.BodyPolicy(req)
	if !inspect {
		return req, d
	}
	if int64(len(body)) > limit {
		return req, TooLarge(limit)
	}
	if header == nil {
		header = http.Header{}
	}
	bd, _ := p.InspectBody(req, header, body)
	if !bd.Allow {
		return req, bd
	}
	if bd.Reason != "" {
		d.Reason = bd.Reason
	}
	return req, d
}

// isUnder reports whether p is strictly below dir, on whole segments.
func isUnder(p, dir string) bool {
	if dir == "/" {
		return p != "/"
	}
	return len(p) > len(dir) && strings.HasPrefix(p, dir) && p[len(dir)] == '/'
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}
