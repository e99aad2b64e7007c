// Command bench measures what the sockguard broker costs on the request path.
//
// It starts an in-process mock dockerd on a unix socket, starts the real
// broker in front of it with one tenant socket (preset
// github-actions-runner), and drives both sockets with concurrent keep-alive
// HTTP clients: a ping sent straight to the mock, the same ping through the
// broker, and a request the policy denies. Cases are interleaved in rounds
// so machine noise hits them alike. Only its own unix sockets are targeted,
// and every phase is bounded in time. See README.md.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

const (
	tenant      = "bench"
	preset      = "github-actions-runner"
	deniedPath  = "/v1.41/build"
	pingURLPath = "/_ping"
)

type config struct {
	concurrency  int // 0: each scenario's own
	only         string
	serveProxies string
	duration     time.Duration
	warmup       time.Duration
	rounds       int
	jsonOut      bool
	directOnly   bool
	binDir       string
	startTimeout time.Duration

	// -storm mode
	storm           bool
	stormDuration   time.Duration
	stormC          int
	quietC          int
	baseline        time.Duration
	stormMaxRecords int
	stormDenyRate   int
	mockProcess     bool
	serveMock       string

	// -connflood mode (shares -storm-duration, -storm-c, -quiet-c, -baseline)
	connFlood bool
	floodIdle int
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

func main() {
	var cfg config
	flag.IntVar(&cfg.concurrency, "c", 0, "concurrent workers (one keep-alive client each) for every scenario; 0: each scenario's own")
	flag.StringVar(&cfg.only, "only", "", "run only the cases whose SCENARIO/SUBJECT matches this `regexp` (e.g. 'list-c10/(direct|sockguard|bare)')")
	flag.DurationVar(&cfg.duration, "d", 600*time.Millisecond, "recorded duration of each case in each round")
	flag.DurationVar(&cfg.warmup, "warmup", 200*time.Millisecond, "unrecorded warm-up before each case in each round")
	flag.IntVar(&cfg.rounds, "rounds", 5, "rounds; each round runs every case once, interleaved")
	flag.BoolVar(&cfg.jsonOut, "json", false, "print results as JSON on stdout instead of a table")
	flag.BoolVar(&cfg.directOnly, "direct-only", false, "benchmark the mock upstream only; do not build or start the broker")
	flag.StringVar(&cfg.binDir, "bin-dir", "", "take broker and sgctl from `DIR` instead of building them")
	flag.DurationVar(&cfg.startTimeout, "start-timeout", 20*time.Second, "how long to wait for the broker's sockets")
	flag.BoolVar(&cfg.storm, "storm", false, "deny storm mode: flood one tenant with denied requests while measuring another's pings (see README.md)")
	flag.DurationVar(&cfg.stormDuration, "storm-duration", 60*time.Second, "with -storm: how long the storm lasts")
	flag.IntVar(&cfg.stormC, "storm-c", 64, "with -storm: concurrent workers sending denied requests")
	flag.IntVar(&cfg.quietC, "quiet-c", 2, "with -storm: concurrent workers pinging the quiet tenant")
	flag.DurationVar(&cfg.baseline, "baseline", 5*time.Second, "with -storm: how long the quiet tenant is measured alone first")
	flag.IntVar(&cfg.stormMaxRecords, "storm-max-records", 50000, "with -storm: the broker's --deny-log-max-records")
	flag.IntVar(&cfg.stormDenyRate, "storm-deny-rate", 1000, "with -storm: the broker's --deny-rate (refusals/s per socket before pacing; 0 turns pacing off to flood the deny log)")
	flag.BoolVar(&cfg.mockProcess, "storm-mock-process", true, "with -storm: run the mock dockerd in a child process, not in the load generator's")
	flag.BoolVar(&cfg.connFlood, "connflood", false, "connection flood mode: one tenant opens -flood-idle idle connections and -storm-c workers reconnect as fast as they are refused, for -storm-duration, while another's pings are measured (see README.md)")
	flag.IntVar(&cfg.floodIdle, "flood-idle", 5000, "with -connflood: idle connections opened to the flooding tenant")
	flag.StringVar(&cfg.serveMock, "serve-mock", "", "internal: serve only the mock dockerd on unix socket `PATH` (a comma-separated list: one mock on each) until stdin closes")
	flag.StringVar(&cfg.serveProxies, "serve-proxies", "", "internal: serve the comparison proxies in `DIR` until stdin closes")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench: unexpected arguments: %q\n", flag.Args())
		os.Exit(2)
	}
	switch {
	case cfg.concurrency < 0 || cfg.concurrency > 4096:
		fmt.Fprintln(os.Stderr, "bench: -c must be in 0..4096")
		os.Exit(2)
	case cfg.duration <= 0 || cfg.duration > 10*time.Minute:
		fmt.Fprintln(os.Stderr, "bench: -d must be in (0, 10m]")
		os.Exit(2)
	case cfg.warmup < 0 || cfg.warmup > time.Minute:
		fmt.Fprintln(os.Stderr, "bench: -warmup must be in [0, 1m]")
		os.Exit(2)
	case cfg.rounds < 1 || cfg.rounds > 100:
		fmt.Fprintln(os.Stderr, "bench: -rounds must be in 1..100")
		os.Exit(2)
	case (cfg.storm || cfg.connFlood) && cfg.directOnly, cfg.storm && cfg.connFlood:
		fmt.Fprintln(os.Stderr, "bench: -storm, -connflood and -direct-only exclude each other")
		os.Exit(2)
	case cfg.connFlood && (cfg.floodIdle < 0 || cfg.floodIdle > 15000):
		fmt.Fprintln(os.Stderr, "bench: -flood-idle must be in 0..15000")
		os.Exit(2)
	case (cfg.storm || cfg.connFlood) && (cfg.stormDuration < time.Second || cfg.stormDuration > time.Hour):
		fmt.Fprintln(os.Stderr, "bench: -storm-duration must be in [1s, 1h]")
		os.Exit(2)
	case (cfg.storm || cfg.connFlood) && (cfg.stormC < 1 || cfg.stormC > 4096 || cfg.quietC < 1 || cfg.quietC > 4096):
		fmt.Fprintln(os.Stderr, "bench: -storm-c and -quiet-c must be in 1..4096")
		os.Exit(2)
	case (cfg.storm || cfg.connFlood) && (cfg.baseline <= 0 || cfg.baseline > 10*time.Minute):
		fmt.Fprintln(os.Stderr, "bench: -baseline must be in (0, 10m]")
		os.Exit(2)
	case cfg.storm && cfg.stormMaxRecords < 1:
		fmt.Fprintln(os.Stderr, "bench: -storm-max-records must be at least 1")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var err error
	switch {
	case cfg.serveMock != "":
		err = serveMockProcess(ctx, cfg.serveMock)
	case cfg.serveProxies != "":
		err = serveProxies(ctx, cfg.serveProxies)
	case cfg.storm:
		err = runStorm(ctx, cfg)
	case cfg.connFlood:
		err = runConnFlood(ctx, cfg)
	default:
		err = runTable(ctx, cfg)
	}
	stop()
	if err != nil {
		logf("FAIL: %v", err)
		os.Exit(1)
	}
}

// brokerSetup is a running broker and what the benchmark needs to reach it.
type brokerSetup struct {
	proc     *brokerProc
	admin    string            // admin socket
	sgctl    string            // sgctl binary
	stateDir string            // --state-dir
	socks    map[string]string // tenant name -> tenant socket
}

// checkPing validates a ping answered by the mock (directly or proxied).
func checkPing(h http.Header, body []byte) error {
	if string(body) != "OK" {
		return errors.New(`body is not "OK"`)
	}
	if v := h.Get("Api-Version"); v != "1.41" {
		return fmt.Errorf("Api-Version header %q, want 1.41", v)
	}
	return nil
}

// checkDenied validates the broker's refusal of the denied request.
func checkDenied(_ http.Header, body []byte) error {
	var m struct {
		Message string `json:"message"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return fmt.Errorf("body is not a Docker error JSON: %v", err)
	}
	if !strings.HasPrefix(m.Message, "sockguard: denied by policy: ") {
		return fmt.Errorf(`message %q does not start with "sockguard: denied by policy: "`, m.Message)
	}
	return nil
}

// setupBroker builds (or finds) the binaries, starts the broker with the
// standard flags plus extra, and creates one tenant socket (preset
// github-actions-runner) per name. The returned setup, when its proc is
// non-nil, must be stopped even if err is non-nil.
func setupBroker(ctx context.Context, cfg config, tmp, upstream string, extra []string, tenants ...string) (s brokerSetup, err error) {
	binDir := cfg.binDir
	if binDir == "" {
		binDir = filepath.Join(tmp, "bin")
		logf("building ./cmd/broker and ./cmd/sgctl")
		if err := buildBinaries(ctx, binDir); err != nil {
			return s, err
		}
	}
	brokerBin := filepath.Join(binDir, "broker")
	s.sgctl = filepath.Join(binDir, "sgctl")
	for _, b := range []string{brokerBin, s.sgctl} {
		if st, err := os.Stat(b); err != nil || st.IsDir() {
			return s, fmt.Errorf("binary %s not found", b)
		}
	}

	s.admin = filepath.Join(tmp, "admin.sock")
	s.stateDir = filepath.Join(tmp, "state")
	sockDir := filepath.Join(tmp, "s")
	args := append([]string{
		"--upstream", "unix://" + upstream,
		"--admin-socket", s.admin,
		"--socket-dir", sockDir,
		"--state-dir", s.stateDir,
		"--log-level", "warn",
	}, extra...)
	s.proc, err = startBroker(brokerBin, args)
	if err != nil {
		return s, err
	}
	if err := waitSocket(ctx, s.proc, s.admin, cfg.startTimeout); err != nil {
		return s, fmt.Errorf("broker did not start: %w", err)
	}
	s.socks = make(map[string]string, len(tenants))
	for _, name := range tenants {
		if err := runSgctl(ctx, s.sgctl, "--admin-socket", s.admin, "create-socket", name, "--preset", preset); err != nil {
			return s, err
		}
		sock := filepath.Join(sockDir, name, "sockguard.sock")
		if err := waitSocket(ctx, s.proc, sock, cfg.startTimeout); err != nil {
			return s, fmt.Errorf("tenant socket: %w", err)
		}
		s.socks[name] = sock
	}
	return s, nil
}

type envDesc struct {
	GoVersion   string  `json:"go_version"`
	GOOS        string  `json:"goos"`
	GOARCH      string  `json:"goarch"`
	GOMAXPROCS  int     `json:"gomaxprocs"`
	NumCPU      int     `json:"num_cpu"`
	Concurrency int     `json:"concurrency"`
	DurationS   float64 `json:"duration_s"`
	WarmupS     float64 `json:"warmup_s"`
	Rounds      int     `json:"rounds"`
	Preset      string  `json:"preset,omitempty"`
}

func envInfo(cfg config) envDesc {
	e := envDesc{
		GoVersion:   runtime.Version(),
		GOOS:        runtime.GOOS,
		GOARCH:      runtime.GOARCH,
		GOMAXPROCS:  runtime.GOMAXPROCS(0),
		NumCPU:      runtime.NumCPU(),
		Concurrency: cfg.concurrency,
		DurationS:   cfg.duration.Seconds(),
		WarmupS:     cfg.warmup.Seconds(),
		Rounds:      cfg.rounds,
	}
	if !cfg.directOnly {
		e.Preset = preset
	}
	return e
}

func (e envDesc) String() string {
	return fmt.Sprintf("env: %s %s/%s GOMAXPROCS=%d NumCPU=%d concurrency=%d duration=%gs warmup=%gs rounds=%d",
		e.GoVersion, e.GOOS, e.GOARCH, e.GOMAXPROCS, e.NumCPU, e.Concurrency, e.DurationS, e.WarmupS, e.Rounds)
}

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }
