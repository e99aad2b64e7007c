package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/sockguard/sockguard/internal/certgen"
	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
)

// TestMethodRulesCoverTheService: every RPC of the service descriptor has
// a role rule, so a new RPC without one fails here (and is refused by the
// interceptor until it gets one).
func TestMethodRulesCoverTheService(t *testing.T) {
	d := sockguardv1.SockguardService_ServiceDesc
	var methods []string
	for _, m := range d.Methods {
		methods = append(methods, "/"+d.ServiceName+"/"+m.MethodName)
	}
	for _, s := range d.Streams {
		methods = append(methods, "/"+d.ServiceName+"/"+s.StreamName)
	}
	if len(methods) != 14 {
		t.Errorf("the service has %d RPCs; review their roles here when it changes", len(methods))
	}
	want := map[string]Role{
		"CreateSocket": RoleOperator, "UpdateSocket": RoleOperator, "DeleteSocket": RoleOperator,
		"DeleteSocketStream": RoleOperator, "BackupState": RoleAdmin,
	}
	for _, m := range methods {
		r, ok := methodRule(m)
		if !ok {
			t.Errorf("%s has no role rule", m)
			continue
		}
		w, special := want[m[strings.LastIndex(m, "/")+1:]]
		if !special {
			w = RoleViewer
		}
		if r.role != w {
			t.Errorf("%s needs %s, want %s", m, r.role, w)
		}
		if r.socketScoped != (w == RoleOperator) {
			t.Errorf("%s socketScoped=%v", m, r.socketScoped)
		}
	}
	for _, m := range []string{"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"} {
		if r, ok := methodRule(m); !ok || r.role != RoleNone {
			t.Errorf("%s: %v %v, want open to every authenticated caller", m, r, ok)
		}
	}
	for _, m := range []string{"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"} {
		if r, ok := methodRule(m); !ok || r.role != RoleViewer {
			t.Errorf("%s: %v %v, want viewer", m, r, ok)
		}
	}
	if _, ok := methodRule("/sockguard.v1.SockguardService/NewThing"); ok {
		t.Error("an unknown method has a rule")
	}
}

func TestParseRoles(t *testing.T) {
	for _, tc := range []struct{ name, src, err string }{
		{"ok", "bindings:\n- role: operator\n  identities: [uri:spiffe://f/ops, cn:bot, ou:sre, uid:1000, gid:10]\n  sockets: [runner-*]\n", ""},
		{"empty file", "", ""},
		{"unknown key", "bindings:\n- role: viewer\n  identities: [cn:a]\n  socket: [x]\n", "field socket not found"},
		{"unknown top key", "binding: []\n", "field binding not found"},
		{"unknown role", "bindings:\n- role: root\n  identities: [cn:a]\n", "want viewer, operator or admin"},
		{"no identities", "bindings:\n- role: viewer\n", "no identities"},
		{"bad identity kind", "bindings:\n- role: viewer\n  identities: [email:a@b]\n", "want uid:N"},
		{"uid not numeric", "bindings:\n- role: viewer\n  identities: [uid:root]\n", "numeric"},
		{"uri without scheme", "bindings:\n- role: viewer\n  identities: [uri:fleet/ops]\n", "want a URI"},
		{"sockets on viewer", "bindings:\n- role: viewer\n  identities: [cn:a]\n  sockets: [x]\n", "operator role only"},
		{"sockets on admin", "bindings:\n- role: admin\n  identities: [cn:a]\n  sockets: [x]\n", "operator role only"},
		{"empty sockets", "bindings:\n- role: operator\n  identities: [cn:a]\n  sockets: []\n", "sockets is empty"},
		{"bad glob", "bindings:\n- role: operator\n  identities: [cn:a]\n  sockets: [\"runner-[\"]\n", "syntax error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseRoles([]byte(tc.src))
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("err %v, want %q", err, tc.err)
			}
		})
	}
}

// TestGrants: who gets what from the role file, the implicit admins and
// name globs.
func TestGrants(t *testing.T) {
	roles, err := parseRoles([]byte(`bindings:
- role: viewer
  identities: [uri:spiffe://fleet/viewer, ou:sre, uid:1000]
- role: operator
  identities: [cn:runner-bot]
  sockets: [runner-*]
- role: operator
  identities: [cn:two-globs]
  sockets: [runner-*]
- role: operator
  identities: [cn:two-globs]
  sockets: ["build-?"]
- role: viewer
  identities: [uid:0]
- role: admin
  identities: [uri:spiffe://fleet/admin]
`))
	if err != nil {
		t.Fatal(err)
	}
	auth := adminAuth{gid: 50, roles: func() *Roles { return roles }}
	// tlsID is a caller with a verified certificate named s: a URI, or
	// "CN=name[,OU=unit...]" split the way a certificate holds them.
	tlsID := func(s string) CallerIdentity {
		n := &certNames{}
		if strings.Contains(s, "://") {
			n.uri = s
		} else {
			parts := strings.Split(s, "|")
			n.cn = strings.TrimPrefix(parts[0], "CN=")
			for _, p := range parts[1:] {
				n.ous = append(n.ous, strings.TrimPrefix(p, "OU="))
			}
		}
		return CallerIdentity{Transport: TransportTLS, Subject: s, cert: n}
	}
	unixID := func(uid, gid uint32) CallerIdentity {
		return CallerIdentity{Transport: TransportUnix, UID: uid, GID: gid, PID: int32(os.Getpid())}
	}
	for _, tc := range []struct {
		name    string
		id      CallerIdentity
		role    Role
		allowed []string
		refused []string
	}{
		{"uri viewer", tlsID("spiffe://fleet/viewer"), RoleViewer, nil, []string{"runner-1"}},
		{"ou viewer", tlsID("CN=carol|OU=dev|OU=sre"), RoleViewer, nil, nil},
		{"a CN that spells an OU is not one", tlsID("CN=mallory,OU=sre"), RoleNone, nil, nil},
		{"an OU that spells a CN is not one", tlsID("CN=x|OU=sre,CN=runner-bot"), RoleNone, nil, []string{"runner-1"}},
		{"ou is not a cn", tlsID("CN=sre"), RoleNone, nil, nil},
		{"cn operator narrowed", tlsID("CN=runner-bot"), RoleOperator, []string{"runner-9", "runner-"}, []string{"build-1", "Runner-9", "runner-9/../x", "xrunner-1"}},
		{"cn with an OU still the cn", tlsID("CN=runner-bot|OU=x"), RoleOperator, []string{"runner-1"}, []string{"build-1"}},
		{"globs unite", tlsID("CN=two-globs"), RoleOperator, []string{"runner-1", "build-1"}, []string{"build-10"}},
		{"uri admin", tlsID("spiffe://fleet/admin"), RoleAdmin, []string{"anything"}, nil},
		{"uri prefix is not the uri", tlsID("spiffe://fleet/admin/x"), RoleNone, nil, nil},
		{"unknown cert", tlsID("CN=mallory"), RoleNone, nil, nil},
		{"a cert cannot claim a uid", tlsID("uid:0"), RoleNone, nil, nil},
		{"a cert without verified names", CallerIdentity{Transport: TransportTLS, Subject: "spiffe://fleet/admin"}, RoleNone, nil, nil},
		{"root demoted by the file", unixID(0, 0), RoleViewer, nil, []string{"runner-1"}},
		{"uid viewer", unixID(1000, 1000), RoleViewer, nil, nil},
		{"admin group member stays admin", unixID(2000, 50), RoleAdmin, []string{"x"}, nil},
		{"someone else", unixID(2000, 2000), RoleNone, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := auth.grantFor(tc.id)
			if g.role != tc.role {
				t.Fatalf("role %s, want %s", g.role, tc.role)
			}
			for _, n := range tc.allowed {
				if !g.allowsSocket(n) {
					t.Errorf("%s refused", n)
				}
			}
			for _, n := range tc.refused {
				if g.allowsSocket(n) {
					t.Errorf("%s allowed", n)
				}
			}
		})
	}
	// Without a role file: root and the admin group, nobody over TLS.
	plain := adminAuth{gid: -1}
	if g := plain.grantFor(unixID(0, 0)); g.role != RoleAdmin {
		t.Errorf("root without a role file: %s", g.role)
	}
	if g := plain.grantFor(tlsID("spiffe://fleet/admin")); g.role != RoleNone {
		t.Errorf("TLS caller without a role file: %s", g.role)
	}
}

// TestCertIdentity: the identity comes from the verified chain's leaf,
// with its names kept apart, so a CN cannot spell an OU or a URI.
func TestCertIdentity(t *testing.T) {
	ca, err := certgen.NewCA(certgen.Options{CommonName: "ca"})
	if err != nil {
		t.Fatal(err)
	}
	roles, err := parseRoles([]byte("bindings:\n- role: admin\n  identities: [ou:sre, \"cn:spiffe://fleet/admin\", uri:spiffe://fleet/admin]\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		o       certgen.Options
		subject string
		role    Role
	}{
		{"cn spelling an ou", certgen.Options{CommonName: "mallory,OU=sre"}, `CN=mallory\,OU\=sre`, RoleNone},
		{"real ou", certgen.Options{CommonName: "carol", OUs: []string{"sre"}}, "CN=carol,OU=sre", RoleAdmin},
		{"cn spelling a uri", certgen.Options{CommonName: "spiffe://fleet/admin"}, `CN=spiffe://fleet/admin`, RoleAdmin},
		{"uri wins over cn and ou", certgen.Options{CommonName: "x", OUs: []string{"sre"}, URIs: []string{"spiffe://fleet/other"}}, "spiffe://fleet/other", RoleNone},
		{"uri", certgen.Options{URIs: []string{"spiffe://fleet/admin"}}, "spiffe://fleet/admin", RoleAdmin},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ca.Client(tc.o)
			if err != nil {
				t.Fatal(err)
			}
			ctx := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{
				State: tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{c.Cert, ca.Cert}}},
			}})
			id := callerIdentity(ctx)
			if id.Transport != TransportTLS || id.Subject != tc.subject {
				t.Fatalf("identity %+v, want subject %s", id, tc.subject)
			}
			if g := roles.grantFor(id, nil); g.role != tc.role {
				t.Fatalf("role %s, want %s", g.role, tc.role)
			}
		})
	}
	// Presented but unverified certificates name nobody.
	c, _ := ca.Client(certgen.Options{URIs: []string{"spiffe://fleet/admin"}})
	ctx := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{
		State: tls.ConnectionState{PeerCertificates: []*x509.Certificate{c.Cert}},
	}})
	if id, ok := transportIdentity(ctx); ok || id.Transport != "" {
		t.Fatalf("an unverified certificate gave %+v", id)
	}
}

// stubService answers the RPCs the TLS test calls.
type stubService struct {
	sockguardv1.UnimplementedSockguardServiceServer
	seen chan CallerIdentity
}

func (s *stubService) ListSockets(ctx context.Context, _ *sockguardv1.ListSocketsRequest) (*sockguardv1.ListSocketsResponse, error) {
	return &sockguardv1.ListSocketsResponse{}, nil
}

func (s *stubService) CreateSocket(ctx context.Context, req *sockguardv1.CreateSocketRequest) (*sockguardv1.CreateSocketResponse, error) {
	select {
	case s.seen <- callerIdentity(ctx):
	default:
	}
	return &sockguardv1.CreateSocketResponse{Socket: req.GetSocket()}, nil
}

func (s *stubService) WatchDenials(_ *sockguardv1.WatchDenialsRequest, st sockguardv1.SockguardService_WatchDenialsServer) error {
	return st.Send(&sockguardv1.WatchDenialsResponse{})
}

func (s *stubService) DeleteSocketStream(req *sockguardv1.DeleteSocketStreamRequest, st sockguardv1.SockguardService_DeleteSocketStreamServer) error {
	return st.Send(&sockguardv1.DeleteSocketStreamResponse{Result: &sockguardv1.DeleteSocketResponse{}})
}

func (s *stubService) BackupState(_ *sockguardv1.BackupStateRequest, st sockguardv1.SockguardService_BackupStateServer) error {
	return st.Send(&sockguardv1.BackupStateResponse{})
}

type pki struct {
	dir string
	ca  *certgen.Pair
}

func (p *pki) client(t *testing.T, name string, o certgen.Options) *certgen.Pair {
	t.Helper()
	c, err := p.ca.Client(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Write(p.dir, name); err != nil {
		t.Fatal(err)
	}
	return c
}

func newPKI(t *testing.T, dir, name string) *pki {
	t.Helper()
	ca, err := certgen.NewCA(certgen.Options{CommonName: name})
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Write(dir, name); err != nil {
		t.Fatal(err)
	}
	return &pki{dir: dir, ca: ca}
}

// TestAdminTLS runs the admin API over mutual TLS on loopback with the
// real interceptors: the TLS layer refuses clients without a good
// certificate, roles decide the rest, and rotation applies to new
// handshakes without cutting open connections.
func TestAdminTLS(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, dir, "ca")
	other := newPKI(t, dir, "other-ca")
	srvCert, err := p.ca.Server(certgen.Options{CommonName: "broker-a", Hosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := srvCert.Write(dir, "server"); err != nil {
		t.Fatal(err)
	}
	rolesFile := filepath.Join(dir, "roles.yaml")
	if err := os.WriteFile(rolesFile, []byte(`bindings:
- role: viewer
  identities: [uri:spiffe://fleet/viewer]
- role: operator
  identities: [cn:runner-bot]
  sockets: [runner-*]
- role: admin
  identities: [uri:spiffe://fleet/admin]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	viewer := p.client(t, "viewer", certgen.Options{CommonName: "v", URIs: []string{"spiffe://fleet/viewer"}})
	operator := p.client(t, "operator", certgen.Options{CommonName: "runner-bot"})
	admin := p.client(t, "admin", certgen.Options{URIs: []string{"spiffe://fleet/admin"}})
	expired := p.client(t, "expired", certgen.Options{URIs: []string{"spiffe://fleet/admin"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	foreign := other.client(t, "foreign", certgen.Options{URIs: []string{"spiffe://fleet/admin"}})

	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tcfg := AdminTLSConfig{Listen: "tcp://127.0.0.1:0", CertFile: filepath.Join(dir, "server.pem"),
		KeyFile: filepath.Join(dir, "server-key.pem"), ClientCA: filepath.Join(dir, "ca.pem")}
	af, err := loadAdminFiles(tcfg, rolesFile, false, log)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := listenAdminTCP(tcfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	svc := &stubService{seen: make(chan CallerIdentity, 1)}
	srv := newAdminServer(svc, af.tlsCreds(), adminAuth{gid: -1, roles: af.currentRoles}, health.NewServer(), log, tlsServerOptions()...)
	go srv.Serve(ln)
	defer srv.Stop()
	addr := ln.Addr().String()

	caPool := x509.NewCertPool()
	caPool.AddCert(p.ca.Cert)
	dial := func(t *testing.T, c *certgen.Pair, mod func(*tls.Config)) *grpc.ClientConn {
		t.Helper()
		cfg := &tls.Config{RootCAs: caPool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
		if c != nil {
			cfg.Certificates = []tls.Certificate{{Certificate: [][]byte{c.Cert.Raw}, PrivateKey: c.Key}}
		}
		if mod != nil {
			mod(cfg)
		}
		cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return cc
	}
	call := func(cc *grpc.ClientConn, method string, name string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		api := sockguardv1.NewSockguardServiceClient(cc)
		switch method {
		case "list":
			_, err := api.ListSockets(ctx, &sockguardv1.ListSocketsRequest{})
			return err
		case "create":
			_, err := api.CreateSocket(ctx, &sockguardv1.CreateSocketRequest{Socket: &sockguardv1.Socket{Name: name}})
			return err
		case "watch":
			st, err := api.WatchDenials(ctx, &sockguardv1.WatchDenialsRequest{})
			if err == nil {
				_, err = st.Recv()
			}
			return err
		case "delete-stream":
			st, err := api.DeleteSocketStream(ctx, &sockguardv1.DeleteSocketStreamRequest{Name: name, Purge: true})
			if err == nil {
				_, err = st.Recv()
			}
			return err
		case "backup":
			st, err := api.BackupState(ctx, &sockguardv1.BackupStateRequest{})
			if err == nil {
				_, err = st.Recv()
			}
			return err
		case "health":
			_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
			return err
		}
		panic(method)
	}

	t.Run("refused at the TLS layer", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			cert *certgen.Pair
			mod  func(*tls.Config)
		}{
			{"no certificate", nil, nil},
			{"another CA", foreign, nil},
			{"expired", expired, nil},
			{"server certificate as a client certificate", srvCert, nil},
			{"TLS 1.2", admin, func(c *tls.Config) { c.MaxVersion = tls.VersionTLS12 }},
		} {
			t.Run(tc.name, func(t *testing.T) {
				cc := dial(t, tc.cert, tc.mod)
				for _, m := range []string{"health", "list"} {
					err := call(cc, m, "")
					if status.Code(err) != codes.Unavailable {
						t.Fatalf("%s: %v, want a refused handshake (Unavailable)", m, err)
					}
				}
			})
		}
		// A plaintext client gets nothing either.
		cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		if err := call(cc, "health", ""); status.Code(err) != codes.Unavailable {
			t.Fatalf("plaintext: %v", err)
		}
	})

	for _, tc := range []struct {
		name   string
		cert   *certgen.Pair
		method string
		socket string
		code   codes.Code
	}{
		{"viewer lists", viewer, "list", "", codes.OK},
		{"viewer watches", viewer, "watch", "", codes.OK},
		{"viewer health", viewer, "health", "", codes.OK},
		{"viewer cannot create", viewer, "create", "runner-1", codes.PermissionDenied},
		{"viewer cannot back up (stream)", viewer, "backup", "", codes.PermissionDenied},
		{"operator creates runner-9", operator, "create", "runner-9", codes.OK},
		{"operator cannot create build-1", operator, "create", "build-1", codes.PermissionDenied},
		{"operator: name glob is not a prefix trick", operator, "create", "runner-1/../build-1", codes.PermissionDenied},
		{"operator cannot back up", operator, "backup", "", codes.PermissionDenied},
		{"operator purges runner-9 (stream)", operator, "delete-stream", "runner-9", codes.OK},
		{"operator cannot purge build-1 (stream: judged on its message)", operator, "delete-stream", "build-1", codes.PermissionDenied},
		{"viewer cannot purge (stream)", viewer, "delete-stream", "runner-9", codes.PermissionDenied},
		{"admin purges anything (stream)", admin, "delete-stream", "build-1", codes.OK},
		{"operator lists", operator, "list", "", codes.OK},
		{"admin backs up", admin, "backup", "", codes.OK},
		{"admin creates anything", admin, "create", "build-1", codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := call(dial(t, tc.cert, nil), tc.method, tc.socket); status.Code(err) != tc.code {
				t.Fatalf("%v, want %s", err, tc.code)
			}
		})
	}

	t.Run("files others can write are refused", func(t *testing.T) {
		for _, f := range []string{rolesFile, tcfg.ClientCA, tcfg.KeyFile} {
			if err := os.Chmod(f, 0o620); err != nil {
				t.Fatal(err)
			}
			if _, err := loadAdminFiles(tcfg, rolesFile, false, log); err == nil || !strings.Contains(err.Error(), "writable by group or others") {
				t.Errorf("%s mode 0620: %v", f, err)
			}
			if _, err := loadAdminFiles(tcfg, rolesFile, true, log); err != nil {
				t.Errorf("%s with allow-shared: %v", f, err)
			}
			if err := os.Chmod(f, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chmod(tcfg.KeyFile, 0o604); err != nil {
			t.Fatal(err)
		}
		if _, err := loadAdminFiles(tcfg, rolesFile, false, log); err == nil || !strings.Contains(err.Error(), "readable by others") {
			t.Errorf("key mode 0604: %v", err)
		}
		if err := os.Chmod(tcfg.KeyFile, 0o600); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("the service sees the caller and its role", func(t *testing.T) {
		if err := call(dial(t, operator, nil), "create", "runner-2"); err != nil {
			t.Fatal(err)
		}
		id := <-svc.seen
		if id.Transport != TransportTLS || id.Subject != "CN=runner-bot" || id.Role != "operator" || id.UID != 0 {
			t.Fatalf("callerIdentity %+v", id)
		}
	})

	t.Run("rotation", func(t *testing.T) {
		held := dial(t, viewer, nil)
		if err := call(held, "list", ""); err != nil {
			t.Fatal(err)
		}
		// A new CA and server certificate; the viewer's old certificate
		// is from the old CA.
		p2 := newPKI(t, t.TempDir(), "ca2")
		s2, err := p2.ca.Server(certgen.Options{CommonName: "broker-a2", Hosts: []string{"127.0.0.1"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := s2.Write(dir, "server"); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "ca.pem"), p2.ca.CertPEM(), 0o600); err != nil {
			t.Fatal(err)
		}
		if !af.tls.check(false) {
			t.Fatal("changed files were not reloaded")
		}
		// The open connection keeps working.
		for range 5 {
			if err := call(held, "list", ""); err != nil {
				t.Fatalf("held connection after rotation: %v", err)
			}
		}
		// A new handshake with the old CA's certificate is refused...
		if err := call(dial(t, viewer, nil), "list", ""); status.Code(err) != codes.Unavailable {
			t.Fatalf("old client cert after rotation: %v", err)
		}
		// ...and one trusting the new CA, with a cert from it, sees the new server cert.
		v2, err := p2.ca.Client(certgen.Options{URIs: []string{"spiffe://fleet/viewer"}})
		if err != nil {
			t.Fatal(err)
		}
		pool2 := x509.NewCertPool()
		pool2.AddCert(p2.ca.Cert)
		cc := dial(t, v2, func(c *tls.Config) { c.RootCAs = pool2 })
		if err := call(cc, "list", ""); err != nil {
			t.Fatalf("new client cert after rotation: %v", err)
		}
		// A broken file keeps what is in force.
		if err := os.WriteFile(filepath.Join(dir, "server-key.pem"), []byte("garbage"), 0o600); err != nil {
			t.Fatal(err)
		}
		if af.tls.check(false) {
			t.Fatal("a broken key was taken")
		}
		if err := call(dial(t, v2, func(c *tls.Config) { c.RootCAs = pool2 }), "list", ""); err != nil {
			t.Fatalf("after a failed reload: %v", err)
		}
	})
}

// BenchmarkAdminTLS measures a call over a held mutual-TLS connection and
// one that pays a new connection and TLS 1.3 handshake (ECDSA P-256).
func BenchmarkAdminTLS(b *testing.B) {
	dir := b.TempDir()
	ca, _ := certgen.NewCA(certgen.Options{CommonName: "ca"})
	_ = ca.Write(dir, "ca")
	srvCert, _ := ca.Server(certgen.Options{CommonName: "b", Hosts: []string{"127.0.0.1"}})
	_ = srvCert.Write(dir, "server")
	cl, _ := ca.Client(certgen.Options{URIs: []string{"spiffe://fleet/viewer"}})
	rolesFile := filepath.Join(dir, "roles.yaml")
	_ = os.WriteFile(rolesFile, []byte("bindings:\n- role: viewer\n  identities: [uri:spiffe://fleet/viewer]\n"), 0o600)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tcfg := AdminTLSConfig{Listen: "tcp://127.0.0.1:0", CertFile: filepath.Join(dir, "server.pem"),
		KeyFile: filepath.Join(dir, "server-key.pem"), ClientCA: filepath.Join(dir, "ca.pem")}
	af, err := loadAdminFiles(tcfg, rolesFile, false, log)
	if err != nil {
		b.Fatal(err)
	}
	ln, err := listenAdminTCP(tcfg.Listen)
	if err != nil {
		b.Fatal(err)
	}
	srv := newAdminServer(&stubService{}, af.tlsCreds(), adminAuth{gid: -1, roles: af.currentRoles}, health.NewServer(), log, tlsServerOptions()...)
	go srv.Serve(ln)
	defer srv.Stop()
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	creds := credentials.NewTLS(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13,
		Certificates: []tls.Certificate{{Certificate: [][]byte{cl.Cert.Raw}, PrivateKey: cl.Key}}})
	list := func(cc *grpc.ClientConn) {
		if _, err := sockguardv1.NewSockguardServiceClient(cc).ListSockets(context.Background(), &sockguardv1.ListSocketsRequest{}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("held connection", func(b *testing.B) {
		cc, _ := grpc.NewClient("passthrough:///"+ln.Addr().String(), grpc.WithTransportCredentials(creds))
		defer cc.Close()
		list(cc)
		for b.Loop() {
			list(cc)
		}
	})
	b.Run("new connection", func(b *testing.B) {
		for b.Loop() {
			cc, _ := grpc.NewClient("passthrough:///"+ln.Addr().String(), grpc.WithTransportCredentials(creds))
			list(cc)
			cc.Close()
		}
	})
}

// TestOperatorBindRoots: an operator narrowed to some sockets may give them
// only the bind roots its bindings list (none by default); an operator of
// every socket and an admin may give any. Otherwise a runner-* operator
// could allow /etc and be root on the host.
func TestOperatorBindRoots(t *testing.T) {
	roles, err := parseRoles([]byte(`bindings:
- role: operator
  identities: [cn:narrow]
  sockets: [runner-*]
- role: operator
  identities: [cn:work]
  sockets: [runner-*]
  bind_roots: [/srv/runners, /opt/tool]
- role: operator
  identities: [cn:wide]
- role: admin
  identities: [cn:root]
`))
	if err != nil {
		t.Fatal(err)
	}
	auth := adminAuth{gid: -1, roles: func() *Roles { return roles }}
	id := func(cn string) CallerIdentity {
		return CallerIdentity{Transport: TransportTLS, Subject: "CN=" + cn, cert: &certNames{cn: cn}}
	}
	for _, tc := range []struct {
		cn    string
		roots []string
		ok    bool
	}{
		{"narrow", nil, true},
		{"narrow", []string{"/srv/runners/r1"}, false},
		{"work", []string{"/srv/runners/r1/_work", "/opt/tool"}, true},
		{"work", []string{"/srv/runners"}, true},
		{"work", []string{"/srv/runners-evil"}, false},
		{"work", []string{"/srv/runners/../../etc"}, false},
		{"work", []string{"/etc"}, false},
		{"work", []string{"relative"}, false},
		{"wide", []string{"/etc"}, true},
		{"root", []string{"/etc"}, true},
	} {
		g := auth.grantFor(id(tc.cn))
		if _, ok := g.allowsBindRoots(tc.roots); ok != tc.ok {
			t.Errorf("%s with %v: allowed %v, want %v", tc.cn, tc.roots, ok, tc.ok)
		}
	}
	// The interceptor applies it to create and update alike.
	req := &sockguardv1.CreateSocketRequest{Socket: &sockguardv1.Socket{Name: "runner-1",
		Overrides: &sockguardv1.SocketOverrides{AllowedBindRoots: []*sockguardv1.BindRoot{{Path: "/etc"}}}}}
	if got := requestedBindRoots(req); len(got) != 1 || got[0] != "/etc" {
		t.Fatalf("requestedBindRoots = %v", got)
	}
	for _, bad := range []string{"bind_roots: [/x]\n", "sockets: [r-*]\n  bind_roots: [etc]\n", "sockets: [r-*]\n  bind_roots: [/]\n", "sockets: [r-*]\n  bind_roots: [/a/../b]\n"} {
		if _, err := parseRoles([]byte("bindings:\n- role: operator\n  identities: [cn:x]\n  " + bad)); err == nil {
			t.Errorf("role file with %q accepted", bad)
		}
	}
}
