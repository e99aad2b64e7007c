package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// target is one benchmark case: a request sent over a unix socket and the
// status it must get back.
type target struct {
	name       string
	socket     string
	method     string
	path       string
	wantStatus int
	// body and contentType, when body is not nil, are the request's body
	// (sent with its Content-Length) and Content-Type.
	body        []byte
	contentType string
	// checkBody validates the body of one response before the run; the load
	// loop itself only checks the status.
	checkBody func(h http.Header, body []byte) error
}

// roundResult is what one case measured in one round.
type roundResult struct {
	requests  int
	errors    int // transport errors and unexpected statuses, warm-up included
	elapsed   time.Duration
	latencies []time.Duration // measured requests only, unsorted
	firstErr  string
	// What the mock upstream saw during the round, warm-up included.
	upstreamReqs  int64
	upstreamConns int64
}

func newClient(socket string, conns int) *http.Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConns:          conns,
		MaxIdleConnsPerHost:   conns,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ResponseHeaderTimeout: 10 * time.Second,
	}
	// The timeout bounds a single request so a wedged broker cannot hold
	// the benchmark past its duration by more than this.
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func (t target) newRequest(ctx context.Context) (*http.Request, error) {
	// The host part is a placeholder: the dialer ignores it, as the docker
	// CLI does with its "http://docker" base URL.
	var body io.Reader = http.NoBody
	if t.body != nil {
		body = bytes.NewReader(t.body)
	}
	req, err := http.NewRequestWithContext(ctx, t.method, "http://docker"+t.path, body)
	if err != nil {
		return nil, err
	}
	switch {
	case t.contentType != "":
		req.Header.Set("Content-Type", t.contentType)
	case t.method == http.MethodPost:
		req.Header.Set("Content-Type", "application/x-tar")
	}
	req.Header.Set("User-Agent", "sockguard-bench")
	return req, nil
}

// probe sends one request and checks status and body, so a misconfigured
// run fails before any load is generated.
func (t target) probe(ctx context.Context) error {
	c := newClient(t.socket, 1)
	defer c.CloseIdleConnections()
	req, err := t.newRequest(ctx)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %s %s: %v", t.name, t.method, t.path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s: reading body: %v", t.name, err)
	}
	if resp.StatusCode != t.wantStatus {
		return fmt.Errorf("%s: %s %s: status %d, want %d; body %q", t.name, t.method, t.path, resp.StatusCode, t.wantStatus, trunc(body))
	}
	if t.checkBody != nil {
		if err := t.checkBody(resp.Header, body); err != nil {
			return fmt.Errorf("%s: %s %s: %v; body %q", t.name, t.method, t.path, err, trunc(body))
		}
	}
	return nil
}

func trunc(b []byte) string {
	s := string(b)
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

// run drives t with workers concurrent keep-alive clients: warm-up first
// (not recorded), then dur of recorded requests.
func (t target) run(ctx context.Context, workers int, warmup, dur time.Duration) roundResult {
	start := time.Now()
	recordFrom := start.Add(warmup)
	end := recordFrom.Add(dur)
	// Requests in flight at the end finish within the client timeout; the
	// context bounds everything else.
	ctx, cancel := context.WithDeadline(ctx, end.Add(15*time.Second))
	defer cancel()

	// Capacity guess: generous per-worker rate so appends rarely grow.
	perWorker := int(dur.Seconds()*100000)/workers + 1024

	type wres struct {
		lat      []time.Duration
		errors   int
		firstErr string
		last     time.Time
	}
	res := make([]wres, workers)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func(w *wres) {
			defer wg.Done()
			c := newClient(t.socket, workers)
			defer c.CloseIdleConnections()
			w.lat = make([]time.Duration, 0, perWorker)
			fail := func(msg string) {
				w.errors++
				if w.firstErr == "" {
					w.firstErr = msg
				}
			}
			for ctx.Err() == nil {
				t0 := time.Now()
				if !t0.Before(end) {
					break
				}
				req, err := t.newRequest(ctx)
				if err != nil {
					fail(err.Error())
					break
				}
				resp, err := c.Do(req)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				t1 := time.Now()
				switch {
				case err != nil:
					if ctx.Err() != nil {
						return // interrupted: not the target's fault
					}
					fail(err.Error())
					// Don't spin on a dead socket.
					time.Sleep(time.Millisecond)
					continue
				case resp.StatusCode != t.wantStatus:
					fail(fmt.Sprintf("status %d, want %d", resp.StatusCode, t.wantStatus))
					continue
				}
				if !t0.Before(recordFrom) {
					w.lat = append(w.lat, t1.Sub(t0))
					w.last = t1
				}
			}
		}(&res[i])
	}
	wg.Wait()

	var r roundResult
	last := end
	n := 0
	for i := range res {
		n += len(res[i].lat)
		r.errors += res[i].errors
		if r.firstErr == "" {
			r.firstErr = res[i].firstErr
		}
		if res[i].last.After(last) {
			last = res[i].last
		}
	}
	r.latencies = make([]time.Duration, 0, n)
	for i := range res {
		r.latencies = append(r.latencies, res[i].lat...)
	}
	r.requests = n
	r.elapsed = last.Sub(recordFrom)
	return r
}

// caseResult aggregates one case over all rounds.
type caseResult struct {
	Name        string    `json:"name"`
	Method      string    `json:"method"`
	Path        string    `json:"path"`
	Via         string    `json:"via"`
	Requests    int       `json:"requests"`
	Errors      int       `json:"errors"`
	ReqPerSec   float64   `json:"req_per_sec"`
	RoundRPS    []float64 `json:"round_req_per_sec"`
	P50us       float64   `json:"p50_us"`
	P90us       float64   `json:"p90_us"`
	P99us       float64   `json:"p99_us"`
	Maxus       float64   `json:"max_us"`
	RatioDirect *float64  `json:"ratio_to_direct,omitempty"`
	FirstError  string    `json:"first_error,omitempty"`
	// What the mock upstream saw, warm-up included: pings received and
	// connections opened to it. Many more connections than workers means
	// the path to the upstream does not keep connections alive.
	UpstreamPings int64 `json:"upstream_pings"`
	UpstreamConns int64 `json:"upstream_conns"`

	elapsed time.Duration
	lat     []time.Duration
}

func (c *caseResult) add(r roundResult) {
	c.Requests += r.requests
	c.Errors += r.errors
	c.elapsed += r.elapsed
	c.lat = append(c.lat, r.latencies...)
	c.UpstreamPings += r.upstreamReqs
	c.UpstreamConns += r.upstreamConns
	rps := 0.0
	if r.elapsed > 0 {
		rps = float64(r.requests) / r.elapsed.Seconds()
	}
	c.RoundRPS = append(c.RoundRPS, round1(rps))
	if c.FirstError == "" {
		c.FirstError = r.firstErr
	}
}

func (c *caseResult) finish() {
	if c.elapsed > 0 {
		c.ReqPerSec = round1(float64(c.Requests) / c.elapsed.Seconds())
	}
	sort.Slice(c.lat, func(i, j int) bool { return c.lat[i] < c.lat[j] })
	c.P50us = us(percentile(c.lat, 50))
	c.P90us = us(percentile(c.lat, 90))
	c.P99us = us(percentile(c.lat, 99))
	c.Maxus = us(percentile(c.lat, 100))
	c.lat = nil
}

// percentile is the nearest-rank percentile of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(sorted))+0.999999) - 1
	rank = max(0, min(rank, len(sorted)-1))
	return sorted[rank]
}

func us(d time.Duration) float64 { return round1(float64(d) / float64(time.Microsecond)) }

func round1(f float64) float64 {
	if f < 0 {
		return -round1(-f)
	}
	return float64(int64(f*10+0.5)) / 10
}

func fmtUS(v float64) string {
	switch {
	case v >= 10000:
		return fmt.Sprintf("%.1fms", v/1000)
	case v >= 1000:
		return fmt.Sprintf("%.2fms", v/1000)
	default:
		return fmt.Sprintf("%.0fµs", v)
	}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
