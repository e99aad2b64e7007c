package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sockguard/sockguard/policy"
)

// Metrics. Per-socket counters live in each tenantServer as atomics (the
// request path already maintains them); the collector reads them at scrape
// time, so metrics add nothing to the hot path but one histogram
// observation.

var (
	descRequests = prometheus.NewDesc("sockguard_requests_total",
		"Requests per tenant socket by decision (allow: forwarded; deny: refused, connections refused by a limit or peer check included; audit: forwarded by an audit-mode socket with at least one would-deny). Resets at restart.",
		[]string{"socket", "decision"}, nil)
	descDenials = prometheus.NewDesc("sockguard_denials_total",
		"Refusals per tenant socket by stable reason code (audit mode's would-denies are in sockguard_audit_would_denials_total). Resets at restart.", []string{"socket", "reason"}, nil)
	descWouldDeny = prometheus.NewDesc("sockguard_audit_would_denials_total",
		"Would-deny records of audit-mode sockets by stable reason code (the request was forwarded). Resets at restart.", []string{"socket", "reason"}, nil)
	descBuildInfo = prometheus.NewDesc("sockguard_build_info",
		"Always 1; the labels say which broker build runs.", []string{"version", "goversion"}, nil)
	descConns = prometheus.NewDesc("sockguard_active_connections",
		"Open client connections per tenant socket, hijacked streams included (what --max-conns-per-socket limits).", []string{"socket"}, nil)
	descStreams = prometheus.NewDesc("sockguard_hijacked_streams",
		"Attach and exec streams in flight per tenant socket.", []string{"socket"}, nil)
	descTenants = prometheus.NewDesc("sockguard_tenants",
		"Tenant sockets known to the broker, by state.", []string{"state"}, nil)
	descUpstream = prometheus.NewDesc("sockguard_upstream_up",
		"1 if the upstream Docker daemon answered a ping at scrape time.", nil, nil)
	descWritten = prometheus.NewDesc("sockguard_deny_log_records_written_total",
		"Deny-log records committed to the store since the broker started (resets at restart; the stored count is in sgctl status).", nil, nil)
	descDropped = prometheus.NewDesc("sockguard_deny_log_records_dropped_total",
		"Deny-log records dropped because the writer could not keep up. Resets at restart.", nil, nil)
	descEvicted = prometheus.NewDesc("sockguard_deny_log_records_evicted_total",
		"Deny-log records removed by the count bounds (--deny-log-max-records, --deny-log-max-records-per-tenant). Resets at restart.", nil, nil)
	descUndecodable = prometheus.NewDesc("sockguard_deny_log_records_undecodable_total",
		"Stored deny-log records that listings and watches skipped because they do not decode. Resets at restart.", nil, nil)
	descInvalidRecords = prometheus.NewDesc("sockguard_tenant_records_invalid",
		"Stored tenant records that failed their checksum or validation at start: listed as failed, never served (also counted in sockguard_tenants{state=\"failed\"}).", nil, nil)
)

// collector exposes the broker's live counters.
type collector struct {
	b *Broker
}

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBuildInfo, descWouldDeny, descRequests, descDenials, descConns, descStreams, descTenants, descUpstream, descWritten, descDropped, descEvicted, descUndecodable, descInvalidRecords} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	b := c.b
	serving, failed, invalid := 0, 0, 0
	for _, s := range b.reg.servers() {
		name := s.state.Load().t.Name
		if s.invalid {
			invalid++
		}
		if s.srv == nil {
			failed++
		} else {
			serving++
		}
		ch <- prometheus.MustNewConstMetric(descRequests, prometheus.CounterValue, float64(s.allowed.Load()), name, "allow")
		ch <- prometheus.MustNewConstMetric(descRequests, prometheus.CounterValue, float64(s.denied.Load()), name, "deny")
		ch <- prometheus.MustNewConstMetric(descRequests, prometheus.CounterValue, float64(s.audited.Load()), name, "audit")
		for code := range s.byReason {
			if n := s.byReason[code].Load(); n > 0 {
				ch <- prometheus.MustNewConstMetric(descDenials, prometheus.CounterValue, float64(n), name, reasonLabel(policy.ReasonCode(code)))
			}
			if n := s.wouldDeny[code].Load(); n > 0 {
				ch <- prometheus.MustNewConstMetric(descWouldDeny, prometheus.CounterValue, float64(n), name, reasonLabel(policy.ReasonCode(code)))
			}
		}
		ch <- prometheus.MustNewConstMetric(descConns, prometheus.GaugeValue, float64(max(s.conns.Load(), 0)), name)
		ch <- prometheus.MustNewConstMetric(descStreams, prometheus.GaugeValue, float64(s.streamCount()), name)
	}
	ch <- prometheus.MustNewConstMetric(descBuildInfo, prometheus.GaugeValue, 1, b.cfg.Version, runtime.Version())
	ch <- prometheus.MustNewConstMetric(descTenants, prometheus.GaugeValue, float64(serving), "serving")
	ch <- prometheus.MustNewConstMetric(descTenants, prometheus.GaugeValue, float64(failed), "failed")
	ch <- prometheus.MustNewConstMetric(descInvalidRecords, prometheus.GaugeValue, float64(invalid))
	up := 0.0
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := b.up.Version(ctx); err == nil {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(descUpstream, prometheus.GaugeValue, up)
	ch <- prometheus.MustNewConstMetric(descWritten, prometheus.CounterValue, float64(b.denials.Written()))
	ch <- prometheus.MustNewConstMetric(descDropped, prometheus.CounterValue, float64(b.denials.Dropped()))
	ch <- prometheus.MustNewConstMetric(descEvicted, prometheus.CounterValue, float64(b.denials.Evicted()))
	ch <- prometheus.MustNewConstMetric(descUndecodable, prometheus.CounterValue, float64(b.denials.Undecodable()))
}

// reasonLabel is the reason code as a metric label ("rule-denied").
func reasonLabel(c policy.ReasonCode) string {
	return strings.ReplaceAll(c.String(), "_", "-")
}

// newRequestHistogram is the request latency histogram, per socket.
// Streams (streamKind) are not observed here: their length is the
// container's or the client's, not ours, and would drown the latencies an
// alert looks at.
func newRequestHistogram() *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "sockguard_request_duration_seconds",
		Help:    "Time from request to the end of the response, per tenant socket and decision (allow, deny, audit); streams are in sockguard_stream_duration_seconds. Resets at restart.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	}, []string{"socket", "decision"})
}

// newStreamHistogram is how long forwarded streams last, per socket and
// kind (streamKinds: a bounded set).
func newStreamHistogram() *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "sockguard_stream_duration_seconds",
		Help:    "How long forwarded streams lasted (kind: attach, exec, logs, events, wait, stats, other upgraded connections), per tenant socket; observed when the stream ends. Resets at restart.",
		Buckets: []float64{.1, 1, 10, 60, 300, 900, 3600, 4 * 3600, 24 * 3600},
	}, []string{"socket", "kind"})
}

// observe puts one finished request into the request or the stream
// histogram. A refused stream route is a request: its answer is ours.
func (p *Proxy) observe(socket string, req policy.Request, outcome string, d time.Duration) {
	kind := ""
	switch outcome {
	case "hijacked":
		if kind = streamKind(req); kind == "" {
			kind = "other"
		}
	case "allow", "audit":
		kind = streamKind(req)
	}
	if kind != "" {
		p.streams.WithLabelValues(socket, kind).Observe(d.Seconds())
		return
	}
	p.hist.WithLabelValues(socket, outcome).Observe(d.Seconds())
}

// streamKind names the routes whose answer streams for as long as a
// container runs or a client listens, or "" for an ordinary request.
// Query flags are read the way dockerd reads them.
func streamKind(req policy.Request) string {
	rt := req.Route()
	switch rt.Endpoint() {
	case policy.EndpointEvents:
		return "events"
	case policy.EndpointExecObject:
		if rt.Action() == "start" {
			return "exec"
		}
		return ""
	case policy.EndpointContainerObject:
	default:
		return ""
	}
	switch op := rt.Action(); {
	case op == "attach":
		return "attach"
	case op == "wait" && req.Method == http.MethodPost:
		return "wait"
	case op == "logs" && queryBool(req, "follow", false):
		return "logs"
	case op == "stats" && queryBool(req, "stream", true) && !queryBool(req, "one-shot", false):
		return "stats"
	}
	return ""
}

// queryBool reads a boolean query value as dockerd does: absent is def;
// "", "0", "no", "false" and "none" are false; anything else is true.
func queryBool(req policy.Request, key string, def bool) bool {
	if req.Params(key) == nil {
		return def
	}
	switch strings.ToLower(strings.TrimSpace(req.Param(key))) {
	case "", "0", "no", "false", "none":
		return false
	}
	return true
}

// metricsListener listens on "unix:///path" or a loopback "host:port".
// Metrics say which tenants exist and what they were refused, so they are
// never served on a non-loopback address.
func metricsListener(addr string) (net.Listener, error) {
	if p, ok := strings.CutPrefix(addr, "unix://"); ok {
		return listenUnix(p, 0, 0, 0o600)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("%w: --metrics-listen %q: want unix:///path or 127.0.0.1:PORT", ErrInvalidArgument, addr)
	}
	ip := net.ParseIP(host)
	if host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("%w: --metrics-listen %q: only loopback addresses or a unix socket are allowed", ErrInvalidArgument, addr)
	}
	return net.Listen("tcp", addr)
}

// serveMetrics serves /metrics until ctx is done.
func serveMetrics(ctx context.Context, ln net.Listener, reg *prometheus.Registry, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("metrics_serve_failed", "err", err)
	}
}

func newMetricsRegistry(b *Broker, hist *prometheus.HistogramVec) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{b: b}, hist, b.reg.proxy.streams,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}
