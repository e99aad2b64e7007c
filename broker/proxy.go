package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/httputil"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/sockguard/sockguard/policy"
)

// Proxy is the hot path shared by every tenant socket. It holds no lock
// and never touches the disk: policies are compiled when a tenant is
// created or updated, denials go to the deny log's queue.
type Proxy struct {
	up      *Upstream
	denials *DenyLog
	log     *slog.Logger
	rp      *httputil.ReverseProxy
	reqSeq  atomic.Uint64
	reqBase string
}

// NewProxy returns the proxy for upstream up.
func NewProxy(up *Upstream, denials *DenyLog, log *slog.Logger) *Proxy {
	p := &Proxy{up: up, denials: denials, log: log, reqBase: strconv.FormatInt(time.Now().UnixNano()%1e9, 36)}
	p.rp = &httputil.ReverseProxy{
		Rewrite:       p.rewrite,
		Transport:     up.transport,
		FlushInterval: -1, // logs -f, events and stats are flushed as they come
		ErrorHandler:  p.upstreamError,
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return p
}

// forward is what the handler decided to send upstream.
type forward struct {
	req      policy.Request
	body     []byte // the body to send when read is true
	bodyRead bool
}

type forwardKey struct{}

func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	f := pr.In.Context().Value(forwardKey{}).(*forward)
	out := pr.Out
	out.URL.Scheme = "http"
	out.URL.Host = "docker"
	// The canonical path, and only it, is what dockerd routes on.
	out.URL.Path = f.req.UpstreamPath()
	out.URL.RawPath = ""
	out.URL.RawQuery = f.req.RawQuery
	out.Host = pr.In.Host
	if f.bodyRead {
		setBody(out, f.body)
	}
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
	p  *Proxy
	ts *tenantServer
}

func (h *tenantHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := h.p
	st := h.ts.state.Load()
	cred, _ := credFrom(r.Context())
	reqID := p.reqBase + "-" + strconv.FormatUint(p.reqSeq.Add(1), 36)

	deny := func(req policy.Request, d policy.Decision) (refused bool) {
		h.ts.denied.Add(1)
		p.denials.Record(Denial{
			Time: time.Now().UTC(), Socket: st.t.Name, TenantID: st.t.ID, RequestID: reqID,
			PeerUID: cred.UID, PeerGID: cred.GID, PeerPID: cred.PID,
			Method: req.Method, Path: req.Path, RawTarget: rawTarget(r),
			Code: d.Code, Reason: d.Reason, Rule: d.Rule, Mode: st.t.Mode,
		})
		if st.t.Mode == ModeAudit {
			return false
		}
		status := d.Status
		if status == 0 {
			status = http.StatusForbidden
		}
		writeDockerError(w, status, "sockguard: denied by policy: "+d.Reason)
		return true
	}

	req, err := policy.Canonicalize(r.Method, r.URL.Path, r.URL.RawQuery)
	if err != nil {
		// Never forwarded, not even in audit mode: there is no canonical
		// form to judge or to send.
		h.denyMalformed(w, r, st, cred, reqID, err)
		return
	}
	// Fail closed on form bodies: dockerd's ParseForm would read query
	// parameters from them that the policy never saw. No Docker endpoint
	// takes a form body.
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "application/x-www-form-urlencoded" || ct == "multipart/form-data" {
		if deny(req, policy.Decision{Status: http.StatusBadRequest, Code: policy.ReasonMalformed,
			Reason: "form-encoded request bodies are not accepted", Rule: "canonical request"}) {
			return
		}
	}

	f := &forward{req: req}
	d := st.pol.Decide(req)
	if d.Allow {
		if inspect, limit := st.pol.BodyPolicy(req); inspect {
			// The body is read whatever Content-Length or Transfer-Encoding
			// claim, and never beyond the cap.
			body, err := readCapped(r.Body, limit)
			switch {
			case errors.Is(err, errTooLarge):
				d = policy.Decision{Status: http.StatusRequestEntityTooLarge, Code: policy.ReasonBodyTooLarge,
					Reason: fmt.Sprintf("request body is larger than %d bytes", limit), Rule: "body limit"}
				if deny(req, d) {
					return
				}
				// Audit mode: nothing to inspect, forward unread.
				goto send
			case err != nil:
				d = policy.Decision{Status: http.StatusBadRequest, Code: policy.ReasonMalformed,
					Reason: "cannot read request body: " + err.Error(), Rule: "body"}
				deny(req, d)
				return
			}
			f.body, f.bodyRead = body, true
			var nb []byte
			d, nb = st.pol.InspectBody(req, r.Header, body)
			if nb != nil {
				f.body = nb
			}
		}
	}
	if !d.Allow && deny(req, d) {
		return
	}
send:
	h.ts.allowed.Add(1)
	ctx := context.WithValue(r.Context(), forwardKey{}, f)
	if isUpgrade(r.Header) {
		p.hijack(w, r.WithContext(ctx), f, h.ts)
		return
	}
	p.rp.ServeHTTP(w, r.WithContext(ctx))
}

func (h *tenantHandler) denyMalformed(w http.ResponseWriter, r *http.Request, st *tenantState, cred PeerCred, reqID string, err error) {
	h.ts.denied.Add(1)
	h.p.denials.Record(Denial{
		Time: time.Now().UTC(), Socket: st.t.Name, TenantID: st.t.ID, RequestID: reqID,
		PeerUID: cred.UID, PeerGID: cred.GID, PeerPID: cred.PID,
		Method: r.Method, RawTarget: rawTarget(r),
		Code: policy.ReasonMalformed, Reason: err.Error(), Rule: "canonical request", Mode: ModeEnforce,
	})
	writeDockerError(w, http.StatusBadRequest, "sockguard: denied by policy: "+err.Error())
}

// rawTarget is the request target as received, bounded for storage.
func rawTarget(r *http.Request) string {
	s := r.RequestURI
	if len(s) > 512 {
		s = s[:512] + "..."
	}
	return s
}
