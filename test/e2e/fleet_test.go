package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/sockguard/sockguard/internal/certgen"
	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
)

// fleetPKI is a test CA with its certificates written to dir.
type fleetPKI struct {
	t   *testing.T
	dir string
	ca  *certgen.Pair
}

func newFleetPKI(t *testing.T, dir, name string) *fleetPKI {
	t.Helper()
	ca, err := certgen.NewCA(certgen.Options{CommonName: name})
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Write(dir, name); err != nil {
		t.Fatal(err)
	}
	return &fleetPKI{t: t, dir: dir, ca: ca}
}

func (p *fleetPKI) issue(name string, server bool, o certgen.Options) *certgen.Pair {
	p.t.Helper()
	issue := p.ca.Client
	if server {
		issue = p.ca.Server
	}
	c, err := issue(o)
	if err != nil {
		p.t.Fatal(err)
	}
	if err := c.Write(p.dir, name); err != nil {
		p.t.Fatal(err)
	}
	return c
}

func (p *fleetPKI) file(name string) string { return filepath.Join(p.dir, name+".pem") }
func (p *fleetPKI) key(name string) string  { return filepath.Join(p.dir, name+"-key.pem") }

var adminTLSAddr = regexp.MustCompile(`msg=admin_tls_listening addr=(127\.0\.0\.1:\d+)`)

// startTLSBroker starts a broker with a TCP mutual-TLS admin listener on a
// free loopback port (the kernel picks it; the broker logs it).
func startTLSBroker(t *testing.T, p *fleetPKI, server, roles string) (*Broker, string) {
	t.Helper()
	b := NewBroker(t)
	b.ExtraArgs = []string{
		"--admin-listen", "tcp://127.0.0.1:0",
		"--admin-tls-cert", p.file(server), "--admin-tls-key", p.key(server),
		"--admin-client-ca", p.file("ca"), "--admin-roles", roles,
	}
	b.Start()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := adminTLSAddr.FindStringSubmatch(b.Log()); m != nil {
			return b, m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no admin_tls_listening line:\n%s", b.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tlsConn dials a broker's admin listener as the holder of cert (nil: no
// client certificate), trusting roots.
func tlsConn(t *testing.T, addr string, roots *x509.CertPool, cert *certgen.Pair) *grpc.ClientConn {
	t.Helper()
	cfg := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{{Certificate: [][]byte{cert.Cert.Raw}, PrivateKey: cert.Key}}
	}
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// TestFleetAdminTLS: two brokers with mutual-TLS admin listeners on
// loopback; sgctl with a context for each lists both and follows denials
// (made by the real docker CLI) from both; roles decide what each
// certificate may do; bad certificates are refused at the TLS layer; a
// certificate rotation under load drops no connection.
func TestFleetAdminTLS(t *testing.T) {
	dir := t.TempDir()
	p := newFleetPKI(t, dir, "ca")
	other := newFleetPKI(t, t.TempDir(), "other-ca")
	p.issue("server", true, certgen.Options{CommonName: "broker", Hosts: []string{"127.0.0.1"}})
	viewer := p.issue("viewer", false, certgen.Options{URIs: []string{"spiffe://fleet.test/viewer"}})
	p.issue("operator", false, certgen.Options{CommonName: "runner-bot", OUs: []string{"ci"}})
	nobody := p.issue("nobody", false, certgen.Options{CommonName: "mallory"})
	expired := p.issue("expired", false, certgen.Options{URIs: []string{"spiffe://fleet.test/viewer"},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: time.Now().Add(-time.Hour)})
	foreign := other.issue("foreign", false, certgen.Options{URIs: []string{"spiffe://fleet.test/viewer"}})
	roles := filepath.Join(dir, "roles.yaml")
	if err := os.WriteFile(roles, []byte(`bindings:
- role: viewer
  identities: ["uri:spiffe://fleet.test/viewer"]
- role: operator
  identities: ["cn:runner-bot"]
  sockets: ["runner-*"]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(p.ca.Cert)

	a, addrA := startTLSBroker(t, p, "server", roles)
	b, addrB := startTLSBroker(t, p, "server", roles)
	a.CreateSocket(t, "runner-1", preset)
	b.CreateSocket(t, "runner-2", preset)

	cfg1 := filepath.Join(t.TempDir(), "sgctl.yaml")
	cfg := cfg1
	sg := func(args ...string) Result {
		return run(cmdOpts{env: []string{"SGCTL_CONFIG=" + cfg}, timeout: 60 * time.Second}, suite.sgctl, args...)
	}
	sg1 := func(args ...string) Result {
		return run(cmdOpts{env: []string{"SGCTL_CONFIG=" + cfg1}, timeout: 60 * time.Second}, suite.sgctl, args...)
	}
	for _, c := range []struct{ name, addr, cert string }{
		{"host-a", addrA, "viewer"}, {"host-b", addrB, "viewer"},
		{"op-a", addrA, "operator"}, {"nobody-a", addrA, "nobody"},
		{"expired-a", addrA, "expired"},
	} {
		sg("context", "add", c.name, "--address", "tcp://"+c.addr,
			"--ca", p.file("ca"), "--cert", p.file(c.cert), "--key", p.key(c.cert)).MustSucceed(t)
	}
	t.Run("two contexts list both brokers", func(t *testing.T) {
		// A config of only the two viewer contexts, for the fan-out.
		two := filepath.Join(dir, "two.yaml")
		run(cmdOpts{env: []string{"SGCTL_CONFIG=" + two}}, suite.sgctl, "context", "add", "host-a", "--address", "tcp://"+addrA,
			"--ca", p.file("ca"), "--cert", p.file("viewer"), "--key", p.key("viewer")).MustSucceed(t)
		run(cmdOpts{env: []string{"SGCTL_CONFIG=" + two}}, suite.sgctl, "context", "add", "host-b", "--address", "tcp://"+addrB,
			"--ca", p.file("ca"), "--cert", p.file("viewer"), "--key", p.key("viewer")).MustSucceed(t)
		cfg = two
		r := sg("--context", "all", "ls").MustSucceed(t)
		sg("--context", "all", "create-socket", "runner-7", "--preset", preset).MustFail(t)
		lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
		if len(lines) != 3 || !strings.HasPrefix(lines[0], "HOST") ||
			!strings.HasPrefix(lines[1], "host-a") || !strings.Contains(lines[1], "runner-1") ||
			!strings.HasPrefix(lines[2], "host-b") || !strings.Contains(lines[2], "runner-2") {
			t.Fatalf("fan-out ls:\n%s", r)
		}
	})

	t.Run("denials --follow merges both brokers", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, suite.sgctl, "--all-contexts", "-o", "json", "denials", "--follow")
		cmd.Env = append(cleanEnv(), "SGCTL_CONFIG="+cfg)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }() // killed: its exit status says nothing
		seen := map[string]bool{}
		got := make(chan string, 64)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				got <- sc.Text()
			}
			close(got)
		}()
		// Refusals made by the real docker CLI, until both hosts' show up
		// (the follow subscribes asynchronously, so early ones may be
		// before it).
		for i := 0; len(seen) < 2; i++ {
			if i == 20 {
				t.Fatalf("followed %v after 20 rounds; stderr: %s", seen, stderr.String())
			}
			a.Docker("runner-1", "run", "--rm", "--network", "none", "--privileged", testImage, "true").MustFail(t)
			b.Docker("runner-2", "run", "--rm", "--network", "none", "--privileged", testImage, "true").MustFail(t)
			timeout := time.After(3 * time.Second)
		drain:
			for {
				select {
				case line, ok := <-got:
					if !ok {
						t.Fatalf("follow ended: %s", stderr.String())
					}
					for _, h := range []string{"host-a", "host-b"} {
						if strings.Contains(line, `"host":"`+h+`"`) && strings.Contains(line, "privileged") {
							seen[h] = true
						}
					}
				case <-timeout:
					break drain
				}
			}
		}
	})

	t.Run("viewer cannot create a socket", func(t *testing.T) {
		api := sockguardv1.NewSockguardServiceClient(tlsConn(t, addrA, roots, viewer))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := api.CreateSocket(ctx, &sockguardv1.CreateSocketRequest{Socket: &sockguardv1.Socket{Name: "runner-5", Preset: preset}})
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("viewer CreateSocket: %v, want PermissionDenied", err)
		}
		r := sg1("--context", "host-a", "create-socket", "runner-5", "--preset", preset).MustFail(t)
		if !strings.Contains(r.Stderr, "needs the operator role") {
			t.Errorf("sgctl as viewer: %s", r)
		}
		if slices.Contains(a.socketNames(t), "runner-5") {
			t.Fatal("a viewer created a socket")
		}
		// The refusal is in the audit trail with the certificate's
		// identity and role (read by root over the unix socket).
		var out struct {
			Events []struct {
				Action, Socket, Result string
				Caller                 struct{ Subject, Role, Transport string }
			} `json:"events"`
		}
		a.SgctlJSON(t, &out, "events", "--socket", "runner-5")
		if len(out.Events) != 2 {
			t.Fatalf("audit events of runner-5: %+v, want the two refused creates", out.Events)
		}
		for _, ev := range out.Events {
			if ev.Action != "create" || ev.Result != "PermissionDenied" || ev.Caller.Transport != "tls" ||
				ev.Caller.Subject != "spiffe://fleet.test/viewer" || ev.Caller.Role != "viewer" {
				t.Errorf("audit event %+v", ev)
			}
		}
		if _, err := api.ListSockets(ctx, &sockguardv1.ListSocketsRequest{}); err != nil {
			t.Fatalf("viewer ListSockets: %v", err)
		}
		st, err := api.BackupState(ctx, &sockguardv1.BackupStateRequest{})
		if err == nil {
			_, err = st.Recv()
		}
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("viewer BackupState (a stream): %v, want PermissionDenied", err)
		}
	})

	t.Run("operator limited to runner-*", func(t *testing.T) {
		cfg0 := filepath.Join(t.TempDir(), "op.yaml")
		op := func(args ...string) Result {
			return run(cmdOpts{env: []string{"SGCTL_CONFIG=" + cfg0}, timeout: 60 * time.Second}, suite.sgctl, args...)
		}
		op("context", "add", "op-a", "--address", "tcp://"+addrA, "--ca", p.file("ca"), "--cert", p.file("operator"), "--key", p.key("operator")).MustSucceed(t)
		op("create-socket", "runner-9", "--preset", preset).MustSucceed(t)
		waitDial(t, a.TenantSocket("runner-9"), 10*time.Second)
		a.Docker("runner-9", "version").MustSucceed(t)
		r := op("create-socket", "build-1", "--preset", preset).MustFail(t)
		if !strings.Contains(r.Stderr, "may not change socket") {
			t.Errorf("operator create build-1: %s", r)
		}
		op("delete-socket", "runner-1").MustSucceed(t) // a runner-* socket it did not create
		a.CreateSocket(t, "runner-1", preset)          // root, on the unix socket, is still admin
		op("--context", "op-a", "backup", filepath.Join(t.TempDir(), "b.db")).MustFail(t)
		if names := a.socketNames(t); slices.Contains(names, "build-1") || !slices.Contains(names, "runner-9") {
			t.Fatalf("sockets after the operator's calls: %v", names)
		}
	})

	t.Run("refused at the TLS layer", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			cert *certgen.Pair
		}{
			{"no certificate", nil}, {"another CA", foreign}, {"expired", expired},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_, err := healthpb.NewHealthClient(tlsConn(t, addrA, roots, tc.cert)).Check(ctx, &healthpb.HealthCheckRequest{})
				// TLS 1.3: the client may finish its side before the broker
				// refuses its certificate, so the error reads as a refused
				// handshake or a connection closed before the HTTP/2
				// preface; either way no RPC is served.
				if status.Code(err) != codes.Unavailable {
					t.Fatalf("health with %s: %v, want a refused TLS handshake", tc.name, err)
				}
			})
		}
		r := sg1("--context", "expired-a", "ls").MustFail(t)
		if !strings.Contains(r.Stderr, "TLS handshake") || strings.Contains(r.Stdout, "runner-1") {
			t.Errorf("sgctl with an expired certificate: %s\nstderr: %s", r, r.Stderr)
		}
	})

	t.Run("health for anyone authenticated, reflection as viewer", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, tc := range []struct {
			name    string
			cert    *certgen.Pair
			reflect codes.Code
		}{
			{"viewer", viewer, codes.OK}, {"no role", nobody, codes.PermissionDenied},
		} {
			cc := tlsConn(t, addrA, roots, tc.cert)
			if hr, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("%s health: %v %v", tc.name, hr, err)
			}
			st, err := reflectionpb.NewServerReflectionClient(cc).ServerReflectionInfo(ctx)
			if err == nil {
				err = st.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}})
			}
			if err == nil {
				_, err = st.Recv()
			}
			if status.Code(err) != tc.reflect {
				t.Errorf("%s reflection: %v, want %s", tc.name, err, tc.reflect)
			}
			_, err = sockguardv1.NewSockguardServiceClient(cc).ListSockets(ctx, &sockguardv1.ListSocketsRequest{})
			if want := tc.reflect; status.Code(err) != want {
				t.Errorf("%s ListSockets: %v, want %s", tc.name, err, want)
			}
		}
		if path, err := exec.LookPath("grpcurl"); err == nil {
			tlsArgs := []string{"-cacert", p.file("ca"), "-cert", p.file("viewer"), "-key", p.key("viewer")}
			r := run(cmdOpts{}, path, append(tlsArgs, addrA, "list")...).MustSucceed(t)
			if !strings.Contains(r.Stdout, "sockguard.v1.SockguardService") {
				t.Errorf("grpcurl list: %s", r)
			}
			r = run(cmdOpts{}, path, append(tlsArgs, addrA, "sockguard.v1.SockguardService/ListSockets")...).MustSucceed(t)
			if !strings.Contains(r.Stdout, "runner-1") {
				t.Errorf("grpcurl ListSockets: %s", r)
			}
			run(cmdOpts{}, path, "-connect-timeout", "3", "-cacert", p.file("ca"), "-cert", p.file("nobody"), "-key", p.key("nobody"), addrA, "list").MustFail(t)
			run(cmdOpts{}, path, append(tlsArgs, addrA, "grpc.health.v1.Health/Check")...).MustSucceed(t)
			run(cmdOpts{}, path, "-connect-timeout", "3", "-cacert", p.file("ca"), addrA, "grpc.health.v1.Health/Check").MustFail(t)
		} else {
			t.Log("grpcurl not installed; used the reflection and health APIs directly")
		}
	})

	t.Run("rotation under load drops no connection", func(t *testing.T) {
		old, err := certgen.Load(dir, "server")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		var calls, failures atomic.Int64
		var firstErr atomic.Value
		stop := make(chan struct{})
		var wg sync.WaitGroup
		// Held connections, streaming and unary, plus a new connection for
		// every call of one worker.
		for w := range 4 {
			wg.Go(func() {
				cc := tlsConn(t, addrB, roots, viewer)
				api := sockguardv1.NewSockguardServiceClient(cc)
				if w == 0 {
					// A held stream: it must outlive every rotation.
					watch, err := api.WatchDenials(ctx, &sockguardv1.WatchDenialsRequest{})
					if err != nil {
						failures.Add(1)
						firstErr.Store(err)
					} else {
						go func() {
							for {
								if _, err := watch.Recv(); err != nil {
									if ctx.Err() == nil {
										failures.Add(1)
										firstErr.Store(fmt.Errorf("watch stream: %w", err))
									}
									return
								}
							}
						}()
					}
				}
				for {
					select {
					case <-stop:
						return
					default:
					}
					c, closeConn := api, func() {}
					if w == 3 {
						conn, err := grpc.NewClient("passthrough:///"+addrB, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
							RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13,
							Certificates: []tls.Certificate{{Certificate: [][]byte{viewer.Cert.Raw}, PrivateKey: viewer.Key}},
						})))
						if err != nil {
							t.Error(err)
							return
						}
						c, closeConn = sockguardv1.NewSockguardServiceClient(conn), func() { conn.Close() }
					}
					if _, err := c.ListSockets(ctx, &sockguardv1.ListSocketsRequest{}); err != nil {
						failures.Add(1)
						firstErr.Store(err)
					}
					closeConn()
					calls.Add(1)
				}
			})
		}
		time.Sleep(500 * time.Millisecond)
		var serials []string
		for round := range 3 {
			next := p.issue("server", true, certgen.Options{CommonName: fmt.Sprintf("broker-r%d", round), Hosts: []string{"127.0.0.1"}})
			serials = append(serials, next.Cert.SerialNumber.String())
			// The broker checks its files every 2s: wait for a new
			// handshake to present the new certificate.
			deadline := time.Now().Add(15 * time.Second)
			for {
				conn, err := tls.Dial("tcp", addrB, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS13,
					Certificates: []tls.Certificate{{Certificate: [][]byte{viewer.Cert.Raw}, PrivateKey: viewer.Key}}, NextProtos: []string{"h2"}})
				if err != nil {
					t.Fatalf("handshake during rotation: %v", err)
				}
				got := conn.ConnectionState().PeerCertificates[0].SerialNumber
				conn.Close()
				if got.Cmp(next.Cert.SerialNumber) == 0 {
					break
				}
				if got.Cmp(old.Cert.SerialNumber) != 0 && !slices.Contains(serials, got.String()) {
					t.Fatalf("the broker presents an unknown certificate %s", got)
				}
				if time.Now().After(deadline) {
					t.Fatalf("round %d: the new server certificate is not in force after 15s", round)
				}
				time.Sleep(200 * time.Millisecond)
			}
		}
		close(stop)
		wg.Wait()
		time.Sleep(200 * time.Millisecond) // a stream cut by the rotation would have ended by now
		if failures.Load() != 0 {
			t.Fatalf("%d of %d calls failed during rotation; first: %v", failures.Load(), calls.Load(), firstErr.Load())
		}
		if calls.Load() == 0 {
			t.Fatal("no calls were made during the rotation")
		}
		t.Logf("%d calls over held and new connections across 3 rotations, none failed", calls.Load())
		if !strings.Contains(b.Log(), "admin_reloaded") {
			t.Error("the broker did not log admin_reloaded")
		}
	})
}
