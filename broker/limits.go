package broker

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"syscall"
	"time"
)

// Connection and request limits. One tenant must not be able to exhaust
// what the broker needs to serve the others:
//
//   - file descriptors: the broker never spends its last FDReserve fds on
//     tenant connections, so it can always dial dockerd, answer sgctl and
//     write its state. Each tenant connection may hold one upstream
//     connection as well (a forwarded request, a hijacked stream), so all
//     tenants together get at most (RLIMIT_NOFILE - reserve) / 2
//     connections;
//   - connections: each tenant socket holds at most MaxConnsPerSocket
//     accepted connections, hijacked streams (attach, exec) included, since
//     each holds its connection for as long as it lasts. A connection over a
//     limit is answered at once with a 429 and closed; it never waits for a
//     slot, so the excess costs the broker no fd beyond that answer;
//   - requests in flight: each tenant socket has at most
//     MaxRequestsPerSocket requests between being read and dockerd's answer
//     head (or the broker's refusal). A stream (logs -f, events, wait,
//     attach) stops counting once dockerd has answered, so long-lived
//     streams are bounded by the connection limit only. Over the limit the
//     request is refused with 429 and recorded;
//   - headers and idle connections: tenant servers have a header read
//     timeout, an idle timeout and a header size cap.

// Limits are the connection settings of every tenant socket.
type Limits struct {
	MaxConnsPerSocket    int           // accepted connections held per tenant socket
	MaxRequestsPerSocket int           // requests in flight per tenant socket
	FDReserve            int           // fds never used for tenant connections
	ReadHeaderTimeout    time.Duration // to read a request's head
	IdleTimeout          time.Duration // a keep-alive connection between requests
	MaxHeaderBytes       int           // request line plus headers
}

// Default limits; cmd/broker's flags use the same values.
const (
	DefaultMaxConnsPerSocket    = 256
	DefaultMaxRequestsPerSocket = 64
	DefaultFDReserve            = 1024
	DefaultReadHeaderTimeout    = 10 * time.Second
	DefaultIdleTimeout          = 2 * time.Minute
	DefaultMaxHeaderBytes       = 256 << 10
)

func (l *Limits) setDefaults() {
	if l.MaxConnsPerSocket <= 0 {
		l.MaxConnsPerSocket = DefaultMaxConnsPerSocket
	}
	if l.MaxRequestsPerSocket <= 0 {
		l.MaxRequestsPerSocket = DefaultMaxRequestsPerSocket
	}
	if l.FDReserve <= 0 {
		l.FDReserve = DefaultFDReserve
	}
	if l.ReadHeaderTimeout <= 0 {
		l.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = DefaultIdleTimeout
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
}

// minTenantConns is the smallest fd budget the broker starts with: below
// it, the fd limit is too low to serve anyone properly.
const minTenantConns = 64

// raiseNoFile raises the soft RLIMIT_NOFILE to the hard limit and returns
// the resulting soft limit. (The Go runtime does the same at start; doing
// it here makes the value the budget is computed from explicit.)
func raiseNoFile(log *slog.Logger) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, fmt.Errorf("read RLIMIT_NOFILE: %w", err)
	}
	before := lim.Cur
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			log.Warn("nofile_raise_failed", "soft", before, "hard", lim.Max, "err", err)
			lim.Cur = before
		}
	}
	log.Info("nofile_limit", "soft_before", before, "soft", lim.Cur, "hard", lim.Max)
	return lim.Cur, nil
}

// tenantConnBudget is how many tenant connections all sockets together
// may hold under an fd limit of nofile.
func tenantConnBudget(nofile uint64, reserve int) (int64, error) {
	if nofile > 1<<30 {
		nofile = 1 << 30 // RLIM_INFINITY and the like
	}
	budget := (int64(nofile) - int64(reserve)) / 2
	if budget < minTenantConns {
		return 0, fmt.Errorf("%w: the fd limit (RLIMIT_NOFILE %d) leaves room for %d tenant connections after --fd-reserve %d; "+
			"raise the limit (LimitNOFILE= in the systemd unit, ulimit -n) or lower --fd-reserve",
			ErrInvalidArgument, nofile, max(budget, 0), reserve)
	}
	return budget, nil
}

// connGate counts tenant connections against the broker-wide fd budget.
// Per-socket counts live in each tenantServer.
type connGate struct {
	budget int64 // tenant connections all sockets together may hold
	total  atomic.Int64
	// rejecting bounds the goroutines answering refused connections; when
	// it is full, refused connections are closed without an answer.
	rejecting chan struct{}
}

// maxRejecting bounds the refused connections being answered at once,
// broker-wide (each holds an fd for at most rejectWrite + rejectDrain).
const maxRejecting = 64

// rejectWrite bounds writing the answer to a refused connection;
// rejectDrain bounds waiting for the client to close after it.
const (
	rejectWrite = time.Second
	rejectDrain = 250 * time.Millisecond
)

func newConnGate(budget int64) *connGate {
	return &connGate{budget: budget, rejecting: make(chan struct{}, maxRejecting)}
}

// admit takes a slot for one connection of s. It returns "" and a release
// function, or the reason the connection is refused.
func (g *connGate) admit(s *tenantServer, perSocket int) (release func(), refused string) {
	if n := s.conns.Add(1); n > int64(perSocket) {
		s.conns.Add(-1)
		return nil, fmt.Sprintf("sockguard: too many connections: this socket holds its limit of %d open connections (broker --max-conns-per-socket); close idle clients or streams and retry", perSocket)
	}
	if n := g.total.Add(1); n > g.budget {
		g.total.Add(-1)
		s.conns.Add(-1)
		return nil, fmt.Sprintf("sockguard: too many connections: the broker holds its limit of %d tenant connections (file descriptors are kept for the Docker daemon and the admin API); retry later", g.budget)
	}
	var once atomic.Bool
	return func() {
		if once.CompareAndSwap(false, true) {
			s.conns.Add(-1)
			g.total.Add(-1)
		}
	}, ""
}

// reject answers c with a Docker-style error and closes it, without reading
// a request first. The answer is written from a bounded set of goroutines
// so that a flood of refused connections cannot hold the accept loop or
// pile up fds; past that bound the connection is closed unanswered.
func (g *connGate) reject(c net.Conn, status int, msg string) {
	select {
	case g.rejecting <- struct{}{}:
	default:
		c.Close()
		return
	}
	go func() {
		defer func() { <-g.rejecting }()
		defer c.Close()
		if c.SetDeadline(time.Now().Add(rejectWrite)) != nil {
			return // closed already: the write could not be bounded
		}
		if _, err := c.Write(errorResponse(status, msg)); err != nil {
			return
		}
		if c.SetDeadline(time.Now().Add(rejectDrain)) != nil {
			return
		}
		// Half-close, then take in what the client sent until it closes:
		// closing a unix socket with unread data would turn the client's
		// read of the answer into a reset.
		closeWrite(c)
		_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
	}()
}

// errorResponse is a complete HTTP/1.1 answer with a Docker error body.
func errorResponse(status int, msg string) []byte {
	body, _ := json.Marshal(struct {
		Message string `json:"message"`
	}{msg})
	body = append(body, '\n')
	head := fmt.Sprintf("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n",
		status, http.StatusText(status), len(body))
	return append([]byte(head), body...)
}

// requestSlot takes a slot for one request in flight on s. ok is false
// when the socket is at its limit; release may be called more than once.
func (s *tenantServer) requestSlot(limit int) (release func(), ok bool) {
	if s.inflight.Add(1) > int64(limit) {
		s.inflight.Add(-1)
		return func() {}, false
	}
	var once atomic.Bool
	return func() {
		if once.CompareAndSwap(false, true) {
			s.inflight.Add(-1)
		}
	}, true
}
