package broker

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
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
	cred peerCred
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

// adminAuth decides every admin RPC in one place (the interceptors of
// newAdminServer). Without a role file, root and members of the admin group
// are admins on the unix socket and nobody else may call anything. With
// one, a caller named by some binding gets exactly what its bindings grant;
// root and admin-group members that no binding names stay admins; TLS
// callers get only what bindings grant.
type adminAuth struct {
	gid int // -1: no admin group
	// roles returns the role file in force (nil: none); it may change
	// between calls when the file is reloaded.
	roles func() *Roles
	// refused, when set, hears of every call refused by authorization
	// (for the audit trail); it decides which ones to record.
	refused func(ctx context.Context, method string, req any, err error)
}

// deny reports a refused call to a.refused, with the caller and the role
// it has (the audit trail records who was refused as what), and returns
// err.
func (a adminAuth) deny(ctx context.Context, method string, req any, err error) error {
	if a.refused != nil {
		if id, ok := transportIdentity(ctx); ok {
			id.Role = a.grantFor(id).role.String()
			ctx = withCaller(ctx, id)
		}
		a.refused(ctx, method, req, err)
	}
	return err
}

// grantFor is what the caller may do.
func (a adminAuth) grantFor(id CallerIdentity) grant {
	inGroup := func(gid uint32) bool { return inSupplementaryGroup(id.PID, gid) }
	var roles *Roles
	if a.roles != nil {
		roles = a.roles()
	}
	if g := roles.grantFor(id, inGroup); g.matched {
		return g
	}
	if id.Transport == TransportUnix {
		if id.UID == 0 {
			return grant{role: RoleAdmin}
		}
		if a.gid >= 0 && (id.GID == uint32(a.gid) || inGroup(uint32(a.gid))) {
			return grant{role: RoleAdmin}
		}
	}
	return grant{}
}

// authorize admits one RPC. req is the request message for unary calls and
// nil when a stream opens: a socket-scoped stream is then admitted on the
// role alone, and each message it receives is authorized again with the
// message (authedStream.RecvMsg) before the handler sees it.
func (a adminAuth) authorize(ctx context.Context, method string, req any) (context.Context, error) {
	id, ok := transportIdentity(ctx)
	if !ok {
		return nil, status.Error(codes.PermissionDenied, "sockguard admin: caller identity unknown")
	}
	rule, known := methodRule(method)
	if !known {
		// Default deny: a method without a rule (a new RPC, a service
		// registered later) is nobody's.
		return nil, status.Errorf(codes.PermissionDenied, "sockguard admin: %s has no role rule", quoteBounded(method))
	}
	g := a.grantFor(id)
	if g.role == RoleNone && rule.role > RoleNone {
		if id.Transport == TransportUnix {
			msg := fmt.Sprintf("sockguard admin: uid %d (gid %d, pid %d) is not allowed: the admin API answers root", id.UID, id.GID, id.PID)
			if a.gid >= 0 {
				msg += fmt.Sprintf(" and members of group %d", a.gid)
			}
			return nil, status.Error(codes.PermissionDenied, msg+" (and identities of the --admin-roles file)")
		}
		return nil, status.Errorf(codes.PermissionDenied, "sockguard admin: %s has no role on this broker", quoteBounded(id.String()))
	}
	id.Role = g.role.String()
	if g.role < rule.role {
		return nil, status.Errorf(codes.PermissionDenied, "sockguard admin: %s (role %s) may not call %s: it needs the %s role",
			quoteBounded(id.String()), g.role, path.Base(method), rule.role)
	}
	if rule.socketScoped && req != nil {
		name, ok := scopedSocketName(req)
		if !ok || !g.allowsSocket(name) {
			return nil, status.Errorf(codes.PermissionDenied, "sockguard admin: %s (role %s) may not change socket %s: its role covers only %s",
				quoteBounded(id.String()), g.role, quoteBounded(name), strings.Join(g.opSockets, ", "))
		}
		if root, ok := g.allowsBindRoots(requestedBindRoots(req)); !ok {
			return nil, status.Errorf(codes.PermissionDenied, "sockguard admin: %s (role %s) may not allow the bind root %s: its bindings allow only %s",
				quoteBounded(id.String()), g.role, quoteBounded(root), quoteBounded(strings.Join(g.opBindRoots, ", ")))
		}
	}
	return withCaller(ctx, id), nil
}

// rule is what a method needs.
type rule struct {
	role Role
	// socketScoped methods change one socket, named in the request; an
	// operator narrowed to globs may call them for matching names only.
	socketScoped bool
}

// methodRule is the one table of who may call what. Health is open to
// every authenticated caller (on TLS the handshake already verified the
// client certificate); reflection only describes the API, like viewer.
func methodRule(method string) (rule, bool) {
	switch method {
	case sockguardv1.SockguardService_ListSockets_FullMethodName,
		sockguardv1.SockguardService_GetSocket_FullMethodName,
		sockguardv1.SockguardService_ListPresets_FullMethodName,
		sockguardv1.SockguardService_GetPreset_FullMethodName,
		sockguardv1.SockguardService_CheckRequest_FullMethodName,
		sockguardv1.SockguardService_ListDenials_FullMethodName,
		sockguardv1.SockguardService_WatchDenials_FullMethodName,
		sockguardv1.SockguardService_GetBrokerInfo_FullMethodName,
		sockguardv1.SockguardService_ListEvents_FullMethodName,
		"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
		"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo":
		return rule{role: RoleViewer}, true
	case sockguardv1.SockguardService_CreateSocket_FullMethodName,
		sockguardv1.SockguardService_UpdateSocket_FullMethodName,
		sockguardv1.SockguardService_DeleteSocket_FullMethodName,
		sockguardv1.SockguardService_DeleteSocketStream_FullMethodName:
		return rule{role: RoleOperator, socketScoped: true}, true
	case sockguardv1.SockguardService_BackupState_FullMethodName:
		return rule{role: RoleAdmin}, true
	case healthpb.Health_Check_FullMethodName, healthpb.Health_Watch_FullMethodName, "/grpc.health.v1.Health/List":
		return rule{role: RoleNone}, true
	}
	return rule{}, false
}

// requestedBindRoots are the bind roots a create or update asks for (an
// update is judged on what it carries, whatever its mask: fail closed).
func requestedBindRoots(req any) []string {
	var s *sockguardv1.Socket
	switch r := req.(type) {
	case *sockguardv1.CreateSocketRequest:
		s = r.GetSocket()
	case *sockguardv1.UpdateSocketRequest:
		s = r.GetSocket()
	}
	var out []string
	for _, b := range s.GetOverrides().GetAllowedBindRoots() {
		out = append(out, b.GetPath())
	}
	return out
}

// scopedSocketName is the socket a socket-scoped request changes.
func scopedSocketName(req any) (string, bool) {
	switch r := req.(type) {
	case *sockguardv1.CreateSocketRequest:
		return r.GetSocket().GetName(), true
	case *sockguardv1.UpdateSocketRequest:
		return r.GetSocket().GetName(), true
	case *sockguardv1.DeleteSocketRequest:
		return r.GetName(), true
	case *sockguardv1.DeleteSocketStreamRequest:
		return r.GetName(), true
	}
	return "", false
}

func (a adminAuth) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	actx, err := a.authorize(ctx, info.FullMethod, req)
	if err != nil {
		return nil, a.deny(ctx, info.FullMethod, req, err)
	}
	return h(actx, req)
}

func (a adminAuth) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	ctx, err := a.authorize(ss.Context(), info.FullMethod, nil)
	if err != nil {
		return a.deny(ss.Context(), info.FullMethod, nil, err)
	}
	as := &authedStream{ServerStream: ss, ctx: ctx}
	if r, _ := methodRule(info.FullMethod); r.socketScoped {
		as.check = func(m any) error {
			if _, err := a.authorize(ss.Context(), info.FullMethod, m); err != nil {
				return a.deny(ss.Context(), info.FullMethod, m, err)
			}
			return nil
		}
	}
	return h(srv, as)
}

// authedStream carries the authorized caller's context into the handler
// and, for a socket-scoped stream, authorizes every received message on
// the socket it names.
type authedStream struct {
	grpc.ServerStream
	ctx   context.Context
	check func(m any) error // nil: nothing to check per message
}

func (s *authedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if s.check != nil {
		return s.check(m)
	}
	return nil
}

func (s *authedStream) Context() context.Context { return s.ctx }

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

// newAdminServer builds a gRPC server of the admin API on the given
// transport credentials: logging outermost, then authorization (every
// method, health included, goes through adminAuth), recovery innermost.
func newAdminServer(svc sockguardv1.SockguardServiceServer, creds credentials.TransportCredentials, auth0 adminAuth, hs healthpb.HealthServer, log *slog.Logger, opts ...grpc.ServerOption) *grpc.Server {
	logger := logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		log.Log(ctx, adminCallLevel(lvl, fields), msg, fields...)
	})
	onPanic := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		log.ErrorContext(ctx, "admin_panic", "panic", p, "stack", string(debug.Stack()))
		return status.Error(codes.Internal, "internal error")
	})
	// Quiet by default: successful read-only calls at debug, mutations at
	// info, failures at warn (adminCallLevel).
	logOpts := []logging.Option{logging.WithLogOnEvents(logging.FinishCall), logging.WithLevels(adminCodeLevel)}
	srv := grpc.NewServer(append([]grpc.ServerOption{
		grpc.Creds(creds),
		grpc.ChainUnaryInterceptor(
			logging.UnaryServerInterceptor(logger, logOpts...),
			auth0.unary,
			recovery.UnaryServerInterceptor(onPanic),
		),
		grpc.ChainStreamInterceptor(
			logging.StreamServerInterceptor(logger, logOpts...),
			auth0.stream,
			recovery.StreamServerInterceptor(onPanic),
		),
	}, opts...)...)
	sockguardv1.RegisterSockguardServiceServer(srv, svc)
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	return srv
}
