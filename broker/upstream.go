package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Upstream is the connection to the real Docker daemon: a pooled keep-alive
// HTTP/1.1 transport for ordinary requests and a raw dialer for hijacked
// ones. Every request dials (or reuses) afresh, so when the daemon comes
// back after an outage the next request simply works.
type Upstream struct {
	addr      string // as configured, for messages
	network   string // "unix" or "tcp"
	address   string // socket path or host:port
	transport *http.Transport
	// observe, when set, hears the result of every dial (see
	// upstreamMonitor); set before the first request.
	observe func(error)
	// owners remembers object owners by full id for isolation (one cache
	// per daemon, shared by every tenant: see ownerCache).
	owners *ownerCache
}

// ParseUpstream accepts unix:///path, /path, tcp://host:port or
// http://host:port.
func ParseUpstream(s string) (*Upstream, error) {
	u := &Upstream{addr: s, owners: newOwnerCache(defaultOwnerCacheSize)}
	switch {
	case strings.HasPrefix(s, "unix://"):
		u.network, u.address = "unix", strings.TrimPrefix(s, "unix://")
	case strings.HasPrefix(s, "/"):
		u.network, u.address = "unix", s
	case strings.HasPrefix(s, "tcp://"), strings.HasPrefix(s, "http://"):
		p, err := url.Parse(s)
		if err != nil || p.Host == "" {
			return nil, fmt.Errorf("%w: upstream %q: want host:port", ErrInvalidArgument, s)
		}
		u.network, u.address = "tcp", p.Host
	default:
		return nil, fmt.Errorf("%w: upstream %q: use unix:///path/to/docker.sock or tcp://host:port", ErrInvalidArgument, s)
	}
	if u.address == "" {
		return nil, fmt.Errorf("%w: upstream %q has no address", ErrInvalidArgument, s)
	}
	u.transport = &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return u.Dial(ctx)
		},
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		// No ResponseHeaderTimeout: docker wait and attach legitimately
		// take as long as the container runs.
		DisableCompression: true,
		ForceAttemptHTTP2:  false,
	}
	return u, nil
}

// String is the address as configured.
func (u *Upstream) String() string { return u.addr }

// SocketPath is the daemon socket path for a unix upstream, else "".
func (u *Upstream) SocketPath() string {
	if u.network == "unix" {
		return u.address
	}
	return ""
}

// Dial opens a new raw connection to the daemon.
func (u *Upstream) Dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, u.network, u.address)
	// A dial the caller gave up on says nothing about dockerd.
	if u.observe != nil && (err == nil || ctx.Err() == nil) {
		u.observe(err)
	}
	return c, err
}

// Version asks the daemon for its version, for status reports.
func (u *Upstream) Version(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker/version", nil)
	if err != nil {
		return "", err
	}
	resp, err := u.transport.RoundTrip(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /version: %s", resp.Status)
	}
	var v struct{ Version, APIVersion string }
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return "", fmt.Errorf("GET /version: %w", err)
	}
	return fmt.Sprintf("%s (API %s)", v.Version, v.APIVersion), nil
}

// Close releases idle pooled connections.
func (u *Upstream) Close() { u.transport.CloseIdleConnections() }
