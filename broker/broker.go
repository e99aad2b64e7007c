package broker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/sockguard/sockguard/broker/denylog"
	"github.com/sockguard/sockguard/broker/docker"
	"github.com/sockguard/sockguard/broker/isolation"
	"github.com/sockguard/sockguard/broker/nameindex"
	"github.com/sockguard/sockguard/broker/store"
	"github.com/sockguard/sockguard/policy"
)

// LoadCatalog returns the built-in presets plus, when dir is not empty,
// every *.yaml file in dir, validated strictly. A file's name (without
// .yaml) is its preset name; a clash with a built-in preset is an error.
func LoadCatalog(dir string) (*policy.Catalog, error) {
	builtin, err := policy.BuiltinCatalog()
	if err != nil {
		return nil, fmt.Errorf("built-in presets: %w", err)
	}
	presets := builtin.List()
	if dir != "" {
		files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
		if err != nil {
			return nil, fmt.Errorf("preset dir: %w", err)
		}
		for _, f := range files {
			src, err := readRegularFile(f, maxPresetFileBytes)
			if err != nil {
				return nil, fmt.Errorf("preset dir: %w", err)
			}
			name := strings.TrimSuffix(filepath.Base(f), ".yaml")
			p, err := policy.ParsePreset(name, src)
			if err != nil {
				return nil, fmt.Errorf("preset %s: %w", f, err)
			}
			presets = append(presets, p)
		}
	}
	c, err := policy.NewCatalog(presets...)
	if err != nil {
		return nil, fmt.Errorf("presets: %w", err)
	}
	return c, nil
}

// Config is everything the daemon needs; cmd/broker fills it from flags and
// the config file.
type Config struct {
	Upstream    string // unix:///var/run/docker.sock or tcp://host:port
	AdminSocket string // gRPC admin socket path
	AdminGroup  int    // gid allowed on the admin socket besides root; -1 for none
	SocketDir   string // tenant sockets live at SocketDir/<name>/sockguard.sock
	// HostSocketDir is SocketDir as the Docker daemon sees it, when the
	// broker runs in a container; empty means the same as SocketDir.
	HostSocketDir string
	StateDir      string // persistent state (state.db)
	// FreshState allows starting with a new, empty store where the state
	// is missing or empty although a marker says a store existed.
	FreshState bool
	// AllowSharedDirs accepts a state or socket directory owned by another
	// uid or writable by group or others.
	AllowSharedDirs   bool
	DenyLogMaxRecords int           // retention by count; 0 keeps all
	DenyLogMaxAge     time.Duration // retention by age; 0 keeps all
	// DenyLogMaxPerTenant bounds one tenant's records (0: no bound); when
	// it evicts, a tenant's oldest tenth of that bound is kept.
	DenyLogMaxPerTenant int
	DenyLogQueueBytes   int64         // what waits for the deny-log writer; 0: the default
	ShutdownTimeout     time.Duration // how long SIGTERM waits for requests and streams
	// DenyRate is how many refusals per second one tenant socket gets
	// answered at once (with a second's worth of burst); past it, refusals
	// are paced. 0 disables pacing.
	DenyRate int
	// PresetDir holds operator presets (*.yaml, the file name without
	// extension is the preset name) loaded beside the built-in ones.
	PresetDir string
	// MetricsListen is "unix:///path" or a loopback "host:port" for
	// Prometheus metrics; empty disables them.
	MetricsListen string
	// Limits bound connections, requests in flight, header sizes and
	// timeouts on every tenant socket; zero fields take the defaults.
	Limits  Limits
	Version string
	Logger  *slog.Logger
	// AccessLog, when set, gets one record per proxied request.
	AccessLog *slog.Logger
	// AccessLogFile, when set, is the file under AccessLog: a reload
	// reopens it (logrotate moves the old one away first).
	AccessLogFile *LogFile
	// Reload receives a value for each SIGHUP: re-read PresetDir, apply
	// changed presets, reopen AccessLogFile.
	Reload <-chan os.Signal
	// Notify, when set, gets systemd readiness messages (sd_notify).
	Notify *notifier
	// HealthSocket, when set, is a unix socket (mode 0666) serving only
	// the gRPC health service.
	HealthSocket string
	// pingInterval overrides upstreamPingInterval (tests).
	pingInterval time.Duration
	// BindPins chooses how judged bind sources are kept from being
	// swapped (see PinMode); "" is PinAuto.
	BindPins pinMode
	// PinSweepInterval is how often pins of containers that are gone are
	// removed; 0 is one minute.
	PinSweepInterval time.Duration
	// PinLimit bounds each tenant's pinned bind sources (mounts on the
	// host); 0 is DefaultPinLimit.
	PinLimit int
	// AdminTLS is the TCP admin listener (mutual TLS); off when
	// AdminTLS.Listen is empty.
	AdminTLS AdminTLSConfig
	// AdminRoles is the role file (YAML) mapping admin identities to
	// roles; empty: root and the admin group only, on the unix socket.
	AdminRoles string
	// AdminReloadInterval is how often the admin TLS files and the role
	// file are checked for changes; 0 is DefaultAdminReloadInterval.
	AdminReloadInterval time.Duration
	// DeleteTimes are the default time limits of delete-socket (drain,
	// each purged object, the whole delete); zero fields take
	// DefaultDeleteTimes.
	DeleteTimes DeleteTimes
	// AuditRetention bounds the admin audit trail; the zero value takes
	// DefaultAuditRetention.
	AuditRetention store.AuditRetention
}

// ownPaths are the broker's own files as given and, where they exist,
// with symlinks resolved: no bind root and no bind may reach them.
func ownPaths(paths ...string) []string {
	var out []string
	for _, p := range paths {
		p = filepath.Clean(p)
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
		if real, err := filepath.EvalSymlinks(p); err == nil && !slices.Contains(out, real) {
			out = append(out, real)
		}
	}
	return out
}

// imageSweepInterval is how often records of images gone from the daemon
// are forgotten.
const imageSweepInterval = 15 * time.Minute

// statusLine is the STATUS= line systemd shows for the broker.
func (b *Broker) statusLine() string {
	up := "reachable"
	if !b.upMon.up() {
		up = "not reachable"
	}
	return fmt.Sprintf("STATUS=serving %d sockets; upstream %s", len(b.reg.servers()), up)
}

// Broker is a running daemon.
type Broker struct {
	cfg      Config
	log      *slog.Logger
	up       *docker.Client
	store    serviceStore
	notify   *notifier
	upMon    *upstreamMonitor
	denials  *denylog.DenyLog
	reg      *Registry
	started  time.Time
	stopping chan struct{} // closed when shutdown begins
	// backingUp is set while a BackupState runs: one at a time, so backups
	// cannot pile up read transactions that pin old pages.
	backingUp atomic.Bool
	audit     *auditor // the admin audit trail
}

// Run starts the broker and serves until ctx is cancelled, then drains and
// returns after everything it started has stopped. Errors before serving
// (bad config, a second broker on the same paths) are returned at once and
// leave every existing file as it was.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	for _, p := range []struct{ name, val string }{
		{"admin socket", cfg.AdminSocket}, {"socket dir", cfg.SocketDir}, {"state dir", cfg.StateDir},
	} {
		if !filepath.IsAbs(p.val) {
			return fmt.Errorf("%w: %s %q must be an absolute path", ErrInvalidArgument, p.name, p.val)
		}
	}
	cfg.SocketDir = filepath.Clean(cfg.SocketDir)
	adminFiles, err := loadAdminFiles(cfg.AdminTLS, cfg.AdminRoles, cfg.AllowSharedDirs, log)
	if err != nil {
		return err
	}
	cfg.Limits.setDefaults()
	nofile, err := raiseNoFile(log)
	if err != nil {
		return err
	}
	budget, err := tenantConnBudget(nofile, cfg.Limits.FDReserve)
	if err != nil {
		return err
	}
	log.Info("connection_limits", "tenant_conns_total", budget, "fd_reserve", cfg.Limits.FDReserve,
		"conns_per_socket", cfg.Limits.MaxConnsPerSocket, "requests_per_socket", cfg.Limits.MaxRequestsPerSocket)
	if cfg.HostSocketDir == "" {
		cfg.HostSocketDir = cfg.SocketDir
	}
	// Every dial to dockerd (and a ping every few seconds) feeds the
	// upstream state: its changes are logged once each, not per request.
	upMon := newUpstreamMonitor(log)
	up, err := docker.New(cfg.Upstream, upMon.observe)
	if err != nil {
		return err
	}
	defer up.Close()
	if err := checkPresetDir(cfg.PresetDir, cfg.AllowSharedDirs); err != nil {
		return err
	}
	catalog, err := LoadCatalog(cfg.PresetDir)
	if err != nil {
		return err
	}

	// The state lock comes first: a second broker on the same state dir
	// stops here, before it touches any socket.
	socketMarker := filepath.Join(cfg.SocketDir, store.SocketMarkerName)
	st, err := store.OpenWith(cfg.StateDir, store.Options{
		Fresh: cfg.FreshState, SocketMarker: socketMarker, AllowSharedDir: cfg.AllowSharedDirs, Logger: log,
	})
	if err != nil {
		return err
	}
	defer st.Close()

	if err := os.MkdirAll(filepath.Dir(cfg.SocketDir), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(cfg.SocketDir), err)
	}
	if err := ensureSocketDir(cfg.SocketDir, cfg.AllowSharedDirs); err != nil {
		return fmt.Errorf("--socket-dir: %w", err)
	}
	st.WriteSocketMarker(socketMarker)
	if err := os.MkdirAll(filepath.Dir(cfg.AdminSocket), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(cfg.AdminSocket), err)
	}
	if err := checkSocketParent("--admin-socket", cfg.AdminSocket, cfg.AllowSharedDirs); err != nil {
		return err
	}
	if cfg.HealthSocket != "" {
		if err := checkSocketParent("--health-socket", cfg.HealthSocket, cfg.AllowSharedDirs); err != nil {
			return err
		}
	}
	adminGID, adminMode := 0, os.FileMode(0o600)
	if cfg.AdminGroup >= 0 {
		adminGID, adminMode = cfg.AdminGroup, 0o660
	}
	adminLn, err := listenUnix(cfg.AdminSocket, 0, adminGID, adminMode)
	if errors.Is(err, errSocketInUse) {
		return fmt.Errorf("another broker is already serving the admin socket %s: %w", cfg.AdminSocket, err)
	}
	if err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	var adminTCP net.Listener
	if cfg.AdminTLS.Listen != "" {
		if adminTCP, err = listenAdminTCP(cfg.AdminTLS.Listen); err != nil {
			adminLn.Close()
			return err
		}
		defer adminTCP.Close() // served below; closing twice is harmless
	}

	b := &Broker{
		cfg: cfg, log: log, up: up, store: st, notify: cfg.Notify,
		started: time.Now().UTC(), stopping: make(chan struct{}),
		upMon: upMon,
	}
	monCtx, stopMon := context.WithCancel(context.Background())
	monDone := make(chan struct{})
	go func() {
		defer close(monDone)
		b.upMon.run(monCtx, up, cmp.Or(cfg.pingInterval, upstreamPingInterval))
	}()
	defer func() { stopMon(); <-monDone }()
	auditRet := cfg.AuditRetention
	if auditRet == (store.AuditRetention{}) {
		auditRet = DefaultAuditRetention
	}
	b.audit = &auditor{store: st, ret: auditRet, log: log}
	b.denials = denylog.New(st, log, denylog.Config{
		Retention: store.DenialRetention{
			MaxRecords: cfg.DenyLogMaxRecords, MaxPerTenant: cfg.DenyLogMaxPerTenant,
			MaxAge: cfg.DenyLogMaxAge, KeepFirst: cfg.DenyLogMaxPerTenant / 10,
		},
		QueueBytes: cfg.DenyLogQueueBytes,
	})
	stopWriter := make(chan struct{})
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		b.denials.Run(stopWriter)
	}()
	b.reg = &Registry{
		socketDir:     cfg.SocketDir,
		hostSocketDir: cfg.HostSocketDir,
		denyRate:      cfg.DenyRate,
		deleteTimes:   cfg.DeleteTimes,
		limits:        cfg.Limits,
		gate:          newConnGate(budget),
		locator:       newPeerLocator(up),
		store:         st,
		proxy:         newProxy(up, b.denials, log, cfg.AccessLog),
		denials:       b.denials,
		log:           log,
		tenants:       make(map[string]*tenantServer),
		deleting:      make(map[string]struct{}),
	}
	b.reg.catalog.Store(catalog)
	// The container name index follows dockerd's events for as long as
	// the broker runs (stopped with the upstream monitor).
	b.reg.proxy.names = nameindex.New(up, isolation.OwnerLabel, nameindex.DefaultCap, log)
	namesDone := make(chan struct{})
	go func() {
		defer close(namesDone)
		b.reg.proxy.names.Run(monCtx)
	}()
	defer func() { stopMon(); <-namesDone }()
	if p := up.SocketPath(); p != "" {
		b.reg.daemonSockets = []string{p}
		if real, err := filepath.EvalSymlinks(p); err == nil && real != p {
			b.reg.daemonSockets = append(b.reg.daemonSockets, real)
		}
	}
	// A broker whose socket dir is where dockerd sees it shares the host's
	// filesystem and can resolve bind sources; one in a container cannot.
	b.reg.proxy.resolveBinds = cfg.HostSocketDir == cfg.SocketDir
	hostFS := b.reg.proxy.resolveBinds && up.SocketPath() != ""
	b.reg.protected = ownPaths(cfg.AdminSocket, cfg.SocketDir, cfg.HostSocketDir, cfg.StateDir)
	b.reg.rootsOnHost = hostFS
	pins := newPinner(cfg.BindPins, filepath.Join(cfg.StateDir, "pins"), cfg.HostSocketDir,
		append(slices.Clone(b.reg.protected), b.reg.daemonSockets...), up, log)
	if cfg.BindPins == "" {
		cfg.BindPins = PinAuto
	}
	if cfg.PinLimit > 0 {
		pins.limit = cfg.PinLimit
	}
	why, err := pins.setup(cfg.BindPins, hostFS)
	if err != nil {
		adminLn.Close()
		close(stopWriter)
		<-writerDone
		return err
	}
	if why != "" {
		log.Warn("bind_pins_unavailable", "mode", string(pins.mode), "reason", why)
	}
	log.Info("bind_pins", "mode", string(pins.mode), "dir", pins.dir)
	b.reg.proxy.pins = pins
	b.reg.proxy.images = newImageGuard(up, st, log)
	imageSweepCtx, stopImageSweep := context.WithCancel(context.Background())
	imageSweepDone := make(chan struct{})
	go func() {
		defer close(imageSweepDone)
		b.reg.proxy.images.sweepEvery(imageSweepCtx, imageSweepInterval)
	}()
	defer func() { stopImageSweep(); <-imageSweepDone }()
	if err := b.reg.load(); err != nil {
		adminLn.Close()
		close(stopWriter)
		<-writerDone
		return fmt.Errorf("load tenants: %w", err)
	}

	// Pins whose container is gone: swept now (a restart forgets nothing
	// in flight), periodically, and when a removal passes through.
	sweepCtx, stopSweep := context.WithCancel(context.Background())
	sweepDone := make(chan struct{})
	go func() {
		defer close(sweepDone)
		if pins.mode == PinMount {
			pins.run(sweepCtx, cfg.PinSweepInterval)
		}
	}()
	defer func() { stopSweep(); <-sweepDone }()

	metricsCtx, stopMetrics := context.WithCancel(context.Background())
	defer stopMetrics()
	metricsDone := make(chan struct{})
	if cfg.MetricsListen != "" {
		ln, err := metricsListener(cfg.MetricsListen)
		if err != nil {
			adminLn.Close()
			b.reg.shutdown(metricsCtx)
			close(stopWriter)
			<-writerDone
			return fmt.Errorf("metrics: %w", err)
		}
		go func() {
			defer close(metricsDone)
			serveMetrics(metricsCtx, ln, newMetricsRegistry(b, b.reg.proxy.hist), log)
		}()
	} else {
		close(metricsDone)
	}

	hsvc := newHealthService(b)
	healthDone := make(chan struct{})
	var healthSrv *grpc.Server
	if cfg.HealthSocket != "" {
		ln, err := listenHealth(cfg.HealthSocket)
		if err != nil {
			adminLn.Close()
			stopMetrics()
			<-metricsDone
			b.reg.shutdown(metricsCtx)
			close(stopWriter)
			<-writerDone
			return fmt.Errorf("health socket: %w", err)
		}
		// Its own service, so its own pool of watches: every local user
		// may fill this socket's, never the admin listeners'.
		healthSrv = newHealthServer(newHealthService(b))
		go func() {
			defer close(healthDone)
			// nil after Stop; an error means the health socket stopped
			// answering while the broker goes on.
			if err := healthSrv.Serve(ln); err != nil {
				log.Warn("health_serve_failed", "err", err)
			}
		}()
	} else {
		close(healthDone)
	}
	auth := adminAuth{gid: cfg.AdminGroup, roles: adminFiles.currentRoles, refused: b.audit.refused}
	srv := newAdminServer(&service{b: b}, peerCredentials{}, auth, hsvc, log)
	served := make(chan error, 2)
	go func() { served <- srv.Serve(adminLn) }()
	var tlsSrv *grpc.Server
	if adminTCP != nil {
		tlsSrv = newAdminServer(&service{b: b}, adminFiles.tlsCreds(), auth, hsvc, log, tlsServerOptions()...)
		go func() { served <- tlsSrv.Serve(adminTCP) }()
		log.Info("admin_tls_listening", "addr", adminTCP.Addr().String())
	}
	watchCtx, stopWatch := context.WithCancel(context.Background())
	watchDone := make(chan struct{})
	go func() { defer close(watchDone); adminFiles.watch(watchCtx, cfg.AdminReloadInterval) }()
	defer func() { stopWatch(); <-watchDone }()
	log.Info("broker_started", "version", cfg.Version, "upstream", up.String(),
		"admin_socket", cfg.AdminSocket, "socket_dir", cfg.SocketDir, "sockets", len(b.reg.tenants))
	// Ready: every listener (admin, tenants, metrics, health) is bound and
	// has its Serve loop; a client connecting now is answered.
	if err := b.notify.Notify("READY=1", b.statusLine()); err != nil {
		log.Warn("sd_notify_failed", "err", err)
	}

	var serveErr error
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case serveErr = <-served:
			break wait
		case <-cfg.Reload:
			adminFiles.Reload(true) // admin TLS files and role file, beside the presets
			b.reload()
		}
	}

	log.Info("broker_stopping")
	_ = b.notify.Notify("STOPPING=1", "STATUS=draining") // advisory; a broken notify socket was logged at READY
	close(b.stopping)
	if healthSrv != nil {
		healthSrv.Stop()
	}
	<-healthDone
	drain, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	stopped := make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		if tlsSrv != nil {
			wg.Go(tlsSrv.GracefulStop)
		}
		srv.GracefulStop()
		wg.Wait()
		close(stopped)
	}()
	b.reg.shutdown(drain)
	select {
	case <-stopped:
	case <-drain.Done():
		if tlsSrv != nil {
			tlsSrv.Stop()
		}
		srv.Stop()
		<-stopped
	}
	stopMetrics()
	<-metricsDone
	close(stopWriter)
	<-writerDone
	log.Info("broker_stopped")
	if serveErr != nil {
		return fmt.Errorf("admin server: %w", serveErr)
	}
	return nil
}
