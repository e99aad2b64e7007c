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
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockguard/sockguard/broker/docker"
	"github.com/sockguard/sockguard/broker/internal/bounded"
	"github.com/sockguard/sockguard/broker/isolation"
	"github.com/sockguard/sockguard/broker/nameindex"
	"github.com/sockguard/sockguard/broker/pipeline"
	"github.com/sockguard/sockguard/policy"
)

// Proxy is the hot path shared by every tenant socket. It holds no lock
// and never touches the disk: policies are compiled when a tenant is
// created or updated, denials go to the deny log's queue.
type Proxy struct {
	up *docker.Client
	// owners remembers object owners by full id for isolation: one cache
	// per daemon, shared by every tenant (see isolation.OwnerCache).
	owners *isolation.OwnerCache
	// names is the daemon's container name index (nil: none); it only
	// chooses the refusal of requests refused whatever their object is.
	names   *nameindex.Index
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
	registries pipeline.HostResolver
	rp         *httputil.ReverseProxy
	reqBase    string
}

// newProxy returns the proxy for upstream up. access, when not nil,
// receives one record per request (never a body or a header value).
func newProxy(up *docker.Client, denials denyRecorder, log, access *slog.Logger) *Proxy {
	p := &Proxy{
		up: up, denials: denials, log: log, access: access,
		owners:  isolation.NewOwnerCache(isolation.DefaultOwnerCacheSize),
		hist:    newRequestHistogram(),
		streams: newStreamHistogram(),
		reqBase: strconv.FormatInt(time.Now().UnixNano()%1e9, 36),
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      up.Transport(),
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
	buf, err := bounded.ReadAll(resp.Body, 64<<10)
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
		}{isolation.ScrubConflict(m.Message)})
	}
	resp.Body = io.NopCloser(bytes.NewReader(buf))
	resp.ContentLength = int64(len(buf))
	resp.Header.Set("Content-Length", strconv.Itoa(len(buf)))
	resp.Header.Del("Transfer-Encoding")
	return nil
}

// filterImageList drops the images tenant may not see from an image list.
func (p *Proxy) filterImageList(resp *http.Response, tenant string) error {
	buf, err := bounded.ReadAll(resp.Body, imageListLimit)
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

func (h *tenantHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	x := h.begin(w, r)
	defer x.end()
	release := func() {}
	defer func() { release() }()
	v := pipeline.Judge(x.ctx, pipeline.In{
		Tenant: pipeline.Tenant{ID: x.st.t.ID, Policy: x.st.pol, Audit: x.st.t.Mode == ModeAudit},
		Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery,
		Header: r.Header, Body: r.Body, Upgrade: isUpgrade(r.Header),
		// Requests in flight per socket are bounded: one tenant's flood of
		// slow requests (large bodies, many references to resolve) cannot
		// take every upstream connection and worker from the others.
		Admit: func() *pipeline.Refusal {
			var ok bool
			if release, ok = h.ts.requestSlot(h.maxInFlight); ok {
				return nil
			}
			return x.tooManyRequests(h.maxInFlight)
		},
	}, h.p.stages(x.st.t))
	x.record(v)
	switch v.Outcome {
	case pipeline.Refuse, pipeline.NotFound:
		// A refusal is decided: the slot is given back before its paced answer.
		release()
		x.answer(v)
	case pipeline.Failed:
		h.p.upstreamError(x.w, r, v.Err)
	default:
		h.p.expectName(v.Req)
		x.forward(v, release)
	}
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
