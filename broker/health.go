package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
)

// Health service names, besides "" (the broker itself).
const (
	HealthUpstream     = "sockguard.upstream"
	HealthTenantPrefix = "sockguard.tenant/"
)

// upstreamPingInterval is how often the broker pings dockerd on its own,
// so that it notices the daemon coming back (or going away) with no
// tenant traffic.
const upstreamPingInterval = 5 * time.Second

// Upstream states.
const (
	upstreamUnknown int32 = iota
	upstreamUp
	upstreamDown
)

// upstreamMonitor is the upstream's reachability as the broker last saw
// it, fed by every dial to dockerd and by a periodic ping. It logs each
// transition once (upstream_down, then upstream_up), never per request.
type upstreamMonitor struct {
	log   *slog.Logger
	state atomic.Int32 // upstreamUnknown, upstreamUp or upstreamDown

	mu    sync.Mutex // serializes transitions (and their log lines)
	since time.Time  // when the current state began
}

func newUpstreamMonitor(log *slog.Logger) *upstreamMonitor {
	return &upstreamMonitor{log: log, since: time.Now()}
}

// observe records one attempt to reach dockerd. The request path calls it
// on every dial: when the state does not change it costs one atomic load.
func (m *upstreamMonitor) observe(err error) {
	want := upstreamUp
	if err != nil {
		want = upstreamDown
	}
	if m.state.Load() == want {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	prev := m.state.Load()
	if prev == want {
		return
	}
	now := time.Now()
	m.state.Store(want)
	switch {
	case want == upstreamDown:
		m.log.Warn("upstream_down", "err", err)
	case prev == upstreamDown:
		m.log.Info("upstream_up", "down_for", now.Sub(m.since).Round(time.Millisecond))
	}
	m.since = now
}

// up reports whether dockerd answered the last attempt.
func (m *upstreamMonitor) up() bool { return m.state.Load() == upstreamUp }

// pinger is what the monitor asks of the daemon (*docker.Client): any
// answer but a server error, within a short bound, means it is there.
type pinger interface {
	Ping(ctx context.Context) error
}

// run pings dockerd every interval until ctx is done.
func (m *upstreamMonitor) run(ctx context.Context, up pinger, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := up.Ping(ctx); ctx.Err() == nil {
			m.observe(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// maxHealthWatches bounds Watch streams in flight: the health socket is
// open to every local user.
const maxHealthWatches = 64

// healthService is the gRPC health service, computed live: "" is the
// broker (NOT_SERVING once shutdown begins), "sockguard.upstream" is
// dockerd as the upstream monitor last saw it, "sockguard.tenant/NAME" is
// whether that tenant socket serves. A name that is not a known service
// is NOT_FOUND, as the protocol asks; nothing is kept per name, so
// tenants come and go without the service growing.
type healthService struct {
	healthpb.UnimplementedHealthServer
	b       *Broker
	watches chan struct{} // a slot per Watch in flight
	poll    time.Duration // how often a Watch looks for a change
}

var _ healthpb.HealthServer = (*healthService)(nil)

func newHealthService(b *Broker) *healthService {
	return &healthService{b: b, watches: make(chan struct{}, maxHealthWatches), poll: time.Second}
}

func (h *healthService) status(service string) (healthpb.HealthCheckResponse_ServingStatus, bool) {
	stopping := false
	select {
	case <-h.b.stopping:
		stopping = true
	default:
	}
	serving := func(ok bool) healthpb.HealthCheckResponse_ServingStatus {
		if ok && !stopping {
			return healthpb.HealthCheckResponse_SERVING
		}
		return healthpb.HealthCheckResponse_NOT_SERVING
	}
	switch {
	case service == "":
		return serving(true), true
	case service == HealthUpstream:
		return serving(h.b.upMon.up()), true
	case strings.HasPrefix(service, HealthTenantPrefix):
		info, err := h.b.reg.Get(strings.TrimPrefix(service, HealthTenantPrefix))
		if err != nil {
			return healthpb.HealthCheckResponse_SERVICE_UNKNOWN, false
		}
		return serving(info.Serving), true
	}
	return healthpb.HealthCheckResponse_SERVICE_UNKNOWN, false
}

func (h *healthService) Check(_ context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	st, ok := h.status(req.GetService())
	if !ok {
		return nil, status.Error(codes.NotFound, "unknown service")
	}
	return &healthpb.HealthCheckResponse{Status: st}, nil
}

// Watch sends the service's status now and at every change until the
// client goes away or the broker stops.
func (h *healthService) Watch(req *healthpb.HealthCheckRequest, stream grpc.ServerStreamingServer[healthpb.HealthCheckResponse]) error {
	select {
	case h.watches <- struct{}{}:
		defer func() { <-h.watches }()
	default:
		return status.Error(codes.ResourceExhausted, "too many health watches")
	}
	t := time.NewTicker(h.poll)
	defer t.Stop()
	last := healthpb.HealthCheckResponse_ServingStatus(-1)
	for {
		st, _ := h.status(req.GetService())
		if st != last {
			if err := stream.Send(&healthpb.HealthCheckResponse{Status: st}); err != nil {
				return err
			}
			last = st
		}
		select {
		case <-stream.Context().Done():
			return stream.Context().Err()
		case <-h.b.stopping:
			if st, _ := h.status(req.GetService()); st != last {
				// Best effort: the stream ends with Unavailable either way.
				_ = stream.Send(&healthpb.HealthCheckResponse{Status: st})
			}
			return status.Error(codes.Unavailable, "broker stopping")
		case <-t.C:
		}
	}
}

// newHealthServer is the gRPC server of --health-socket: the health
// service alone, no reflection, no admin API, a few streams per
// connection. Nothing it answers is secret: tenant names are already the
// names of the directories under the (world-readable) socket dir.
func newHealthServer(hs healthpb.HealthServer) *grpc.Server {
	srv := grpc.NewServer(
		grpc.MaxConcurrentStreams(8),
		grpc.ConnectionTimeout(adminHandshakeTimeout),
		// An idle connection gives its slot back (maxHealthConns).
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: healthIdleTimeout}),
	)
	healthpb.RegisterHealthServer(srv, hs)
	return srv
}

// Bounds of the health socket, which every local user may connect to.
const (
	// maxHealthConns is how many health connections may be open at once.
	// Past it, new ones wait in the listen backlog and hold none of the
	// broker's descriptors: unbounded, any local user could take every
	// descriptor the broker has and stop every tenant socket.
	maxHealthConns = 64
	// healthIdleTimeout closes a health connection with no call in
	// flight, so idle clients do not keep slots.
	healthIdleTimeout = 30 * time.Second
)

// listenHealth opens the health socket, mode 0666: any local user may ask.
// At most maxHealthConns connections are open at once.
func listenHealth(path string) (net.Listener, error) {
	ln, err := listenUnix(path, os.Geteuid(), os.Getegid(), 0o666)
	if errors.Is(err, errSocketInUse) {
		return nil, fmt.Errorf("another broker is already serving the health socket %s: %w", path, err)
	}
	if err != nil {
		return nil, err
	}
	return newLimitListener(ln, maxHealthConns), nil
}
