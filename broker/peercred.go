package broker

import (
	"context"
	"errors"
	"net"
	"syscall"
)

// PeerCred is the identity of the process at the other end of a unix
// socket, read once with SO_PEERCRED when the connection is accepted. It is
// never taken from anything the peer sends.
type PeerCred struct {
	UID, GID uint32
	PID      int32
}

func readPeerCred(c net.Conn) (PeerCred, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return PeerCred{}, errors.New("not a unix socket connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return PeerCred{}, err
	}
	var cred *syscall.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return PeerCred{}, err
	}
	if credErr != nil {
		return PeerCred{}, credErr
	}
	return PeerCred{UID: cred.Uid, GID: cred.Gid, PID: cred.Pid}, nil
}

// credConn is an accepted connection with its peer's credentials.
type credConn struct {
	*net.UnixConn
	cred PeerCred
}

type credKey struct{}

func withCred(ctx context.Context, c PeerCred) context.Context {
	return context.WithValue(ctx, credKey{}, c)
}

func credFrom(ctx context.Context) (PeerCred, bool) {
	c, ok := ctx.Value(credKey{}).(PeerCred)
	return c, ok
}

// peerListener accepts connections, reads each peer's credentials once and
// closes, before any byte is read, a connection whose peer allow refuses.
type peerListener struct {
	*unixListener
	allow  func(PeerCred) bool
	refuse func(PeerCred)
}

func (l *peerListener) Accept() (net.Conn, error) {
	for {
		c, err := l.unixListener.AcceptUnix()
		if err != nil {
			return nil, err
		}
		cred, err := readPeerCred(c)
		if err != nil {
			// Fail closed: a peer we cannot identify is not served.
			c.Close()
			continue
		}
		if !l.allow(cred) {
			c.Close()
			l.refuse(cred)
			continue
		}
		return &credConn{UnixConn: c, cred: cred}, nil
	}
}
