// Command broker is the sockguard daemon: it owns the connection to the
// Docker daemon and serves one policy-filtered unix socket per tenant, plus
// the gRPC admin API that sgctl talks to.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/sockguard/sockguard/broker"
	"github.com/sockguard/sockguard/broker/store"
)

var version = "dev"

const usageHead = `Usage: broker [flags]
       broker state check|restore|compact --state-dir DIR [FILE]

The sockguard broker owns the only connection to the Docker daemon and serves
one policy-filtered Docker API socket per tenant (CI runner) at
<socket-dir>/<name>/sockguard.sock. Tenants are created with sgctl over the
admin socket and survive restarts. SIGTERM or SIGINT drains and exits. SIGHUP
reloads: it re-reads --preset-dir (keeping the old presets if any file fails),
applies changed presets to the sockets using them, reopens --access-log, and
reloads the admin TLS files and --admin-roles.

Every flag can also be set in the --config YAML file, using the flag name as
the key (for example "upstream: unix:///var/run/docker.sock"); flags given on
the command line win over the file.

Flags:
`

type options struct {
	config            string
	upstream          string
	adminSocket       string
	adminGroup        string
	socketDir         string
	hostSocketDir     string
	stateDir          string
	newState          bool
	allowSharedDirs   bool
	denyLogMaxRecords int
	denyLogMaxAge     time.Duration
	denyLogPerTenant  int
	denyLogQueueBytes int64
	shutdownTimeout   time.Duration
	denyRate          int
	logLevel          string
	logFormat         string
	presetDir         string
	metricsListen     string
	accessLog         string
	showVersion       bool
	bindPins          string
	pinSweepInterval  time.Duration
	limits            broker.Limits
	pinLimit          int
	adminTLS          broker.AdminTLSConfig
	adminRoles        string
	healthSocket      string
	deleteTimes       broker.DeleteTimes
	audit             store.AuditRetention
}

func newFlagSet(o *options, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("broker", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&o.config, "config", "", "read settings from this YAML `file` (keys are flag names)")
	fs.StringVar(&o.upstream, "upstream", "unix:///var/run/docker.sock", "the real Docker daemon: unix:///path/to/docker.sock or tcp://host:port")
	fs.StringVar(&o.adminSocket, "admin-socket", "/run/sockguard/admin.sock", "`path` of the gRPC admin socket (mode 0600, root only; 0660 with --admin-group)")
	fs.StringVar(&o.adminGroup, "admin-group", "", "`group` (name or gid) whose members may use the admin API besides root")
	fs.StringVar(&o.socketDir, "socket-dir", "/run/sockguard", "`directory` holding one sub-directory per tenant with its sockguard.sock")
	fs.StringVar(&o.hostSocketDir, "host-socket-dir", "", "the socket directory as the Docker daemon sees it, when the broker runs in a container (used to rewrite docker.sock binds); default: --socket-dir")
	fs.StringVar(&o.stateDir, "state-dir", "/var/lib/sockguard", "`directory` for persistent state (tenants and deny log, in state.db)")
	fs.BoolVar(&o.newState, "new-state", false, "start with a new, empty state when state.db is missing or empty although the state dir's marker says a store existed (the old tenants are gone; their Docker objects stay behind). Never replaces a non-empty state.db. Without it such a start is refused; the first start on an empty directory needs no flag")
	fs.BoolVar(&o.allowSharedDirs, "allow-shared-dirs", false, "accept a state, socket or preset directory (or preset file) owned by another uid or writable by group or others (refused by default: whoever can write there can replace the state or the sockets, or widen a preset)")
	fs.IntVar(&o.denyLogMaxRecords, "deny-log-max-records", 100000, "keep at most this many deny-log records in all (0: no count limit). Past it, records are removed from the tenants holding the most first, so a tenant that stores few keeps them however much another one floods")
	fs.IntVar(&o.denyLogPerTenant, "deny-log-max-records-per-tenant", 10000, "keep at most this many deny-log records per tenant socket (0: no per-tenant limit). Past it, that tenant's oldest records are removed, except its first tenth of this limit, so its own flood cannot erase how its history began. Connections refused by a socket's --allow-uid/--allow-gid list have a bound of their own, so they cannot evict the tenant's records")
	fs.Int64Var(&o.denyLogQueueBytes, "deny-log-queue-bytes", 4<<20, "refusals waiting to be written to the deny log may hold at most this many `bytes` (min 65536); past it, new ones are dropped and counted (sockguard_deny_log_records_dropped_total). Every stored field is clipped (path 256 bytes, reason 512, ...) and query values are kept only for harmless keys")
	o.denyLogMaxAge = 30 * 24 * time.Hour
	fs.Var((*days)(&o.denyLogMaxAge), "deny-log-max-age", "drop deny-log records older than this `duration`: days (\"30d\") or a Go duration (\"36h\"); 0: no age limit")
	fs.IntVar(&o.denyRate, "deny-rate", 1000, "refusals per second each tenant socket gets answered at once (after a one-second burst); beyond it refusals are paced, so a client flooding denied requests cannot starve other tenants (0: no pacing)")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 10*time.Second, "on SIGTERM, how long in-flight requests and streams may finish before they are cut (must be positive)")
	fs.StringVar(&o.presetDir, "preset-dir", "", "`directory` of operator presets (NAME.yaml), loaded beside the built-in ones and validated strictly at start and on SIGHUP (a reload keeps the old presets when any file fails)")
	fs.DurationVar(&o.deleteTimes.Drain, "delete-drain-timeout", broker.DefaultDeleteTimes.Drain, "on delete-socket, how long requests and streams on the socket may go on before they are cut (a request may ask for its own)")
	fs.DurationVar(&o.deleteTimes.Object, "purge-object-timeout", broker.DefaultDeleteTimes.Object, "on delete-socket --purge, how long removing one Docker object may take before it counts as not removed")
	fs.DurationVar(&o.deleteTimes.Total, "purge-timeout", broker.DefaultDeleteTimes.Total, "how long a whole delete-socket may take; objects not removed by then leave the socket in state deleting, finished by another delete-socket --purge")
	fs.IntVar(&o.audit.MaxRecords, "audit-max-records", broker.DefaultAuditRetention.MaxRecords, "keep at most this many admin audit events of changes made, and as many of refused calls (kept apart, so refused calls cannot evict changes)")
	o.audit.MaxAge = broker.DefaultAuditRetention.MaxAge
	fs.Var((*days)(&o.audit.MaxAge), "audit-max-age", "drop admin audit events older than this `duration`: days (\"366d\") or a Go duration")
	fs.StringVar(&o.metricsListen, "metrics-listen", "", "serve Prometheus metrics at /metrics on `addr`: unix:///path or a loopback host:port such as 127.0.0.1:9323 (default: off)")
	fs.StringVar(&o.accessLog, "access-log", "", "write one JSON line per proxied request (request id, socket, peer, method, path, decision, status; never bodies or header values) to `dest`: stderr or a file path (default: off)")
	fs.StringVar(&o.bindPins, "bind-pins", "auto", "how a judged bind source is kept from being swapped before dockerd mounts it: mount (bind-mount each source, opened without following symlinks, under <state-dir>/pins and forward that path), root-owned (only read-only binds of paths that are root-owned and not group/world-writable all the way from /), refuse (no host binds), or auto (mount where the broker can mount in dockerd's mount namespace, else root-owned, else refuse; the choice is logged at start)")
	fs.DurationVar(&o.pinSweepInterval, "pin-sweep-interval", time.Minute, "how often pins whose container is gone (removed by dockerd itself, e.g. --rm) are unmounted and removed")
	fs.IntVar(&o.limits.MaxConnsPerSocket, "max-conns-per-socket", broker.DefaultMaxConnsPerSocket,
		"open connections each tenant socket holds, attach/exec streams included; a connection over the limit gets a 429 answer and is closed at once")
	fs.IntVar(&o.limits.MaxRequestsPerSocket, "max-requests-per-socket", broker.DefaultMaxRequestsPerSocket,
		"requests in flight on each tenant socket (read but not yet answered by dockerd); over it a request is refused with 429 and recorded. Streams (logs -f, events, wait) stop counting once dockerd answers")
	fs.IntVar(&o.limits.FDReserve, "fd-reserve", broker.DefaultFDReserve,
		"file descriptors never used for tenant connections, kept for dialing dockerd, the admin API and the state store; all tenants together hold at most (RLIMIT_NOFILE - reserve) / 2 connections (the soft RLIMIT_NOFILE is raised to the hard limit at start)")
	fs.DurationVar(&o.limits.ReadHeaderTimeout, "read-header-timeout", broker.DefaultReadHeaderTimeout,
		"how long a tenant connection may take to send a request's line and headers")
	fs.DurationVar(&o.limits.IdleTimeout, "idle-timeout", broker.DefaultIdleTimeout,
		"how long an idle keep-alive tenant connection is kept between requests (streams are never cut)")
	fs.IntVar(&o.limits.MaxHeaderBytes, "max-header-bytes", broker.DefaultMaxHeaderBytes,
		"largest request line plus headers a tenant may send, in bytes (registry auth headers must fit)")
	fs.IntVar(&o.pinLimit, "pin-limit", broker.DefaultPinLimit, "at most this many pinned bind sources (host mounts) per tenant socket; a create past it is refused until containers are removed")
	fs.StringVar(&o.adminTLS.Listen, "admin-listen", "", "also serve the admin API on `tcp://HOST:PORT` over mutual TLS 1.3 (needs --admin-tls-cert, --admin-tls-key, --admin-client-ca and --admin-roles; default: off). The files (and --admin-roles) are reloaded when they change and on SIGHUP, for rotation without a restart; open connections are kept")
	fs.StringVar(&o.adminTLS.CertFile, "admin-tls-cert", "", "PEM `file` with the admin listener's certificate chain")
	fs.StringVar(&o.adminTLS.KeyFile, "admin-tls-key", "", "PEM `file` with the admin listener's private key")
	fs.StringVar(&o.adminTLS.ClientCA, "admin-client-ca", "", "PEM `file` of the CA certificates client certificates must chain to")
	fs.StringVar(&o.adminRoles, "admin-roles", "", "YAML `file` mapping admin identities (uid:N, gid:N on the unix socket; uri:, cn:, ou: of client certificates) to the roles viewer, operator (optionally limited to socket name globs) and admin; without it the unix socket answers root and --admin-group as admins")
	fs.StringVar(&o.healthSocket, "health-socket", "", "also serve the gRPC health service alone (no admin API) on this unix socket `path`, mode 0666, so any local user or probe can check services \"\" (the broker), \"sockguard.upstream\" and \"sockguard.tenant/NAME\" (default: off; the admin socket answers them too)")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format on stderr: text or json")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprint(out, usageHead)
		fs.PrintDefaults()
	}
	return fs
}

// applyConfigFile sets every flag named in the YAML file that was not given
// on the command line. Unknown keys and non-scalar values are errors.
func applyConfigFile(fs *flag.FlagSet, file string) error {
	src, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return fmt.Errorf("config %s: %w", file, err)
	}
	if len(doc.Content) == 0 {
		return nil // empty file
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return fmt.Errorf("config %s: line %d: want a mapping of flag names to values", file, m.Line)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	seen := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		switch {
		case k.Value == "config" || fs.Lookup(k.Value) == nil:
			return fmt.Errorf("config %s: line %d: unknown key %q (keys are broker flag names, see broker --help)", file, k.Line, k.Value)
		case seen[k.Value]:
			return fmt.Errorf("config %s: line %d: key %q given twice", file, k.Line, k.Value)
		case v.Kind != yaml.ScalarNode:
			return fmt.Errorf("config %s: line %d: %q must be a single value", file, v.Line, k.Value)
		}
		seen[k.Value] = true
		if set[k.Value] {
			continue
		}
		if err := fs.Set(k.Value, v.Value); err != nil {
			return fmt.Errorf("config %s: line %d: %s: %w", file, v.Line, k.Value, err)
		}
	}
	return nil
}

func resolveGroup(s string) (int, error) {
	if s == "" {
		return -1, nil
	}
	if n, err := strconv.Atoi(s); err == nil && n >= 0 {
		return n, nil
	}
	g, err := user.LookupGroup(s)
	if err != nil {
		return 0, fmt.Errorf("--admin-group %q: %w", s, err)
	}
	return strconv.Atoi(g.Gid)
}

// checkLimits refuses limits that would turn a protection off: each must
// be positive.
func checkLimits(l broker.Limits) error {
	for _, c := range []struct {
		flag string
		ok   bool
	}{
		{"--max-conns-per-socket", l.MaxConnsPerSocket > 0},
		{"--max-requests-per-socket", l.MaxRequestsPerSocket > 0},
		{"--fd-reserve", l.FDReserve > 0},
		{"--read-header-timeout", l.ReadHeaderTimeout > 0},
		{"--idle-timeout", l.IdleTimeout > 0},
		{"--max-header-bytes", l.MaxHeaderBytes > 0},
	} {
		if !c.ok {
			return fmt.Errorf("%s must be positive", c.flag)
		}
	}
	return nil
}

// days is a duration flag that also takes whole days ("30d").
type days time.Duration

func (d *days) String() string {
	if d == nil {
		return ""
	}
	v := time.Duration(*d)
	if v != 0 && v%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(v/(24*time.Hour)), 10) + "d"
	}
	return v.String()
}

func (d *days) Set(s string) error {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		v, err := strconv.ParseInt(n, 10, 32)
		if err != nil {
			return fmt.Errorf("want days (\"30d\") or a Go duration (\"36h\")")
		}
		*d = days(time.Duration(v) * 24 * time.Hour)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want days (\"30d\") or a Go duration (\"36h\")")
	}
	*d = days(v)
	return nil
}

// checkOptions refuses values that would be silently wrong: each message
// names the flag.
func checkOptions(o *options) error {
	switch {
	case o.denyRate < 0:
		return fmt.Errorf("--deny-rate %d must not be negative (0 turns pacing off)", o.denyRate)
	case o.shutdownTimeout <= 0:
		return fmt.Errorf("--shutdown-timeout %s must be positive", o.shutdownTimeout)
	case o.denyLogMaxAge < 0:
		return fmt.Errorf("--deny-log-max-age %s must not be negative (0 means no age limit)", o.denyLogMaxAge)
	case o.pinSweepInterval <= 0:
		return fmt.Errorf("--pin-sweep-interval %s must be positive", o.pinSweepInterval)
	}
	// Only the two documented forms: a bare path or http:// would be
	// accepted by the parser below but is not what the flag promises.
	if !strings.HasPrefix(o.upstream, "unix://") && !strings.HasPrefix(o.upstream, "tcp://") {
		return fmt.Errorf("--upstream %q: use unix:///path/to/docker.sock or tcp://host:port", o.upstream)
	}
	if o.presetDir != "" {
		fi, err := os.Stat(o.presetDir)
		switch {
		case err != nil:
			return fmt.Errorf("--preset-dir: %w", err)
		case !fi.IsDir():
			return fmt.Errorf("--preset-dir %s: not a directory", o.presetDir)
		}
	}
	if o.healthSocket != "" && !filepath.IsAbs(o.healthSocket) {
		return fmt.Errorf("--health-socket %q must be an absolute path", o.healthSocket)
	}
	return nil
}

func newLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	ho := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(w, ho)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, ho)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", format)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "state" {
		return runState(args[1:], stdout, stderr)
	}
	var o options
	fs := newFlagSet(&o, stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "broker: unexpected argument %q (see broker --help)\n", fs.Arg(0))
		return 2
	}
	if o.showVersion {
		fmt.Fprintf(stdout, "broker %s\n", version)
		return 0
	}
	if o.config != "" {
		if err := applyConfigFile(fs, o.config); err != nil {
			fmt.Fprintf(stderr, "broker: %v\n", err)
			return 2
		}
	}
	switch {
	case o.denyLogMaxRecords < 0, o.denyLogPerTenant < 0:
		fmt.Fprintf(stderr, "broker: --deny-log-max-records and --deny-log-max-records-per-tenant must not be negative (0 means no limit)\n")
		return 2
	case o.denyLogQueueBytes < 64<<10:
		fmt.Fprintf(stderr, "broker: --deny-log-queue-bytes %d: want at least 65536\n", o.denyLogQueueBytes)
		return 2
	}
	if err := checkOptions(&o); err != nil {
		fmt.Fprintf(stderr, "broker: %v\n", err)
		return 2
	}
	switch {
	case o.deleteTimes.Drain <= 0, o.deleteTimes.Object <= 0, o.deleteTimes.Total <= 0:
		fmt.Fprintf(stderr, "broker: --delete-drain-timeout, --purge-object-timeout and --purge-timeout must be positive durations\n")
		return 2
	case o.audit.MaxRecords <= 0, o.audit.MaxAge <= 0:
		fmt.Fprintf(stderr, "broker: --audit-max-records and --audit-max-age must be positive (the audit trail is always bounded)\n")
		return 2
	}
	if err := checkLimits(o.limits); err != nil {
		fmt.Fprintf(stderr, "broker: %v\n", err)
		return 2
	}
	log, err := newLogger(o.logLevel, o.logFormat, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "broker: %v\n", err)
		return 2
	}
	gid, err := resolveGroup(o.adminGroup)
	if err != nil {
		fmt.Fprintf(stderr, "broker: %v\n", err)
		return 2
	}
	var access *slog.Logger
	var accessFile *broker.LogFile
	switch o.accessLog {
	case "":
	case "stderr":
		access = slog.New(slog.NewJSONHandler(stderr, nil))
	default:
		f, err := broker.OpenLogFile(o.accessLog)
		if err != nil {
			fmt.Fprintf(stderr, "broker: --access-log: %v\n", err)
			return 2
		}
		defer f.Close()
		accessFile = f
		access = slog.New(slog.NewJSONHandler(f, nil))
	}
	if o.pinLimit < 1 {
		fmt.Fprintf(stderr, "broker: --pin-limit %d: must be at least 1\n", o.pinLimit)
		return 2
	}
	pinMode, err := broker.ParsePinMode(o.bindPins)
	if err != nil {
		fmt.Fprintf(stderr, "broker: --bind-pins: %v\n", err)
		return 2
	}
	// SIGHUP is a reload from here on, never the default kill.
	reload := make(chan os.Signal, 1)
	signal.Notify(reload, syscall.SIGHUP)
	defer signal.Stop(reload)
	err = broker.Run(ctx, broker.Config{
		Upstream:            o.upstream,
		AdminSocket:         o.adminSocket,
		AdminGroup:          gid,
		SocketDir:           o.socketDir,
		HostSocketDir:       o.hostSocketDir,
		StateDir:            o.stateDir,
		FreshState:          o.newState,
		AllowSharedDirs:     o.allowSharedDirs,
		DenyLogMaxRecords:   o.denyLogMaxRecords,
		DenyLogMaxAge:       o.denyLogMaxAge,
		DenyLogMaxPerTenant: o.denyLogPerTenant,
		DenyLogQueueBytes:   o.denyLogQueueBytes,
		ShutdownTimeout:     o.shutdownTimeout,
		DeleteTimes:         o.deleteTimes,
		AuditRetention:      o.audit,
		DenyRate:            o.denyRate,
		PresetDir:           o.presetDir,
		MetricsListen:       o.metricsListen,
		Limits:              o.limits,
		Version:             version,
		Logger:              log,
		AccessLog:           access,
		AccessLogFile:       accessFile,
		Reload:              reload,
		Notify:              broker.NewNotifier(os.Getenv("NOTIFY_SOCKET")),
		HealthSocket:        o.healthSocket,
		BindPins:            pinMode,
		PinSweepInterval:    o.pinSweepInterval,
		PinLimit:            o.pinLimit,
		AdminTLS:            o.adminTLS,
		AdminRoles:          o.adminRoles,
	})
	if err != nil {
		fmt.Fprintf(stderr, "broker: %v\n", err)
		return 1
	}
	return 0
}

func main() {
	// Files the broker creates are private until it sets their mode
	// explicitly (sockets get their mode right after listen).
	syscall.Umask(0o077)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
