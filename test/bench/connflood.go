package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Connection flood mode (-connflood): one tenant opens thousands of idle
// connections and reconnects as fast as it is refused, while another keeps
// pinging; shows the broker's connection limits at work and what the flood
// costs the quiet tenant. The broker runs with its default limits.

const floodTenant = "flood"

type connFloodReport struct {
	Env           envDesc     `json:"env"`
	IdleConns     int         `json:"idle_conns_opened"`
	FloodWorkers  int         `json:"flood_workers"`
	QuietWorkers  int         `json:"quiet_workers"`
	HeldConns     int         `json:"flood_conns_held"` // sgctl inspect-socket flood, during the flood
	Attempts      int64       `json:"flood_attempts"`   // reconnects by the flood workers
	Answered200   int64       `json:"flood_answered_200"`
	Answered429   int64       `json:"flood_answered_429"`
	Unanswered    int64       `json:"flood_unanswered"` // closed or timed out without an answer
	QuietBaseline *caseResult `json:"quiet_baseline"`
	QuietFlood    *caseResult `json:"quiet_during_flood"`
	SgctlOK       bool        `json:"sgctl_status_ok"`
	LoadAvgStart  string      `json:"load_avg_start"`
	LoadAvgEnd    string      `json:"load_avg_end"`
}

func runConnFlood(ctx context.Context, cfg config) (err error) {
	tmp, err := os.MkdirTemp("/tmp", "sgb")
	if err != nil {
		return err
	}
	defer func() {
		if rerr := removeTemp(tmp); rerr != nil {
			logf("removing %s: %v", tmp, rerr)
		}
	}()
	mp, err := startMockProcess(ctx, filepath.Join(tmp, "up.sock"), cfg.startTimeout)
	if err != nil {
		return fmt.Errorf("mock upstream: %w", err)
	}
	defer mp.Close()
	bs, err := setupBroker(ctx, cfg, tmp, mp.path, nil, floodTenant, quietTenant)
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
	quiet := target{
		name: "quiet ping", socket: bs.socks[quietTenant],
		method: http.MethodGet, path: pingURLPath, wantStatus: http.StatusOK, checkBody: checkPing,
	}
	if err := quiet.probe(ctx); err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	env := envInfo(cfg)
	env.Concurrency = cfg.quietC
	env.DurationS = cfg.stormDuration.Seconds()
	env.Rounds = 1
	rep := &connFloodReport{Env: env, IdleConns: cfg.floodIdle, FloodWorkers: cfg.stormC, QuietWorkers: cfg.quietC, LoadAvgStart: loadAvg()}
	logf("%s", env.String())
	quietCase := func(name string) *caseResult {
		return &caseResult{Name: name, Method: quiet.method, Path: quiet.path, Via: "broker"}
	}
	rep.QuietBaseline = quietCase("quiet baseline")
	rep.QuietBaseline.add(quiet.run(ctx, cfg.quietC, cfg.warmup, cfg.baseline))
	rep.QuietBaseline.finish()
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}

	floodSock := bs.socks[floodTenant]
	fctx, stopFlood := context.WithCancel(ctx)
	defer stopFlood()
	var wg sync.WaitGroup
	// Idle connections, opened as fast as the broker takes them; those
	// over the limit wait in the backlog or are refused.
	var idleMu sync.Mutex
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		d := net.Dialer{Timeout: time.Second}
		for n := 0; n < cfg.floodIdle && fctx.Err() == nil; {
			c, err := d.DialContext(fctx, "unix", floodSock)
			if err != nil {
				continue
			}
			n++
			idleMu.Lock()
			idle = append(idle, c)
			idleMu.Unlock()
		}
	}()
	for range cfg.stormC {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{Timeout: time.Second}
			for fctx.Err() == nil {
				c, err := d.DialContext(fctx, "unix", floodSock)
				if err != nil {
					continue
				}
				rep.countAttempt()
				// A failed write or deadline shows as a failed read below.
				_, _ = io.WriteString(c, "GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n")
				_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err == nil {
					resp.Body.Close() // only the status counts; c closes below
				}
				switch {
				case err != nil:
					atomic.AddInt64(&rep.Unanswered, 1)
				case resp.StatusCode == http.StatusOK:
					atomic.AddInt64(&rep.Answered200, 1)
				case resp.StatusCode == http.StatusTooManyRequests:
					atomic.AddInt64(&rep.Answered429, 1)
				default:
					atomic.AddInt64(&rep.Unanswered, 1)
				}
				c.Close()
			}
		}()
	}
	margin := min(2*time.Second, cfg.stormDuration/10)
	rep.QuietFlood = quietCase("quiet in flood")
	rep.QuietFlood.add(quiet.run(ctx, cfg.quietC, margin, cfg.stormDuration-2*margin))
	rep.QuietFlood.finish()
	if out, err := runSgctlOut(ctx, bs.sgctl, "--admin-socket", bs.admin, "-o", "json", "inspect-socket", floodTenant); err == nil {
		rep.HeldConns = activeConns(out)
	} else {
		logf("inspect-socket: %v", err)
	}
	_, serr := runSgctlOut(ctx, bs.sgctl, "--admin-socket", bs.admin, "status")
	rep.SgctlOK = serr == nil
	stopFlood()
	wg.Wait()
	rep.LoadAvgEnd = loadAvg()
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	if dead, werr := bs.proc.exited(); dead {
		return fmt.Errorf("broker exited during the flood (%s)", exitDesc(werr))
	}

	if cfg.jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printConnFlood(rep)
	}
	var bad []string
	for _, c := range []*caseResult{rep.QuietBaseline, rep.QuietFlood} {
		if c.Errors > 0 || c.Requests == 0 {
			bad = append(bad, fmt.Sprintf("%s: %d errors, %d requests (first error: %s)", c.Name, c.Errors, c.Requests, oneLine(c.FirstError)))
		}
	}
	if !rep.SgctlOK {
		bad = append(bad, fmt.Sprintf("sgctl status failed during the flood: %v", serr))
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, "; "))
	}
	return nil
}

func (r *connFloodReport) countAttempt() { atomic.AddInt64(&r.Attempts, 1) }

// activeConns reads counters.activeConnections from `sgctl -o json
// inspect-socket` (protojson: a string, absent when zero).
func activeConns(out []byte) int {
	var m struct {
		Socket struct {
			Counters struct {
				ActiveConnections string `json:"activeConnections"`
			} `json:"counters"`
		} `json:"socket"`
	}
	if json.Unmarshal(out, &m) != nil {
		return -1
	}
	n, _ := strconv.Atoi(m.Socket.Counters.ActiveConnections)
	return n
}

func printConnFlood(r *connFloodReport) {
	fmt.Println(r.Env.String())
	fmt.Printf("load average: %s at start, %s at end (1/5/15 min)\n", r.LoadAvgStart, r.LoadAvgEnd)
	fmt.Printf("flood: %d idle connections opened, %d workers reconnecting: %d attempts, %d answered 200, %d answered 429, %d unanswered; broker held %d flood connections\n",
		r.IdleConns, r.FloodWorkers, r.Attempts, r.Answered200, r.Answered429, r.Unanswered, r.HeldConns)
	const row = "%-15s %-12s %7s %9s %9s %8s %8s %6s\n"
	fmt.Printf(row, "case", "request", "workers", "requests", "req/s", "p50", "p99", "errors")
	for _, c := range []*caseResult{r.QuietBaseline, r.QuietFlood} {
		fmt.Printf(row, c.Name, c.Method+" "+c.Path, fmt.Sprint(r.QuietWorkers), fmt.Sprint(c.Requests),
			fmt.Sprintf("%.0f", c.ReqPerSec), fmtUS(c.P50us), fmtUS(c.P99us), fmt.Sprint(c.Errors))
	}
	if b := r.QuietBaseline.ReqPerSec; b > 0 {
		fmt.Printf("quiet during flood vs baseline: %.2fx req/s, p50 %.1fx, p99 %.1fx; sgctl status during the flood ok: %v\n",
			r.QuietFlood.ReqPerSec/b, ratio(r.QuietFlood.P50us, r.QuietBaseline.P50us), ratio(r.QuietFlood.P99us, r.QuietBaseline.P99us), r.SgctlOK)
	}
}
