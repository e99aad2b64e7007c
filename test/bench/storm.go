package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Deny storm mode (-storm): one tenant is flooded with denied requests while
// another keeps sending allowed pings, to show whether the deny log (queue,
// batched bbolt writer, retention) holds its bounds and whether a noisy
// tenant slows a quiet one down.

const (
	stormTenant = "storm"
	quietTenant = "quiet"
)

// stormScrape is one look at the broker's metrics during or after the storm.
type stormScrape struct {
	AtS          float64 `json:"at_s"` // since the storm started
	Written      float64 `json:"records_written"`
	Dropped      float64 `json:"records_dropped"`
	StormDenied  float64 `json:"storm_denied"`  // sockguard_requests_total{socket="storm",decision="deny"}
	QuietAllowed float64 `json:"quiet_allowed"` // sockguard_requests_total{socket="quiet",decision="allow"}
	StateDBBytes int64   `json:"state_db_bytes"`
	LoadAvg      string  `json:"load_avg"`
}

// stormReport is what -storm prints (as a table, or JSON with -json).
type stormReport struct {
	Env           envDesc       `json:"env"`
	StormWorkers  int           `json:"storm_workers"`
	MockProcess   bool          `json:"mock_process"`
	QuietWorkers  int           `json:"quiet_workers"`
	MaxRecords    int           `json:"deny_log_max_records"`
	LoadAvgStart  string        `json:"load_avg_start"`
	LoadAvgEnd    string        `json:"load_avg_end"`
	Storm         *caseResult   `json:"storm"`
	QuietBaseline *caseResult   `json:"quiet_baseline"`
	QuietStorm    *caseResult   `json:"quiet_during_storm"`
	Scrapes       []stormScrape `json:"scrapes"`
	// After the storm, once the deny-log queue has drained.
	Written        float64 `json:"records_written"`
	Dropped        float64 `json:"records_dropped"`
	BrokerDenied   float64 `json:"broker_denied"` // sockguard_requests_total{decision="deny"}, all sockets
	BrokerRequests float64 `json:"broker_requests"`
	DrainS         float64 `json:"drain_s"` // storm end to queue drained
	DenialsStored  uint64  `json:"denials_stored"`
	DenialsDropped uint64  `json:"denials_dropped"`
	StateDBBytes   int64   `json:"state_db_bytes"`
	// Mean time in the broker's handler (sockguard_request_duration_seconds
	// sum/count) of the quiet tenant's pings alone and during the storm, and
	// of the storm's denials: it leaves out the time a request waits to be
	// read, and everything on the client's side.
	QuietBrokerMeanBaselineUs float64 `json:"quiet_broker_mean_baseline_us"`
	QuietBrokerMeanStormUs    float64 `json:"quiet_broker_mean_storm_us"`
	StormBrokerMeanUs         float64 `json:"storm_broker_mean_us"`
	// StoredBound is what the store may hold at rest: the count bound plus
	// the records committed since the last prune, which the broker runs
	// every max(max/10, 1024) committed records.
	StoredBound uint64 `json:"stored_bound"`
}

func fileSize(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return -1
	}
	return st.Size()
}

func runStorm(ctx context.Context, cfg config) (err error) {
	tmp, err := os.MkdirTemp("/tmp", "sgb")
	if err != nil {
		return err
	}
	defer func() {
		if rerr := removeTemp(tmp); rerr != nil {
			logf("removing %s: %v", tmp, rerr)
		}
	}()
	// builds is how many denied requests reached the mock (must stay 0).
	var upPath string
	var builds func() (int64, error)
	if cfg.mockProcess {
		mp, err := startMockProcess(ctx, filepath.Join(tmp, "up.sock"), cfg.startTimeout)
		if err != nil {
			return fmt.Errorf("mock upstream: %w", err)
		}
		defer mp.Close()
		upPath = mp.path
		builds = func() (int64, error) {
			st, err := mp.stats(ctx)
			return st.Builds, err
		}
	} else {
		mock, err := startMock(filepath.Join(tmp, "up.sock"))
		if err != nil {
			return fmt.Errorf("mock upstream: %w", err)
		}
		defer mock.Close()
		upPath = mock.path
		builds = func() (int64, error) { return mock.builds.Load(), nil }
	}

	metricsSock := filepath.Join(tmp, "metrics.sock")
	bs, err := setupBroker(ctx, cfg, tmp, upPath, []string{
		"--deny-log-max-records", strconv.Itoa(cfg.stormMaxRecords),
		"--deny-rate", strconv.Itoa(cfg.stormDenyRate),
		"--metrics-listen", "unix://" + metricsSock,
	}, stormTenant, quietTenant)
	if bs.proc != nil {
		defer func() {
			if serr := bs.proc.stop(10 * time.Second); serr != nil {
				if err == nil {
					err = serr
				} else {
					logf("%v", serr)
				}
			}
		}()
	}
	if err != nil {
		return err
	}
	if err := waitSocket(ctx, bs.proc, metricsSock, cfg.startTimeout); err != nil {
		return fmt.Errorf("metrics socket: %w", err)
	}
	stateDB := filepath.Join(bs.stateDir, "state.db")

	storm := target{
		name: "storm denied", socket: bs.socks[stormTenant],
		method: http.MethodPost, path: deniedPath, wantStatus: http.StatusForbidden, checkBody: checkDenied,
	}
	quiet := target{
		name: "quiet ping", socket: bs.socks[quietTenant],
		method: http.MethodGet, path: pingURLPath, wantStatus: http.StatusOK, checkBody: checkPing,
	}
	for _, t := range []target{storm, quiet} {
		if err := t.probe(ctx); err != nil {
			return fmt.Errorf("probe: %w", err)
		}
	}

	env := envInfo(cfg)
	env.Concurrency = cfg.stormC
	env.DurationS = cfg.stormDuration.Seconds()
	env.Rounds = 1
	rep := &stormReport{
		Env: env, StormWorkers: cfg.stormC, QuietWorkers: cfg.quietC, MockProcess: cfg.mockProcess,
		MaxRecords: cfg.stormMaxRecords, LoadAvgStart: loadAvg(),
	}
	logf("%s", env.String())
	logf("deny storm: %d workers on %q for %v, %d workers of pings on %q; baseline %v; load average %s",
		cfg.stormC, stormTenant, cfg.stormDuration, cfg.quietC, quietTenant, cfg.baseline, rep.LoadAvgStart)

	// Baseline: the quiet tenant alone.
	quietCase := func(name string) *caseResult {
		return &caseResult{Name: name, Method: quiet.method, Path: quiet.path, Via: "broker"}
	}
	rep.QuietBaseline = quietCase("quiet baseline")
	mb0, err := scrapeMetrics(ctx, metricsSock)
	if err != nil {
		return err
	}
	rr := quiet.run(ctx, cfg.quietC, cfg.warmup, cfg.baseline)
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	mb1, err := scrapeMetrics(ctx, metricsSock)
	if err != nil {
		return err
	}
	rep.QuietBrokerMeanBaselineUs = meanDurationUs(mb0, mb1, quietTenant, "allow")
	rep.QuietBaseline.add(rr)
	rep.QuietBaseline.finish()
	logf("quiet baseline: %.0f req/s p50 %s p99 %s, %d errors; load average %s",
		rep.QuietBaseline.ReqPerSec, fmtUS(rep.QuietBaseline.P50us), fmtUS(rep.QuietBaseline.P99us),
		rep.QuietBaseline.Errors, loadAvg())

	// The storm. The quiet load starts with it, skips the storm's first
	// tenth (at most 2s) and stops as long before its end, so it is measured
	// under the storm only.
	margin := min(2*time.Second, cfg.stormDuration/10)
	rep.Storm = &caseResult{Name: "storm denied", Method: storm.method, Path: storm.path, Via: "broker"}
	rep.QuietStorm = quietCase("quiet in storm")
	var wg sync.WaitGroup
	var stormRR, quietRR roundResult
	start := time.Now()
	wg.Add(2)
	go func() { defer wg.Done(); stormRR = storm.run(ctx, cfg.stormC, 0, cfg.stormDuration) }()
	go func() { defer wg.Done(); quietRR = quiet.run(ctx, cfg.quietC, margin, cfg.stormDuration-2*margin) }()
	loadDone := make(chan struct{})
	go func() { wg.Wait(); close(loadDone) }()

	scrape := func() (metricSet, stormScrape, error) {
		m, err := scrapeMetrics(ctx, metricsSock)
		if err != nil {
			return nil, stormScrape{}, err
		}
		return m, stormScrape{
			AtS:          round1(time.Since(start).Seconds()),
			Written:      m.sum("sockguard_deny_log_records_written_total"),
			Dropped:      m.sum("sockguard_deny_log_records_dropped_total"),
			StormDenied:  m.sum("sockguard_requests_total", "socket", stormTenant, "decision", "deny"),
			QuietAllowed: m.sum("sockguard_requests_total", "socket", quietTenant, "decision", "allow"),
			StateDBBytes: fileSize(stateDB),
			LoadAvg:      loadAvg(),
		}, nil
	}
	logScrape := func(s stormScrape, prev *stormScrape) {
		rate := ""
		if prev != nil && s.AtS > prev.AtS {
			dt := s.AtS - prev.AtS
			rate = fmt.Sprintf(" (%.0f denied/s, %.0f written/s, %.0f dropped/s)",
				(s.StormDenied-prev.StormDenied)/dt, (s.Written-prev.Written)/dt, (s.Dropped-prev.Dropped)/dt)
		}
		logf("t=%5.1fs storm denied %.0f, deny log written %.0f dropped %.0f%s, state.db %s; load average %s",
			s.AtS, s.StormDenied, s.Written, s.Dropped, rate, fmtBytes(s.StateDBBytes), s.LoadAvg)
	}
	every := max(time.Second, min(5*time.Second, cfg.stormDuration/6))
	tick := time.NewTicker(every)
	var prev *stormScrape
	ms0 := mb1
	if m, s, err := scrape(); err == nil {
		ms0 = m
		rep.Scrapes = append(rep.Scrapes, s)
		prev = &rep.Scrapes[len(rep.Scrapes)-1]
	}
	var scrapeErr error
wait:
	for {
		select {
		case <-loadDone:
			break wait
		case <-tick.C:
			if dead, werr := bs.proc.exited(); dead {
				tick.Stop()
				<-loadDone
				return fmt.Errorf("broker exited during the storm (%s); results discarded", exitDesc(werr))
			}
			_, s, err := scrape()
			if err != nil {
				scrapeErr = err
				logf("%v", err)
				continue
			}
			logScrape(s, prev)
			rep.Scrapes = append(rep.Scrapes, s)
			prev = &rep.Scrapes[len(rep.Scrapes)-1]
		}
	}
	tick.Stop()
	stormEnd := time.Now()
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	rep.Storm.add(stormRR)
	rep.Storm.finish()
	rep.QuietStorm.add(quietRR)
	rep.QuietStorm.finish()

	// Wait until the writer has accounted for every denial: each is either
	// committed or dropped.
	var final metricSet
	var last stormScrape
	for {
		m, s, err := scrape()
		if err != nil {
			return fmt.Errorf("after the storm: %w", err)
		}
		final, last = m, s
		if s.Written+s.Dropped >= m.sum("sockguard_requests_total", "decision", "deny") {
			break
		}
		if time.Since(stormEnd) > 60*time.Second {
			logf("deny log still not drained 60s after the storm: written %.0f + dropped %.0f < denied %.0f",
				s.Written, s.Dropped, m.sum("sockguard_requests_total", "decision", "deny"))
			break
		}
		select {
		case <-ctx.Done():
			return errors.New("interrupted")
		case <-time.After(100 * time.Millisecond):
		}
	}
	rep.DrainS = round3(time.Since(stormEnd).Seconds())
	logScrape(last, prev)
	rep.Scrapes = append(rep.Scrapes, last)
	rep.Written, rep.Dropped = last.Written, last.Dropped
	rep.BrokerDenied = final.sum("sockguard_requests_total", "decision", "deny")
	rep.BrokerRequests = final.sum("sockguard_requests_total")
	rep.QuietBrokerMeanStormUs = meanDurationUs(ms0, final, quietTenant, "allow")
	rep.StormBrokerMeanUs = meanDurationUs(ms0, final, stormTenant, "deny")

	out, err := runSgctlOut(ctx, bs.sgctl, "--admin-socket", bs.admin, "-o", "json", "status")
	if err != nil {
		return err
	}
	if rep.DenialsStored, rep.DenialsDropped, err = parseStatus(out); err != nil {
		return err
	}
	rep.StateDBBytes = fileSize(stateDB)
	rep.StoredBound = uint64(cfg.stormMaxRecords + max(cfg.stormMaxRecords/10, 1024))
	rep.LoadAvgEnd = loadAvg()

	if cfg.jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printStorm(rep)
	}

	var bad []string
	for _, c := range []*caseResult{rep.QuietBaseline, rep.QuietStorm, rep.Storm} {
		if c.Errors > 0 {
			bad = append(bad, fmt.Sprintf("%s: %d errors (first: %s)", c.Name, c.Errors, oneLine(c.FirstError)))
		}
		if c.Requests == 0 {
			bad = append(bad, c.Name+": no request completed")
		}
	}
	if limit := uint64(float64(cfg.stormMaxRecords) * 1.1); rep.DenialsStored > limit {
		bad = append(bad, fmt.Sprintf("%d denials stored, more than --deny-log-max-records %d + 10%% (%d)",
			rep.DenialsStored, cfg.stormMaxRecords, limit))
	}
	if n, err := builds(); err != nil {
		bad = append(bad, err.Error())
	} else if n > 0 {
		bad = append(bad, fmt.Sprintf("policy leak: the upstream received %d %s request(s)", n, deniedPath))
	}
	if scrapeErr != nil {
		logf("some scrapes during the storm failed (last: %v)", scrapeErr)
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, "; "))
	}
	return nil
}

// parseStatus reads denialsStored and denialsDropped from `sgctl -o json
// status`. protojson writes uint64 as a string and leaves out zeros.
func parseStatus(out []byte) (stored, dropped uint64, err error) {
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		return 0, 0, fmt.Errorf("sgctl -o json status: %v; output %q", err, trunc(out))
	}
	num := func(k string) (uint64, error) {
		switch v := m[k].(type) {
		case nil:
			return 0, nil
		case string:
			return strconv.ParseUint(v, 10, 64)
		case float64:
			return uint64(v), nil
		default:
			return 0, fmt.Errorf("sgctl status: %s is %T", k, v)
		}
	}
	if stored, err = num("denialsStored"); err != nil {
		return 0, 0, err
	}
	if dropped, err = num("denialsDropped"); err != nil {
		return 0, 0, err
	}
	return stored, dropped, nil
}

// meanDurationUs is the mean of sockguard_request_duration_seconds for
// socket and decision between two scrapes, in µs (0 without requests).
func meanDurationUs(a, b metricSet, socket, decision string) float64 {
	const h = "sockguard_request_duration_seconds"
	n := b.sum(h+"_count", "socket", socket, "decision", decision) - a.sum(h+"_count", "socket", socket, "decision", decision)
	if n <= 0 {
		return 0
	}
	sum := b.sum(h+"_sum", "socket", socket, "decision", decision) - a.sum(h+"_sum", "socket", socket, "decision", decision)
	return round1(sum / n * 1e6)
}

func fmtBytes(n int64) string {
	switch {
	case n < 0:
		return "?"
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%dB", n)
	}
}

func printStorm(r *stormReport) {
	fmt.Println(r.Env.String())
	fmt.Printf("load average: %s at start, %s at end (1/5/15 min); mock dockerd in its own process: %v\n",
		r.LoadAvgStart, r.LoadAvgEnd, r.MockProcess)
	const row = "%-15s %-20s %7s %9s %9s %8s %8s %6s\n"
	fmt.Printf(row, "case", "request", "workers", "requests", "req/s", "p50", "p99", "errors")
	for _, c := range []struct {
		c *caseResult
		w int
	}{{r.QuietBaseline, r.QuietWorkers}, {r.QuietStorm, r.QuietWorkers}, {r.Storm, r.StormWorkers}} {
		fmt.Printf(row, c.c.Name, c.c.Method+" "+c.c.Path, fmt.Sprint(c.w), fmt.Sprint(c.c.Requests),
			fmt.Sprintf("%.0f", c.c.ReqPerSec), fmtUS(c.c.P50us), fmtUS(c.c.P99us), fmt.Sprint(c.c.Errors))
	}
	if b := r.QuietBaseline.ReqPerSec; b > 0 {
		fmt.Printf("quiet during storm vs baseline: %.2fx req/s, p50 %.1fx, p99 %.1fx\n",
			r.QuietStorm.ReqPerSec/b, ratio(r.QuietStorm.P50us, r.QuietBaseline.P50us), ratio(r.QuietStorm.P99us, r.QuietBaseline.P99us))
	}
	fmt.Printf("time in the broker's handler (mean, from its histogram): quiet ping %s alone, %s in the storm; storm denial %s\n",
		fmtUS(r.QuietBrokerMeanBaselineUs), fmtUS(r.QuietBrokerMeanStormUs), fmtUS(r.StormBrokerMeanUs))
	pct := 0.0
	if r.BrokerDenied > 0 {
		pct = 100 * r.Dropped / r.BrokerDenied
	}
	fmt.Printf("deny log: %.0f denials, %.0f records written, %.0f dropped (%.1f%%); queue drained %.2fs after the storm\n",
		r.BrokerDenied, r.Written, r.Dropped, pct, r.DrainS)
	fmt.Printf("store: %d denials stored (bound %d = max %d + prune interval; fail above %d), sgctl reports %d dropped; state.db %s\n",
		r.DenialsStored, r.StoredBound, r.MaxRecords, uint64(float64(r.MaxRecords)*1.1), r.DenialsDropped, fmtBytes(r.StateDBBytes))
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
