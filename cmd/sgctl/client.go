package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// adminSocketPath returns the admin socket as an absolute path: the unix://
// target of gRPC takes only absolute paths.
func (c *cli) adminSocketPath() string {
	if p, err := filepath.Abs(c.adminSocket); err == nil {
		return p
	}
	return c.adminSocket
}

// connect returns a client of the admin API. gRPC dials lazily, so a broker
// that is not there shows up as the first call's error, which rpcError
// rewrites.
func (c *cli) connect() (sockguardv1.SockguardServiceClient, func(), error) {
	if c.target != nil && c.target.isTCP() {
		conn, err := dialContext(*c.target)
		if err != nil {
			return nil, nil, err
		}
		return sockguardv1.NewSockguardServiceClient(conn), func() { conn.Close() }, nil
	}
	// The admin socket is local and protected by its file mode and by the
	// broker's peer-credential check; there is no transport security to add.
	conn, err := grpc.NewClient("unix://"+c.adminSocketPath(),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, fmt.Errorf("admin socket %s: %w", c.adminSocketPath(), err)
	}
	return sockguardv1.NewSockguardServiceClient(conn), func() { conn.Close() }, nil
}

// call runs fn against the admin API under the --timeout deadline and turns
// its error into a sentence for the operator.
func (c *cli) call(ctx context.Context, fn func(context.Context, sockguardv1.SockguardServiceClient) error) error {
	api, closeConn, err := c.connect()
	if err != nil {
		return err
	}
	defer closeConn()
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	return c.rpcError(fn(ctx, api))
}

// errUnreachable marks the broker not answering on the admin socket at all.
var errUnreachable = errors.New("broker not reachable")

// unreachableError is the error for a broker that is not listening.
type unreachableError struct {
	path  string
	cause string
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("cannot reach the broker at %s (%s): is it running? Start it with: broker --admin-socket %s "+
		"(or point sgctl at another socket with --admin-socket or $%s)", e.path, e.cause, e.path, adminSocketEnv)
}

func (e *unreachableError) Is(target error) bool { return target == errUnreachable }

// rpcError is the one place that turns gRPC errors into what the operator
// reads: the broker's own message, plus a hint when the fix is on this side.
func (c *cli) rpcError(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	path := c.adminSocketPath()
	msg := st.Message()
	if c.target != nil && c.target.isTCP() {
		return c.tcpError(st.Code(), msg)
	}
	switch st.Code() {
	case codes.Unavailable:
		switch {
		case strings.Contains(msg, "permission denied"):
			return fmt.Errorf("cannot open the admin socket %s: permission denied; run sgctl as root (for example with sudo) "+
				"or as a member of the broker's admin group", path)
		case strings.Contains(msg, "no such file or directory"):
			if _, statErr := os.Stat(path); errors.Is(statErr, os.ErrNotExist) {
				return &unreachableError{path: path, cause: "no socket file"}
			}
			return &unreachableError{path: path, cause: "no such file or directory"}
		case strings.Contains(msg, "connection refused"):
			return &unreachableError{path: path, cause: "connection refused"}
		case strings.Contains(msg, "broken pipe"), strings.Contains(msg, "connection reset"),
			strings.Contains(msg, "server preface"), strings.Contains(msg, "frame"):
			// Something listens there but does not speak gRPC: most likely
			// a tenant socket, which speaks the Docker API and refuses this.
			if c, derr := net.DialTimeout("unix", path, time.Second); derr == nil {
				c.Close()
				return fmt.Errorf("%s is not the broker's admin socket (a tenant socket answers only the Docker API); "+
					"use the path given to broker --admin-socket", path)
			}
		case strings.Contains(msg, "Error while dialing"):
			return &unreachableError{path: path, cause: "cannot connect"}
		}
		return fmt.Errorf("broker at %s unavailable: %s", path, msg)
	case codes.PermissionDenied:
		return fmt.Errorf("%s (the admin API is for root and the broker's admin group: run sgctl with sudo "+
			"or as a member of that group)", msg)
	case codes.DeadlineExceeded:
		return fmt.Errorf("the broker at %s did not answer within %s (raise --timeout if it is busy)", path, c.timeout)
	case codes.Canceled:
		return errors.New("interrupted")
	case codes.Unimplemented:
		return fmt.Errorf("the broker does not support this request (%s); is it older than sgctl %s?", msg, version)
	}
	return errors.New(msg)
}

// tcpError words an error from a broker's TCP admin listener.
func (c *cli) tcpError(code codes.Code, msg string) error {
	addr := c.target.Address
	switch code {
	case codes.Unavailable:
		if strings.Contains(msg, "handshake") || strings.Contains(msg, "certificate") || strings.Contains(msg, "tls:") {
			return fmt.Errorf("TLS handshake with context %s (%s) failed: %s (check the context's ca, cert and key: "+
				"the broker wants a client certificate from its --admin-client-ca, valid now)", c.target.Name, addr, msg)
		}
		if strings.Contains(msg, "broken pipe") || strings.Contains(msg, "connection reset") || strings.Contains(msg, "EOF") {
			// TLS 1.3: the client's side of the handshake ends before the
			// broker has judged its certificate; a refusal then arrives as
			// a closed connection.
			return fmt.Errorf("the broker of context %s (%s) closed the connection right after the TLS handshake: %s "+
				"(it probably refused this client certificate: expired, or not from its --admin-client-ca)", c.target.Name, addr, msg)
		}
		return fmt.Errorf("cannot reach the broker of context %s at %s: %s", c.target.Name, addr, msg)
	case codes.PermissionDenied:
		return fmt.Errorf("%s (the broker's --admin-roles file decides what this certificate may do)", msg)
	case codes.DeadlineExceeded:
		return fmt.Errorf("the broker of context %s at %s did not answer within %s (raise --timeout if it is busy)", c.target.Name, addr, c.timeout)
	case codes.Canceled:
		return errors.New("interrupted")
	}
	return errors.New(msg)
}
