package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// Bounds of the TCP admin listener.
const (
	// maxAdminTCPConns is how many TCP admin connections may be open at
	// once; more wait in the kernel's accept queue.
	maxAdminTCPConns = 256
	// adminHandshakeTimeout bounds a TLS handshake, so a client that
	// connects and sends nothing holds a slot only this long.
	adminHandshakeTimeout = 10 * time.Second
	// maxAdminStreams bounds concurrent RPCs on one TCP admin connection.
	maxAdminStreams = 100
	// maxTLSFileBytes bounds a certificate, key or CA file.
	maxTLSFileBytes = 1 << 20
	// DefaultAdminReloadInterval is how often the admin TLS files and the
	// role file are checked for changes.
	DefaultAdminReloadInterval = 2 * time.Second
)

// AdminTLSConfig is the TCP admin listener: mutual TLS 1.3 only.
type AdminTLSConfig struct {
	Listen   string // tcp://HOST:PORT; empty: no TCP listener
	CertFile string // server certificate chain (PEM)
	KeyFile  string // its private key (PEM)
	ClientCA string // CA bundle (PEM) that client certificates must chain to
}

// adminListenAddr validates --admin-listen and returns its host:port.
func adminListenAddr(s string) (string, error) {
	addr, ok := strings.CutPrefix(s, "tcp://")
	if !ok {
		return "", fmt.Errorf("%w: --admin-listen %q: want tcp://HOST:PORT (the unix admin socket is --admin-socket)", ErrInvalidArgument, s)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return "", fmt.Errorf("%w: --admin-listen %q: %w", ErrInvalidArgument, s, err)
	}
	return addr, nil
}

// tlsMaterial is one consistent set of the files: the server certificate
// and the pool client certificates are verified against.
type tlsMaterial struct {
	cert tls.Certificate
	pool *x509.CertPool
}

func readBounded(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, maxTLSFileBytes+1)
	n, err := f.Read(buf)
	for err == nil && n < len(buf) {
		var m int
		m, err = f.Read(buf[n:])
		n += m
	}
	if n > maxTLSFileBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", file, maxTLSFileBytes)
	}
	return buf[:n], nil
}

// loadTLSMaterial reads the three files and checks that they fit: the key
// belongs to the certificate, and the CA file holds at least one CA
// certificate and nothing else.
func loadTLSMaterial(c AdminTLSConfig) (*tlsMaterial, error) {
	certPEM, err := readBounded(c.CertFile)
	if err != nil {
		return nil, fmt.Errorf("admin TLS certificate: %w", err)
	}
	keyPEM, err := readBounded(c.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("admin TLS key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("admin TLS certificate %s and key %s: %w", c.CertFile, c.KeyFile, err)
	}
	caPEM, err := readBounded(c.ClientCA)
	if err != nil {
		return nil, fmt.Errorf("admin client CA: %w", err)
	}
	pool := x509.NewCertPool()
	n := 0
	for rest := caPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("admin client CA %s: a %s block where only certificates belong", c.ClientCA, b.Type)
		}
		ca, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("admin client CA %s: %w", c.ClientCA, err)
		}
		if !ca.IsCA {
			return nil, fmt.Errorf("admin client CA %s: certificate %q is not a CA certificate", c.ClientCA, ca.Subject.String())
		}
		pool.AddCert(ca)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("admin client CA %s: no certificate in it", c.ClientCA)
	}
	return &tlsMaterial{cert: cert, pool: pool}, nil
}

// reloadable holds the current value loaded from some files and loads
// them again when they change. Invariant: cur is always a value that
// loaded completely; a failed reload (a half-written file, a key that does
// not match yet) keeps the previous one and is retried on the next check.
type reloadable[T any] struct {
	what  string
	files []string
	load  func() (*T, error)
	log   *slog.Logger
	cur   atomic.Pointer[T]

	mu         sync.Mutex // guards the stamps
	stamp      string     // files' stamp of cur
	badStamp   string     // stamp of the last failed load, logged once
	reloads    atomic.Uint64
	lastReload atomic.Int64 // unix nanos of the last successful (re)load
}

func newReloadable[T any](what string, load func() (*T, error), log *slog.Logger, files ...string) (*reloadable[T], error) {
	r := &reloadable[T]{what: what, files: files, load: load, log: log}
	st := r.fileStamp()
	v, err := load()
	if err != nil {
		return nil, err
	}
	r.cur.Store(v)
	r.stamp = st
	r.lastReload.Store(time.Now().UnixNano())
	return r, nil
}

// get returns the value in force; safe from any goroutine.
func (r *reloadable[T]) get() *T { return r.cur.Load() }

// fileStamp identifies the files' current contents by inode, size and
// modification time: a rename over the file or a rewrite changes it.
func (r *reloadable[T]) fileStamp() string {
	var b strings.Builder
	for _, f := range r.files {
		fi, err := os.Stat(f)
		if err != nil {
			fmt.Fprintf(&b, "%s:missing;", f)
			continue
		}
		var ino uint64
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			ino = st.Ino
		}
		fmt.Fprintf(&b, "%s:%d:%d:%d;", f, ino, fi.Size(), fi.ModTime().UnixNano())
	}
	return b.String()
}

// check reloads when the files changed since the value in force was read,
// or always when force is set (SIGHUP). It reports whether a new value is
// in force.
func (r *reloadable[T]) check(force bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.fileStamp()
	if !force && (st == r.stamp || st == r.badStamp) {
		return false
	}
	v, err := r.load()
	if err != nil {
		if st != r.badStamp || force {
			r.log.Error("admin_reload_failed", "what", r.what, "err", err)
		}
		r.badStamp = st
		return false
	}
	r.cur.Store(v)
	r.stamp, r.badStamp = st, ""
	r.reloads.Add(1)
	r.lastReload.Store(time.Now().UnixNano())
	r.log.Info("admin_reloaded", "what", r.what)
	return true
}

// adminFiles are the admin API's reloadable files: the TLS material (nil
// without a TCP listener) and the role file (nil without one).
type adminFiles struct {
	tls   *reloadable[tlsMaterial]
	roles *reloadable[Roles]
}

// checkAdminFile refuses a file that decides who is admin (the role file,
// the client CA, the listener's certificate and key) when someone besides
// root and the broker's own uid could write it, or, for the key, read it
// (unless allowShared): whoever writes the CA file or the role file makes
// themselves admin at the next reload.
func checkAdminFile(flag, file string, key, allowShared bool) error {
	if allowShared {
		return nil
	}
	fi, err := os.Stat(file)
	if err != nil {
		return fmt.Errorf("%s: %w", flag, err)
	}
	uid := -1
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		uid = int(st.Uid)
	}
	switch perm := fi.Mode().Perm(); {
	case perm&0o022 != 0:
		return fmt.Errorf("%w: %s: %s is writable by group or others (mode %#o) (pass --allow-shared-dirs if this is deliberate)",
			ErrInvalidArgument, flag, file, perm)
	case key && perm&0o004 != 0:
		return fmt.Errorf("%w: %s: %s is readable by others (mode %#o)", ErrInvalidArgument, flag, file, perm)
	case uid != 0 && uid != os.Geteuid():
		return fmt.Errorf("%w: %s: %s is owned by uid %d, not root or the broker's uid (pass --allow-shared-dirs if this is deliberate)",
			ErrInvalidArgument, flag, file, uid)
	}
	return nil
}

// loadAdminFiles reads and checks the admin listener's and role file's
// settings before anything is served.
func loadAdminFiles(t AdminTLSConfig, rolesFile string, allowShared bool, log *slog.Logger) (*adminFiles, error) {
	af := &adminFiles{}
	if t.Listen == "" {
		if t.CertFile != "" || t.KeyFile != "" || t.ClientCA != "" {
			return nil, fmt.Errorf("%w: --admin-tls-cert, --admin-tls-key and --admin-client-ca apply to --admin-listen only", ErrInvalidArgument)
		}
	} else {
		if _, err := adminListenAddr(t.Listen); err != nil {
			return nil, err
		}
		if t.CertFile == "" || t.KeyFile == "" || t.ClientCA == "" {
			return nil, fmt.Errorf("%w: --admin-listen needs --admin-tls-cert, --admin-tls-key and --admin-client-ca (mutual TLS only; there is no plaintext mode)", ErrInvalidArgument)
		}
		if rolesFile == "" {
			return nil, fmt.Errorf("%w: --admin-listen needs --admin-roles: a client certificate has no role unless the role file gives it one", ErrInvalidArgument)
		}
		load := func() (*tlsMaterial, error) {
			for _, f := range []struct {
				flag, file string
				key        bool
			}{{"--admin-tls-cert", t.CertFile, false}, {"--admin-tls-key", t.KeyFile, true}, {"--admin-client-ca", t.ClientCA, false}} {
				if err := checkAdminFile(f.flag, f.file, f.key, allowShared); err != nil {
					return nil, err
				}
			}
			return loadTLSMaterial(t)
		}
		r, err := newReloadable("tls", load, log, t.CertFile, t.KeyFile, t.ClientCA)
		if err != nil {
			return nil, err
		}
		af.tls = r
	}
	if rolesFile != "" {
		load := func() (*Roles, error) {
			if err := checkAdminFile("--admin-roles", rolesFile, false, allowShared); err != nil {
				return nil, err
			}
			return loadRoles(rolesFile)
		}
		r, err := newReloadable("roles", load, log, rolesFile)
		if err != nil {
			return nil, err
		}
		af.roles = r
	}
	return af, nil
}

// currentRoles is the role file in force, nil without one.
func (af *adminFiles) currentRoles() *Roles {
	if af == nil || af.roles == nil {
		return nil
	}
	return af.roles.get()
}

// Reload checks every admin file now; force reloads them even when they
// look unchanged (what SIGHUP asks for).
func (af *adminFiles) Reload(force bool) {
	if af == nil {
		return
	}
	if af.tls != nil {
		af.tls.check(force)
	}
	if af.roles != nil {
		af.roles.check(force)
	}
}

// watch checks the files every interval until ctx ends.
func (af *adminFiles) watch(ctx context.Context, interval time.Duration) {
	if af == nil || (af.tls == nil && af.roles == nil) {
		return
	}
	if interval <= 0 {
		interval = DefaultAdminReloadInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			af.Reload(false)
		}
	}
}

// serverTLSConfig answers every handshake with the material in force at
// that moment, so a rotation applies to the next handshake and leaves
// established connections alone. TLS 1.3 only; a client certificate that
// chains to the client CA (and is valid now, for client authentication) is
// required.
func (af *adminFiles) serverTLSConfig() *tls.Config {
	perConn := func(*tls.ClientHelloInfo) (*tls.Config, error) {
		m := af.tls.get()
		return &tls.Config{
			MinVersion:   tls.VersionTLS13,
			MaxVersion:   tls.VersionTLS13,
			Certificates: []tls.Certificate{m.cert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    m.pool,
			NextProtos:   []string{"h2"},
		}, nil
	}
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		MaxVersion:         tls.VersionTLS13,
		ClientAuth:         tls.RequireAndVerifyClientCert,
		GetConfigForClient: perConn,
	}
}

// listenAdminTCP opens the TCP admin listener, bounded to
// maxAdminTCPConns open connections.
func listenAdminTCP(listen string) (net.Listener, error) {
	addr, err := adminListenAddr(listen)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	return newLimitListener(ln, maxAdminTCPConns), nil
}

// tlsCreds are the TCP listener's transport credentials.
func (af *adminFiles) tlsCreds() credentials.TransportCredentials {
	return credentials.NewTLS(af.serverTLSConfig())
}

// tlsServerOptions bound what one TCP client can hold.
func tlsServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ConnectionTimeout(adminHandshakeTimeout),
		grpc.MaxConcurrentStreams(maxAdminStreams),
	}
}

// limitListener holds at most cap(sem) accepted connections open.
//
// Close also ends an Accept that waits for a slot: grpc's Stop and
// GracefulStop close the listener and wait for Serve to return before they
// close any connection, so an Accept blocked on a full sem (connections a
// client keeps open) would otherwise hang the broker's shutdown.
type limitListener struct {
	net.Listener
	sem       chan struct{}
	closeOnce sync.Once
	closed    chan struct{}
}

func newLimitListener(ln net.Listener, n int) *limitListener {
	return &limitListener{Listener: ln, sem: make(chan struct{}, n), closed: make(chan struct{})}
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.closed:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
