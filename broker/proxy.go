package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockguard/sockguard/broker/store"
	"github.com/sockguard/sockguard/policy"
)

// Proxy is the hot path shared by every tenant socket. It holds no lock
// and never touches the disk: policies are compiled when a tenant is
// created or updated, denials go to the deny log's queue.
type Proxy struct {
	up      *Upstream
	denials denyRecorder
	log     *slog.Logger
	access  *slog.Logger             // nil: no access log
	hist    *prometheus.HistogramVec // requests answered, streams not included
	streams *prometheus.HistogramVec // streams (see streamKind), by kind
	// resolveBinds: the broker shares the daemon's filesystem, so bind
	// sources are resolved (symlinks) before they are judged.
	resolveBinds bool
	// pins judges and pins the bind sources of container creates (nil:
	// none, in unit tests only).
	pins *pinner
	// images keeps credential-pulled images to their tenants (images.go);
	// nil only in tests that do not exercise images.
	images *imageGuard
	// registries resolves registry names of pulls and logins (nil: the
	// default resolver), which must not be the broker's own host.
	registries hostResolver
	rp         *httputil.ReverseProxy
	reqBase    string
}

// NewProxy returns the proxy for upstream up. access, when not nil,
// receives one record per request (never a body or a header value).
func NewProxy(up *Upstream, denials denyRecorder, log, access *slog.Logger) *Proxy {
	p := &Proxy{
		up: up, denials: denials, log: log, access: access,
		hist:    newRequestHistogram(),
		streams: newStreamHistogram(),
		reqBase: strconv.FormatInt(time.Now().UnixNano()%1e9, 36),
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      up.transport,
		FlushInterval:  -1, // logs -f, events and stats are flushed as they come
		BufferPool:     &bufferPool{},
		ErrorHandler:   p.upstreamError,
		ModifyResponse: p.modifyResponse,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return p
}

// bufferPool recycles the response copy buffers: without it
// ReverseProxy allocates 32 KiB per response.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }

// forward is what the handler decided to send upstream.
type forward struct {
	req      policy.Request
	body     []byte // the body to send when read is true
	bodyRead bool
	// answered gives back the request's in-flight slot once dockerd's
	// answer head is in; a stream then goes on without it.
	answered func()
	// tenant whose image list is filtered (GET /images/json), or "".
	listImagesFor string
	pull          *pullPlan // a pull whose progress stream settles a grant
}

type forwardKey struct{}

func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	f := pr.In.Context().Value(forwardKey{}).(*forward)
	out := pr.Out
	// The canonical method, path and query, and only they, are what
	// dockerd routes on: the ones judged.
	out.Method, out.URL.Path, out.URL.RawQuery = f.req.Target()
	out.URL.Scheme = "http"
	out.URL.Host = "docker"
	out.URL.RawPath = ""
	out.Host = pr.In.Host
	if f.bodyRead {
		setBody(out, f.body)
	}
}

// modifyResponse scrubs what dockerd's answers could leak about other
// tenants: the id in a 409 name conflict on container create or rename.
func (p *Proxy) modifyResponse(resp *http.Response) error {
	f, _ := resp.Request.Context().Value(forwardKey{}).(*forward)
	if f != nil && f.answered != nil {
		f.answered()
	}
	if f != nil && resp.StatusCode == http.StatusOK {
		switch {
		case f.pull != nil:
			resp.Body = &pullBody{ReadCloser: resp.Body, ctx: resp.Request.Context(), p: f.pull}
		case f.listImagesFor != "":
			return p.filterImageList(resp, f.listImagesFor)
		}
	}
	if resp.StatusCode != http.StatusConflict {
		return nil
	}
	if f == nil || !f.req.Route().NamesContainerInConflict() {
		return nil
	}
	buf, err := readCapped(resp.Body, 64<<10)
	resp.Body.Close()
	if err != nil {
		return err
	}
	var m struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(buf, &m) == nil && m.Message != "" {
		buf, _ = json.Marshal(struct {
			Message string `json:"message"`
		}{scrubConflict(m.Message)})
	}
	resp.Body = io.NopCloser(bytes.NewReader(buf))
	resp.ContentLength = int64(len(buf))
	resp.Header.Set("Content-Length", strconv.Itoa(len(buf)))
	resp.Header.Del("Transfer-Encoding")
	return nil
}

// filterImageList drops the images tenant may not see from an image list.
func (p *Proxy) filterImageList(resp *http.Response, tenant string) error {
	buf, err := readCapped(resp.Body, imageListLimit)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("image list: %w", err)
	}
	if buf, err = p.images.filterList(tenant, buf); err != nil {
		return err
	}
	resp.Body = io.NopCloser(bytes.NewReader(buf))
	resp.ContentLength = int64(len(buf))
	resp.Header.Set("Content-Length", strconv.Itoa(len(buf)))
	resp.Header.Del("Transfer-Encoding")
	return nil
}

func setBody(r *http.Request, body []byte) {
	r.ContentLength = int64(len(body))
	r.TransferEncoding = nil
	r.Header.Del("Transfer-Encoding")
	r.Header.Set("Content-Length", strconv.Itoa(len(body)))
	r.GetBody = nil
	if len(body) == 0 {
		r.Body = http.NoBody
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
}

func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return // the client went away; nobody to answer
	}
	p.log.Warn("upstream_error", "upstream", p.up.String(), "err", err)
	writeDockerError(w, http.StatusBadGateway,
		fmt.Sprintf("sockguard: cannot reach the Docker daemon at %s: %v", p.up.String(), err))
}

// writeDockerError answers the way dockerd does, so the docker CLI prints
// the message as the reason.
func writeDockerError(w http.ResponseWriter, status int, msg string) {
	buf, _ := json.Marshal(struct {
		Message string `json:"message"`
	}{msg})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(buf)+1))
	w.WriteHeader(status)
	w.Write(append(buf, '\n'))
}

// errTooLarge is returned by readCapped for a body over the cap.
var errTooLarge = errors.New("body too large")

// readCapped reads all of r but never more than limit bytes.
func readCapped(r io.Reader, limit int64) ([]byte, error) {
	buf, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(buf)) > limit {
		return nil, errTooLarge
	}
	return buf, nil
}

// tenantHandler serves one tenant socket.
type tenantHandler struct {
	p           *Proxy
	ts          *tenantServer
	maxInFlight int // requests in flight on this socket
	// Request ids are the broker's base, this socket's random tag and
	// this socket's own sequence: unique across sockets, and a tenant
	// counting its ids learns nothing about other tenants' traffic (a
	// broker-wide sequence would show it).
	reqTag string
	reqSeq atomic.Uint64
}

// newRequestTag is a socket's random part of its request ids.
func newRequestTag() string {
	return strconv.FormatUint(rand.Uint64()%(36*36*36*36), 36)
}

const isolationBodyLimit = 1 << 20

func (h *tenantHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := h.p
	st := h.ts.state.Load()
	ctx := r.Context()
	cred, _ := credFrom(ctx)
	reqID := p.reqBase + h.reqTag + "-" + strconv.FormatUint(h.reqSeq.Add(1), 36)
	w.Header().Set(RequestIDHeader, reqID)

	start := time.Now()
	var req policy.Request
	method := r.Method // the canonical method once there is one, for the logs
	outcome := "allow"
	var sw *statusWriter
	if p.access != nil {
		sw = &statusWriter{ResponseWriter: w}
		w = sw
	}
	defer func() {
		d := time.Since(start)
		p.observe(st.t.Name, req, outcome, d)
		if sw != nil {
			p.access.LogAttrs(ctx, slog.LevelInfo, "request",
				slog.String("request_id", reqID), slog.String("socket", st.t.Name),
				slog.Uint64("peer_uid", uint64(cred.UID)), slog.Int("peer_pid", int(cred.PID)),
				slog.String("method", clip(method, store.MaxDenialMethod)), slog.String("path", clip(req.Path, store.MaxDenialPath)),
				slog.String("decision", outcome), slog.Int("status", sw.status),
				slog.Duration("duration", d))
		}
	}()
	record := func(d policy.Decision, mode Mode) {
		if mode == ModeAudit {
			outcome = "audit" // forwarded anyway, unless a later check refuses it
			h.ts.countWouldDeny(d.Code)
		} else {
			outcome = "deny"
			h.ts.countDenial(d.Code)
		}
		p.denials.Record(store.Denial{
			Time: time.Now().UTC(), Socket: st.t.Name, TenantID: st.t.ID, RequestID: reqID,
			PeerUID: cred.UID, PeerGID: cred.GID, PeerPID: cred.PID,
			Method: method, Path: req.Path, RawTarget: store.SafeTarget(r.RequestURI),
			Code: d.Code, Reason: d.Reason, Rule: d.Rule, Mode: mode, Subject: denialSubject(d.Subject),
		})
	}
	// release gives back the request's in-flight slot (when it has one).
	release := func() {}
	defer func() { release() }()
	// answer records a refusal and, paced, answers it with msg. The
	// in-flight slot is given back first: a refusal is decided, only its
	// answer waits.
	answer := func(d policy.Decision, msg string) {
		record(d, ModeEnforce)
		release()
		h.ts.pacer.wait(ctx)
		writeDockerError(w, d.Status, msg)
	}
	// refuse answers a decision that is never forwarded, whatever the mode.
	refuse := func(d policy.Decision) { answer(d, refusalMessage(st.t, reqID, req, d)) }
	// deny applies the socket's mode: it refuses (and returns true), or in
	// audit mode records a would-deny and lets the request through.
	deny := func(d policy.Decision) bool {
		if st.t.Mode == ModeAudit {
			record(d, ModeAudit)
			return false
		}
		refuse(d)
		return true
	}
	// isolationFailed answers an isolation error. A foreign or missing
	// object gets dockerd's own answer for a missing one, so its existence
	// is not confirmed; only a foreign one is recorded and paced.
	isolationFailed := func(err error) {
		var nf *errNoSuchObject
		var amb errAmbiguous
		var taken *errNameTaken
		var hidden *errImageHidden
		var missing *errImageMissing
		var pr *errPullRefused
		switch {
		case errors.As(err, &hidden):
			// dockerd's own answer for a missing image: on create, the
			// docker CLI then pulls with the tenant's own credentials.
			answer(policy.Decision{Status: http.StatusNotFound, Code: policy.ReasonForeignObject,
				Reason: "image pulled with credentials by another tenant: " + hidden.ref, Rule: "image ownership"}, hidden.Error())
		case errors.As(err, &missing):
			// Really missing: dockerd's answer, neither recorded nor paced
			// (but held as long as a paced refusal would be now, so a hidden
			// image cannot be told from a missing one by the delay).
			outcome = "not_found"
			h.ts.pacer.waitBacklog(ctx)
			writeDockerError(w, missing.status, missing.msg)
		case errors.As(err, &pr):
			refuse(policy.Decision{Status: pr.status, Code: policy.ReasonMalformed, Reason: pr.msg, Rule: "image ownership"})
		case errors.As(err, &taken):
			answer(policy.Decision{Status: http.StatusConflict, Code: policy.ReasonForeignObject,
				Reason: taken.Error() + " by another tenant", Rule: "tenant isolation"}, taken.Error())
		case errors.As(err, &nf) && nf.foreign:
			answer(policy.Decision{Status: nf.status(), Code: policy.ReasonForeignObject,
				Reason: "not owned by this tenant: " + nf.Error(), Rule: "tenant isolation"}, nf.Error())
		case errors.As(err, &nf):
			// Missing: not a denial (compose and docker inspect probe
			// names that do not exist yet).
			outcome = "not_found"
			h.ts.pacer.waitBacklog(ctx)
			writeDockerError(w, nf.status(), nf.Error())
		case errors.As(err, &amb):
			refuse(policy.Decision{Status: http.StatusBadRequest, Code: policy.ReasonMalformed, Reason: string(amb), Rule: "tenant isolation"})
		default:
			p.upstreamError(w, r, err)
		}
	}

	var err error
	if req, err = policy.Canonicalize(r.Method, r.URL.Path, r.URL.RawQuery); err != nil {
		// Never forwarded, not even in audit mode: there is no canonical
		// form to judge or to send.
		refuse(policy.Decision{Status: http.StatusBadRequest, Code: policy.ReasonMalformed, Reason: err.Error(), Rule: "canonical request"})
		return
	}
	method = req.Method
	// Requests in flight per socket are bounded: one tenant's flood of
	// slow requests (large bodies, many references to resolve) cannot
	// take every upstream connection and worker from the others.
	var ok bool
	if release, ok = h.ts.requestSlot(h.maxInFlight); !ok {
		// Close after the answer: the unread body of a refused request
		// (possibly one that never comes) is not waited for.
		w.Header().Set("Connection", "close")
		answer(policy.Decision{Status: http.StatusTooManyRequests, Code: policy.ReasonLimit,
			Reason: fmt.Sprintf("over the limit of %d requests in flight on this socket", h.maxInFlight), Rule: "requests in flight limit"},
			fmt.Sprintf("sockguard: too many requests in flight on this socket (limit %d, broker --max-requests-per-socket); retry when earlier requests have been answered [socket %s, request %s]", h.maxInFlight, st.t.Name, reqID))
		return
	}

	// Fail closed on form bodies on every endpoint, not only the inspected
	// ones: their values would win over the query the policy and the
	// isolation filters saw.
	if policy.FormBody(r.Header) {
		refuse(policy.Decision{Status: http.StatusBadRequest, Code: policy.ReasonMalformed,
			Reason: "form-encoded request bodies are not accepted", Rule: "canonical request"})
		return
	}

	// Tenant isolation is enforced in every mode: audit relaxes the
	// policy, never the boundary between tenants. Object routes are
	// resolved before the rules so that another tenant's object looks
	// missing whatever the rules would say.
	iso := isolator{up: p.up, owner: st.t.ID}
	rt := req.Route()
	if k, ok := kindOf(rt.Object()); ok {
		id, err := iso.resolve(ctx, k, rt.Ref())
		if err == nil {
			req, err = req.WithObjectID(id)
		}
		if err != nil {
			isolationFailed(err)
			return
		}
	}
	if req, err = iso.isolateQuery(ctx, req); err != nil {
		isolationFailed(err)
		return
	}
	// Images a request reads (inspect, history, export) resolve before the
	// rules, so another tenant's image looks missing whatever they say;
	// images it changes (tag, push, delete) after them, so a refused route
	// costs no upstream call. Either way hidden and missing answer alike.
	imageRoute := func(before bool) bool {
		if p.images == nil {
			return true
		}
		if rt.Object() != policy.ObjectImage || (req.Method == http.MethodGet) != before {
			return true
		}
		op := opOther
		if rt.Action() == "json" {
			op = opInspect
		}
		id, err := p.images.checkRef(ctx, op, st.t.ID, rt.Ref())
		if err == nil && rt.ForwardsResolvedID() {
			// The id that was checked, so a tag moved meanwhile
			// cannot show another image.
			req, err = req.WithObjectID(id)
		}
		if err != nil {
			isolationFailed(err)
			return false
		}
		return true
	}
	if !imageRoute(true) {
		return
	}

	f := &forward{req: req, answered: release}
	pinID := ""
	d := st.pol.Decide(req)
	if !d.Allow && deny(d) {
		return
	}
	if !imageRoute(false) {
		return
	}
	inspect, limit := st.pol.BodyPolicy(req)
	inspect = inspect && d.Allow // in audit mode a denied route is not inspected
	isolated := rt.BodyIsolated()
	isCreate := rt.CreatesContainer()
	if inspect || isolated {
		if !inspect {
			limit = isolationBodyLimit
		}
		// The body is read whatever Content-Length or Transfer-Encoding
		// claim, and never beyond the cap.
		body, err := readCapped(r.Body, limit)
		switch {
		case errors.Is(err, errTooLarge):
			refuse(policy.TooLarge(limit))
			return
		case err != nil:
			refuse(policy.Decision{Status: http.StatusBadRequest, Code: policy.ReasonMalformed,
				Reason: "cannot read request body: " + err.Error(), Rule: "body"})
			return
		}
		f.body, f.bodyRead = body, true
		if isCreate && p.resolveBinds {
			// Judge and forward the real paths, so a symlink under an
			// allowed root cannot reach outside it.
			rb, err := policy.ResolveBindSources(body, resolveHostPath)
			switch {
			case errors.Is(err, policy.ErrMalformed):
				refuse(policy.Decision{Status: http.StatusBadRequest, Code: policy.ReasonMalformed, Reason: err.Error(), Rule: "strict body"})
				return
			case err != nil:
				if deny(policy.Decision{Status: http.StatusForbidden, Code: policy.ReasonBindMount, Reason: err.Error(), Rule: "bind source resolution"}) {
					return
				}
			case rb != nil:
				body, f.body = rb, rb
			}
		}
		if inspect {
			d, nb := st.pol.InspectBody(req, r.Header, body)
			if !d.Allow && (d.Code == policy.ReasonMalformed || d.Code == policy.ReasonBodyTooLarge) {
				// An ambiguous body is never forwarded, even in audit mode.
				refuse(d)
				return
			}
			if !d.Allow && deny(d) {
				return
			}
			if nb != nil {
				f.body = nb
			}
			res := p.registries
			if res == nil {
				res = net.DefaultResolver
			}
			if d, ok := checkRegistryHost(ctx, res, st.pol, req, body); !ok && deny(d) {
				return
			}
		}
		if isolated {
			var err error
			switch rt.Endpoint() {
			case policy.EndpointContainerCreate:
				f.body, err = iso.isolateContainerCreate(ctx, f.body)
			case policy.EndpointNetworkCreate:
				f.body, err = iso.isolateNetworkCreate(ctx, f.body)
			case policy.EndpointVolumeCreate:
				f.body, err = iso.isolateVolumeCreate(ctx, f.body)
			case policy.EndpointNetworkConnect, policy.EndpointNetworkDisconnect:
				f.body, err = iso.isolateNetworkConnect(ctx, req, f.body)
			default: // container start
				err = isolateContainerStart(f.body)
			}
			if err != nil {
				isolationFailed(err)
				return
			}
		}
		if isCreate && p.images != nil {
			// The image, checked and forwarded by its id (images.go),
			// before anything is pinned.
			var err error
			if f.body, err = p.images.checkCreate(ctx, st.t.ID, f.body); err != nil {
				isolationFailed(err)
				return
			}
		}
		if isCreate && p.pins != nil {
			// Last, on the body as it will be sent: each host bind source is
			// judged again against the broker's own paths and pinned, so
			// nothing done under the tenant's bind roots from now on
			// changes what a start or restart mounts. Enforced in every mode.
			nb, id, err := p.pins.prepare(ctx, st.t.ID, st.t.Name, f.body)
			var pr *pinRefused
			switch {
			case errors.As(err, &pr):
				refuse(policy.Decision{Status: pr.status, Code: policy.ReasonBindMount, Reason: err.Error(), Rule: "bind pins"})
				return
			case err != nil:
				p.log.Error("bind_pin_failed", "socket", st.t.Name, "err", err)
				refuse(policy.Decision{Status: http.StatusInternalServerError, Code: policy.ReasonBindMount,
					Reason: "cannot pin the bind sources: " + err.Error(), Rule: "bind pins"})
				return
			}
			f.body, pinID = nb, id
		}
	}

	if pinID != "" {
		// The pins stay only if dockerd answers that it created the
		// container; the status is what the client got.
		cw := &statusWriter{ResponseWriter: w}
		w = cw
		defer func() { p.pins.finish(st.t.ID, pinID, cw.status == http.StatusCreated) }()
	}
	if p.pins != nil && rt.MayRemoveContainer() {
		// The container may be gone once dockerd answers (rm, prune, or
		// wait for an --rm container): sweep its pins.
		defer p.pins.kickSweep()
	}

	if p.images != nil {
		switch rt.Endpoint() {
		case policy.EndpointImagePull:
			f.pull, err = p.images.beginPull(ctx, st.t.ID, req, r.Header)
			if f.pull != nil {
				defer f.pull.done()
			}
		case policy.EndpointImageExport:
			err = p.images.checkExport(ctx, st.t.ID, req.Params("names"))
		case policy.EndpointImageList:
			f.listImagesFor = st.t.ID
		}
		if err != nil {
			isolationFailed(err)
			return
		}
	}

	if outcome == "audit" {
		h.ts.audited.Add(1)
	} else {
		h.ts.allowed.Add(1)
	}
	ctx = context.WithValue(ctx, forwardKey{}, f)
	if isUpgrade(r.Header) {
		if rt.MayUpgrade() {
			if p.hijack(w, r.WithContext(ctx), f, h.ts) {
				outcome = "hijacked"
			}
			return
		}
		// Only the streaming routes switch protocols. Any other request
		// asking to goes through the reverse proxy like the rest, so its
		// answer passes the same filters (the 409 scrub, the image list,
		// the pull settlement): the upgrade intent is dropped.
		r.Header.Del("Upgrade")
	}
	p.rp.ServeHTTP(w, r.WithContext(ctx))
}

// statusWriter remembers the status for the access log. Unwrap lets
// http.ResponseController reach Flush and Hijack underneath.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
