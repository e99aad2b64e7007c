// Package docker is the broker's one client of the upstream Docker daemon.
// It owns the transport (the dialer, and the pooled keep-alive HTTP/1.1
// connections that the reverse proxy forwards tenant requests over) and the
// typed calls the broker makes on its own behalf: ping and version, inspect
// of containers, exec instances, networks, volumes and images, the lists a
// purge or a pin sweep needs, remove, volume create and the registry check
// of a pull.
//
// Errors are classified, never turned into status codes here: an answer
// other than the call's success is a *StatusError (errors.Is it with
// ErrNotFound for a 404, ErrRejected for any 4xx: the request's fault,
// not the daemon's), and a daemon that could not be asked is
// ErrUnreachable. Callers decide what each means for a tenant.
//
// Nothing here caches, judges or knows about tenants: owner labels, filters
// and the owner cache belong to the isolation code that calls it.
package docker

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sockguard/sockguard/broker/errdefs"
)

// Client is the connection to the upstream Docker daemon: a pooled
// keep-alive HTTP/1.1 transport for ordinary requests and a raw dialer for
// hijacked ones. Every request dials (or reuses) afresh, so when the
// daemon comes back after an outage the next request simply works. A
// Client is safe for concurrent use.
type Client struct {
	addr      string // as configured, for messages
	network   string // "unix" or "tcp"
	address   string // socket path or host:port
	transport *http.Transport
	// onDial, when set, hears the result of every dial the caller did not
	// give up on; fixed at New.
	onDial func(error)
}

// New parses addr (unix:///path, /path, tcp://host:port or
// http://host:port) into a client. onDial, when not nil, hears the result
// of every dial (nil for success), for health monitoring; a dial whose
// context was cancelled says nothing about the daemon and is not reported.
// A malformed addr is errdefs.ErrInvalidArgument.
func New(addr string, onDial func(error)) (*Client, error) {
	c := &Client{addr: addr, onDial: onDial}
	switch {
	case strings.HasPrefix(addr, "unix://"):
		c.network, c.address = "unix", strings.TrimPrefix(addr, "unix://")
	case strings.HasPrefix(addr, "/"):
		c.network, c.address = "unix", addr
	case strings.HasPrefix(addr, "tcp://"), strings.HasPrefix(addr, "http://"):
		p, err := url.Parse(addr)
		if err != nil || p.Host == "" {
			return nil, fmt.Errorf("%w: upstream %q: want host:port", errdefs.ErrInvalidArgument, addr)
		}
		c.network, c.address = "tcp", p.Host
	default:
		return nil, fmt.Errorf("%w: upstream %q: use unix:///path/to/docker.sock or tcp://host:port", errdefs.ErrInvalidArgument, addr)
	}
	if c.address == "" {
		return nil, fmt.Errorf("%w: upstream %q has no address", errdefs.ErrInvalidArgument, addr)
	}
	c.transport = &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return c.Dial(ctx)
		},
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		// No ResponseHeaderTimeout: docker wait and attach legitimately
		// take as long as the container runs.
		DisableCompression: true,
		ForceAttemptHTTP2:  false,
	}
	return c, nil
}

// String is the address as configured.
func (c *Client) String() string { return c.addr }

// SocketPath is the daemon socket path for a unix upstream, else "".
func (c *Client) SocketPath() string {
	if c.network == "unix" {
		return c.address
	}
	return ""
}

// Transport is the pooled transport, for forwarding tenant requests as
// they are (the reverse proxy). Requests sent on it may use any URL host;
// the dialer always reaches the daemon.
func (c *Client) Transport() http.RoundTripper { return c.transport }

// Dial opens a new raw connection to the daemon (hijacked attach and exec
// streams).
func (c *Client) Dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, c.network, c.address)
	// A dial the caller gave up on says nothing about dockerd.
	if c.onDial != nil && (err == nil || ctx.Err() == nil) {
		c.onDial(err)
	}
	return conn, err
}

// Close releases idle pooled connections.
func (c *Client) Close() { c.transport.CloseIdleConnections() }
