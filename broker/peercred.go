package broker

import (
	"context"
	"errors"
	"net"
	"net/http"

	"golang.org/x/sys/unix"

	"github.com/sockguard/sockguard/policy"
)

// peerCred is the identity of the process at the other end of a unix
// socket, read once with SO_PEERCRED when the connection is accepted. It is
// never taken from anything the peer sends.
type peerCred struct {
	UID, GID uint32
	PID      int32
}

// readPeerCred reads the peer's credentials.
func readPeerCred(c net.Conn) (peerCred, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return peerCred{}, errors.New("not a unix socket connection")
	}
	cred, pidfd, err := readPeerCredPidfd(uc)
	if pidfd >= 0 {
		unix.Close(pidfd)
	}
	return cred, err
}

// readPeerCredPidfd reads the peer's credentials and, where the kernel offers
// it (Linux 6.5+, SO_PEERPIDFD), a pidfd of the peer as it was at connect
// time; pidfd is -1 without one and must be closed by the caller otherwise.
func readPeerCredPidfd(c *net.UnixConn) (cred peerCred, pidfd int, err error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return peerCred{}, -1, err
	}
	var uc *unix.Ucred
	var credErr error
	pidfd = -1
	if err := raw.Control(func(fd uintptr) {
		uc, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if credErr == nil {
			if pfd, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PEERPIDFD); err == nil {
				pidfd = pfd
			}
		}
	}); err != nil {
		return peerCred{}, -1, err
	}
	if credErr != nil {
		return peerCred{}, -1, credErr
	}
	return peerCred{UID: uc.Uid, GID: uc.Gid, PID: uc.Pid}, pidfd, nil
}

// credConn is an accepted tenant connection with its peer's credentials.
// It holds one of the socket's connection slots; Close gives it back.
// Hijacked streams close this same connection, so a stream holds its slot
// until it ends.
type credConn struct {
	*net.UnixConn
	cred    peerCred
	release func()
}

func (c *credConn) Close() error {
	err := c.UnixConn.Close()
	c.release()
	return err
}

type credKey struct{}

func withCred(ctx context.Context, c peerCred) context.Context {
	return context.WithValue(ctx, credKey{}, c)
}

func credFrom(ctx context.Context) (peerCred, bool) {
	c, ok := ctx.Value(credKey{}).(peerCred)
	return c, ok
}

// peerListener accepts connections for one tenant socket. Before any
// byte is read it takes a connection slot (over the socket's or the
// broker's limit: 429 and close) and identifies the peer once (refused:
// 403 and close); both answers are Docker-style errors the CLI prints.
type peerListener struct {
	*unixListener
	ts     *tenantServer
	gate   *connGate
	limit  int // connections per socket
	locate func(ctx context.Context, pid int32, pidfd int) (peerPlace, error)
	// refuse records a refused peer or connection.
	refuse func(c peerCred, code policy.ReasonCode, reason string)
	// overLimit records a connection refused by a limit.
	overLimit func(msg string)
}

func (l *peerListener) Accept() (net.Conn, error) {
	for {
		c, err := l.unixListener.AcceptUnix()
		if err != nil {
			return nil, err
		}
		// Limits first: a connection over them costs no /proc read and
		// no upstream call.
		release, msg := l.gate.admit(l.ts, l.limit)
		if msg != "" {
			l.overLimit(msg)
			l.gate.reject(c, http.StatusTooManyRequests, msg)
			// A client that reconnects as fast as it is refused gets
			// refusals at a bounded rate; the rest wait in the kernel's
			// backlog (or in connect), costing the broker nothing.
			l.ts.rejectPace.wait(context.Background())
			continue
		}
		cred, pidfd, err := readPeerCredPidfd(c)
		if err != nil {
			// Fail closed: a peer we cannot identify is not served.
			release()
			c.Close()
			continue
		}
		place, lerr := l.locate(context.Background(), cred.PID, pidfd)
		if pidfd >= 0 {
			unix.Close(pidfd)
		}
		if reason := peerVerdict(l.ts.state.Load().t, cred, place, lerr); reason != "" {
			release()
			l.refuse(cred, policy.ReasonPeerNotAllowed, reason)
			l.gate.reject(c, http.StatusForbidden, "sockguard: "+reason)
			continue
		}
		return &credConn{UnixConn: c, cred: cred, release: release}, nil
	}
}
