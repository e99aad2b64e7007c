package broker

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
)

// peerCredentials is a gRPC TransportCredentials for unix sockets: the
// "handshake" exchanges no bytes, it reads SO_PEERCRED so that every RPC
// can be authorized by the calling process's kernel-verified identity.
type peerCredentials struct{}

// peerAuthInfo carries the peer's credentials into the RPC context.
type peerAuthInfo struct {
	credentials.CommonAuthInfo
	cred PeerCred
}

func (peerAuthInfo) AuthType() string { return "peercred" }

func (peerCredentials) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	cred, err := readPeerCred(c)
	if err != nil {
		return nil, nil, fmt.Errorf("read peer credentials: %w", err)
	}
	return c, peerAuthInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}, cred: cred}, nil
}

func (peerCredentials) ClientHandshake(_ context.Context, _ string, c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return c, peerAuthInfo{}, nil
}

func (peerCredentials) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "peercred"}
}
func (p peerCredentials) Clone() credentials.TransportCredentials { return p }
func (peerCredentials) OverrideServerName(string) error           { return nil }

// adminAuth allows root, and members of the admin group when one is set.
type adminAuth struct {
	gid int // -1: no admin group
}

func (a adminAuth) authorize(ctx context.Context) (context.Context, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.PermissionDenied, "sockguard admin: caller identity unknown")
	}
	ai, ok := p.AuthInfo.(peerAuthInfo)
	if !ok {
		return nil, status.Error(codes.PermissionDenied, "sockguard admin: caller identity unknown")
	}
	c := ai.cred
	id := CallerIdentity{Transport: TransportUnix, UID: c.UID, GID: c.GID, PID: c.PID, Role: "admin"}
	if c.UID == 0 {
		return withCaller(ctx, id), nil
	}
	if a.gid >= 0 && (c.GID == uint32(a.gid) || inSupplementaryGroup(c.PID, uint32(a.gid))) {
		return withCaller(ctx, id), nil
	}
	msg := fmt.Sprintf("sockguard admin: uid %d (gid %d, pid %d) is not allowed: the admin API answers root", c.UID, c.GID, c.PID)
	if a.gid >= 0 {
		msg += fmt.Sprintf(" and members of group %d", a.gid)
	}
	return nil, status.Error(codes.PermissionDenied, msg)
}

// inSupplementaryGroup reads the peer's supplementary groups from
// /proc/PID/status. SO_PEERCRED carries only the primary gid.
func inSupplementaryGroup(pid int32, gid uint32) bool {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "Groups:")
		if !ok {
			continue
		}
		for _, g := range strings.Fields(line) {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil && uint32(n) == gid {
				return true
			}
		}
		return false
	}
	return false
}

// newAdminServer builds the gRPC server: logging outermost, then
// authorization (health checks skip it), recovery innermost.
func newAdminServer(svc sockguardv1.SockguardServiceServer, auth0 adminAuth, log *slog.Logger) (*grpc.Server, *health.Server) {
	logger := logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		log.Log(ctx, slog.Level(lvl), msg, fields...)
	})
	needsAuth := selector.MatchFunc(func(_ context.Context, c interceptors.CallMeta) bool {
		return c.Service != healthpb.Health_ServiceDesc.ServiceName
	})
	onPanic := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		log.ErrorContext(ctx, "admin_panic", "panic", p, "stack", string(debug.Stack()))
		return status.Error(codes.Internal, "internal error")
	})
	logOpts := []logging.Option{logging.WithLogOnEvents(logging.FinishCall)}
	srv := grpc.NewServer(
		grpc.Creds(peerCredentials{}),
		grpc.ChainUnaryInterceptor(
			logging.UnaryServerInterceptor(logger, logOpts...),
			selector.UnaryServerInterceptor(auth.UnaryServerInterceptor(auth0.authorize), needsAuth),
			recovery.UnaryServerInterceptor(onPanic),
		),
		grpc.ChainStreamInterceptor(
			logging.StreamServerInterceptor(logger, logOpts...),
			selector.StreamServerInterceptor(auth.StreamServerInterceptor(auth0.authorize), needsAuth),
			recovery.StreamServerInterceptor(onPanic),
		),
	)
	sockguardv1.RegisterSockguardServiceServer(srv, svc)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	return srv, hs
}
