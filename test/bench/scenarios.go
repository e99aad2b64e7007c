package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"time"
)

// The scenario table (the default mode, `make bench`): each scenario is
// sent straight to a mock dockerd ("direct"), through the broker, through
// the two peer models, the two floors and the light-path experiment (see
// peers.go), each with its own mock upstream. A cell is the subject's
// throughput over direct's for the same scenario in the same run.

// subject is one way of reaching a mock dockerd.
type subject struct {
	name   string // direct, sockguard, peer1, ...
	label  string // the table's column heading
	socket string // where the clients connect
	up     string // the mock upstream it forwards to (direct: the mock itself)
}

// scenario is one row of the table.
type scenario struct {
	key         string
	title       string
	c           int
	method      string
	path        string
	body        []byte
	contentType string
	// wantDirect and wantProxy are the statuses direct and the subjects
	// must answer.
	wantDirect, wantProxy   int
	checkDirect, checkProxy func(http.Header, []byte) error
	// goal is the ratio to direct the broker must reach; 0 means "at
	// least the bare ReverseProxy's ratio in the same run".
	goal float64
	// floors: the bare, splice and light subjects run this scenario too
	// (they forward everything, so a refusal scenario is not theirs).
	floors bool
}

func scenarios() []scenario {
	create := func(c int, goal float64) scenario {
		return scenario{
			key: fmt.Sprintf("create-c%d", c), title: fmt.Sprintf("container create, runner preset, c=%d", c), c: c,
			method: http.MethodPost, path: "/v1.41/containers/create?name=job", body: createBody, contentType: "application/json",
			wantDirect: http.StatusCreated, wantProxy: http.StatusCreated, checkDirect: checkCreated, checkProxy: checkCreated,
			goal: goal, floors: true,
		}
	}
	return []scenario{
		create(1, 0.40),
		create(10, 0.25),
		{
			key: "build-c50", title: "refused POST /build, c=50", c: 50,
			method: http.MethodPost, path: deniedPath, contentType: "application/x-tar",
			// The mock answers 404; the broker and the peers refuse.
			wantDirect: http.StatusNotFound, wantProxy: http.StatusForbidden, checkProxy: checkRefused,
			goal: 0.95,
		},
		{
			key: "list-c10", title: "allowed GET /containers/json, c=10", c: 10,
			method: http.MethodGet, path: "/v1.41/containers/json",
			wantDirect: http.StatusOK, wantProxy: http.StatusOK, checkDirect: checkList, checkProxy: checkList,
			floors: true,
		},
	}
}

// checkCreated validates a container create's answer: a JSON with an Id.
func checkCreated(_ http.Header, body []byte) error {
	var c struct{ ID string }
	if err := json.Unmarshal(body, &c); err != nil || len(c.ID) != 64 {
		return fmt.Errorf("not a create answer with a 64-digit Id (%v)", err)
	}
	return nil
}

// checkList validates a container list: the mock's listedContainers.
func checkList(_ http.Header, body []byte) error {
	var l []map[string]any
	if err := json.Unmarshal(body, &l); err != nil {
		return fmt.Errorf("not a JSON list: %v", err)
	}
	if len(l) != listedContainers {
		return fmt.Errorf("%d containers listed, want %d", len(l), listedContainers)
	}
	return nil
}

// checkRefused validates a refusal: a Docker error JSON with a message.
func checkRefused(_ http.Header, body []byte) error {
	var m struct{ Message string }
	if err := json.Unmarshal(body, &m); err != nil || m.Message == "" {
		return fmt.Errorf("not a Docker error JSON (%v)", err)
	}
	return nil
}

// childProc is a helper process running this program in an internal mode
// (-serve-mock, -serve-proxies) until its stdin is closed.
type childProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{}
}

// startChild runs this program with args and waits until every socket in
// wait accepts connections.
func startChild(ctx context.Context, args []string, wait []string, timeout time.Duration) (*childProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", strings.Join(args, " "), err)
	}
	cp := &childProc{cmd: cmd, stdin: stdin, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(cp.done) }()
	for _, p := range wait {
		if err := waitSocket(ctx, nil, p, timeout); err != nil {
			cp.Close()
			return nil, err
		}
		select {
		case <-cp.done:
			return nil, fmt.Errorf("%s exited before serving", strings.Join(args, " "))
		default:
		}
	}
	return cp, nil
}

// Close closes the child's stdin, then kills it (its own PID) after 5s.
func (cp *childProc) Close() {
	_ = cp.stdin.Close()
	select {
	case <-cp.done:
	case <-time.After(5 * time.Second):
		_ = cp.cmd.Process.Kill()
		<-cp.done
	}
}

// mockStatsAt asks the mock on socket what it has seen.
func mockStatsAt(ctx context.Context, socket string) (mockStats, error) {
	return (&mockProc{path: socket}).stats(ctx)
}

// setMockOwner tells the mock on socket the tenant id its network and
// listed containers are labelled with.
func setMockOwner(ctx context.Context, socket, owner string) error {
	c := newClient(socket, 1)
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://docker"+mockOwnerPath, strings.NewReader(owner))
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("mock owner: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("mock owner: status %d", resp.StatusCode)
	}
	return nil
}

// tableCase is one (scenario, subject) cell's measurement.
type tableCase struct {
	scenario scenario
	subject  subject
	target   target
	result   *caseResult
	// upstream requests the subject's mock saw per recorded client
	// request (warm-up included in both counts, so approximate).
	upstreamPerReq float64
	c              int // workers: the scenario's, or -c
	// ratioLo and ratioHi are the lowest and highest per-round ratio.
	ratioLo, ratioHi float64
}

// tableReport is what the scenario run prints (JSON with -json).
type tableReport struct {
	Env   envDesc    `json:"env"`
	Rows  []tableRow `json:"rows"`
	Cases []tableOut `json:"cases"`
	// RefusalCost: what refusals on routes that name an object cost
	// upstream (issue 10 wants 0).
	RefusalCost []refusalCost `json:"refusal_upstream_cost,omitempty"`
}

// refusalCost is one refused request and the upstream requests it cost.
type refusalCost struct {
	Request     string  `json:"request"`
	Status      int     `json:"status"`
	UpstreamReq float64 `json:"upstream_requests_per_refusal"`
}

// refusalProbes are requests the github-actions-runner preset refuses
// whatever object they name: builds are denied, and so is container export.
var refusalProbes = []struct{ method, path string }{
	{http.MethodPost, "/v1.41/build?networkmode=" + benchNetwork},
	// A name the create scenarios never give: a name a create through the
	// broker is about to give stays unknown to the name index until
	// dockerd's event for it arrives, and the mock sends no events, so
	// "job" would be looked up upstream (correctly) after any create.
	{http.MethodGet, "/v1.41/containers/other-job/export"},
}

// measureRefusalCost sends each refusal probe n times to the broker and
// counts what its mock saw meanwhile (nothing else runs then).
func measureRefusalCost(ctx context.Context, sock, up string) ([]refusalCost, error) {
	const n = 20
	var out []refusalCost
	for _, p := range refusalProbes {
		st0, err := mockStatsAt(ctx, up)
		if err != nil {
			return nil, err
		}
		c := newClient(sock, 1)
		status := 0
		for range n {
			req, err := target{method: p.method, path: p.path}.newRequest(ctx)
			if err != nil {
				return nil, err
			}
			resp, err := c.Do(req)
			if err != nil {
				return nil, err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			status = resp.StatusCode
		}
		c.CloseIdleConnections()
		st1, err := mockStatsAt(ctx, up)
		if err != nil {
			return nil, err
		}
		out = append(out, refusalCost{Request: p.method + " " + p.path, Status: status,
			UpstreamReq: round3(float64(st1.Reqs-st0.Reqs) / n)})
	}
	return out, nil
}

type tableRow struct {
	Scenario string             `json:"scenario"`
	C        int                `json:"c"`
	Ratios   map[string]float64 `json:"ratio_to_direct"`
	Goal     string             `json:"target"`
	Met      *bool              `json:"met,omitempty"`
}

type tableOut struct {
	Scenario string `json:"scenario"`
	Subject  string `json:"subject"`
	*caseResult
	UpstreamPerRequest float64 `json:"upstream_requests_per_request"`
	RatioMin           float64 `json:"ratio_round_min,omitempty"`
	RatioMax           float64 `json:"ratio_round_max,omitempty"`
}

// runTable runs the scenario table. Everything it starts is torn down by
// its defers, on success, error or interrupt alike.
func runTable(ctx context.Context, cfg config) (err error) {
	tmp, err := os.MkdirTemp("/tmp", "sgb")
	if err != nil {
		return err
	}
	defer func() {
		if rerr := removeTemp(tmp); rerr != nil {
			logf("removing %s: %v", tmp, rerr)
		}
	}()
	only, err := regexp.Compile(cfg.only)
	if err != nil {
		return fmt.Errorf("-only: %w", err)
	}

	subjects := []subject{{name: "direct", label: "direct", up: upstreamSocket(tmp, "direct")}}
	subjects[0].socket = subjects[0].up
	if !cfg.directOnly {
		subjects = append(subjects, subject{name: "sockguard", label: "sockguard", up: upstreamSocket(tmp, "sockguard")})
		for _, n := range subjectNames {
			label := n
			switch n {
			case "peer1", "peer2":
				label = n + "*"
			case "bare":
				label = "bare RP"
			}
			subjects = append(subjects, subject{name: n, label: label, socket: proxySocket(tmp, n), up: upstreamSocket(tmp, n)})
		}
	}
	var ups []string
	for _, s := range subjects {
		ups = append(ups, s.up)
	}
	mocks, err := startChild(ctx, []string{"-serve-mock", strings.Join(ups, ",")}, ups, cfg.startTimeout)
	if err != nil {
		return fmt.Errorf("mock upstreams: %w", err)
	}
	defer mocks.Close()

	if !cfg.directOnly {
		var wait []string
		for _, s := range subjects[2:] {
			wait = append(wait, s.socket)
		}
		proxies, err := startChild(ctx, []string{"-serve-proxies", tmp}, wait, cfg.startTimeout)
		if err != nil {
			return fmt.Errorf("comparison proxies: %w", err)
		}
		defer proxies.Close()

		bs, berr := setupBroker(ctx, cfg, tmp, subjects[1].up, []string{"--deny-rate", "0"}, tenant)
		if bs.proc != nil {
			defer func() {
				if serr := bs.proc.stop(5 * time.Second); serr != nil {
					if err == nil {
						err = serr
					} else {
						logf("%v", serr)
					}
				}
			}()
		}
		if berr != nil {
			return berr
		}
		subjects[1].socket = bs.socks[tenant]
		owner, err := tenantID(ctx, bs, tenant)
		if err != nil {
			return err
		}
		for _, s := range subjects {
			if err := setMockOwner(ctx, s.up, owner); err != nil {
				return err
			}
		}
		defer func() {
			if dead, werr := bs.proc.exited(); dead && err == nil {
				err = fmt.Errorf("broker exited during the benchmark (%s); results discarded", exitDesc(werr))
			}
		}()
	}

	var cases []*tableCase
	for _, sc := range scenarios() {
		for _, s := range subjects {
			if !sc.floors && (s.name == "bare" || s.name == "splice" || s.name == "light") {
				continue
			}
			if !only.MatchString(sc.key + "/" + s.name) {
				continue
			}
			t := target{
				name: sc.key + "/" + s.name, socket: s.socket, method: sc.method, path: sc.path,
				body: sc.body, contentType: sc.contentType, wantStatus: sc.wantProxy, checkBody: sc.checkProxy,
			}
			if s.name == "direct" {
				t.wantStatus, t.checkBody = sc.wantDirect, sc.checkDirect
			}
			c := sc.c
			if cfg.concurrency > 0 {
				c = cfg.concurrency
			}
			cases = append(cases, &tableCase{scenario: sc, subject: s, target: t, c: c,
				result: &caseResult{Name: t.name, Method: t.method, Path: t.path, Via: s.name}})
		}
	}
	if len(cases) == 0 {
		return errors.New("-only matches no case")
	}
	for _, tc := range cases {
		if err := tc.target.probe(ctx); err != nil {
			return fmt.Errorf("probe: %w", err)
		}
	}
	if err := checkLeaks(ctx, subjects); err != nil {
		return err
	}
	var refusals []refusalCost
	if !cfg.directOnly {
		if refusals, err = measureRefusalCost(ctx, subjects[1].socket, subjects[1].up); err != nil {
			return fmt.Errorf("refusal cost: %w", err)
		}
	}

	env := envInfo(cfg)
	env.Concurrency = 0
	logf("%s", env.String())
	total := time.Duration(cfg.rounds*len(cases)) * (cfg.warmup + cfg.duration)
	logf("%d case(s) x %d round(s), about %v", len(cases), cfg.rounds, total.Round(time.Second))
	for r := 1; r <= cfg.rounds; r++ {
		for _, tc := range cases {
			if err := ctx.Err(); err != nil {
				return errors.New("interrupted")
			}
			c := tc.c
			st0, err := mockStatsAt(ctx, tc.subject.up)
			if err != nil {
				return err
			}
			rr := tc.target.run(ctx, c, cfg.warmup, cfg.duration)
			if err := ctx.Err(); err != nil {
				return errors.New("interrupted")
			}
			st1, err := mockStatsAt(ctx, tc.subject.up)
			if err != nil {
				return err
			}
			rr.upstreamConns = st1.Conns - st0.Conns
			rr.upstreamReqs = st1.Reqs - st0.Reqs
			tc.result.add(rr)
			rps := 0.0
			if rr.elapsed > 0 {
				rps = float64(rr.requests) / rr.elapsed.Seconds()
			}
			logf("round %d/%d %-20s c=%-3d %8d req %8.0f req/s %d errors; upstream saw %d requests on %d new conns",
				r, cfg.rounds, tc.target.name, c, rr.requests, rps, rr.errors, rr.upstreamReqs, rr.upstreamConns)
		}
	}
	rep := tableReport{Env: env, RefusalCost: refusals}
	direct := map[string]*caseResult{}
	for _, tc := range cases {
		tc.result.finish()
		if tc.subject.name == "direct" {
			direct[tc.scenario.key] = tc.result
		}
	}
	for _, tc := range cases {
		if d := direct[tc.scenario.key]; d != nil && tc.subject.name != "direct" {
			if v, lo, hi, ok := ratioStats(tc.result.RoundRPS, d.RoundRPS); ok {
				tc.result.RatioDirect = &v
				tc.ratioLo, tc.ratioHi = lo, hi
			}
		}
		var perReq float64
		if n := tc.result.Requests; n > 0 {
			// Warm-up requests reached the upstream too: scale by the
			// recorded share of the time, roughly.
			share := cfg.duration.Seconds() / (cfg.duration + cfg.warmup).Seconds()
			perReq = round3(float64(tc.result.UpstreamPings) * share / float64(n))
		}
		tc.upstreamPerReq = perReq
		rep.Cases = append(rep.Cases, tableOut{Scenario: tc.scenario.title, Subject: tc.subject.name, caseResult: tc.result, UpstreamPerRequest: perReq,
			RatioMin: tc.ratioLo, RatioMax: tc.ratioHi})
	}
	for _, sc := range scenarios() {
		row := tableRow{Scenario: sc.title, C: sc.c, Ratios: map[string]float64{}}
		for _, tc := range cases {
			if tc.scenario.key == sc.key && tc.result.RatioDirect != nil {
				row.Ratios[tc.subject.name] = *tc.result.RatioDirect
			}
		}
		sg, ok := row.Ratios["sockguard"]
		switch {
		case sc.goal > 0:
			row.Goal = fmt.Sprintf(">= %.2f", sc.goal)
			if ok {
				met := sg >= sc.goal
				row.Met = &met
			}
		default:
			row.Goal = ">= bare RP"
			if bare, bok := row.Ratios["bare"]; ok && bok {
				met := sg >= bare
				row.Met = &met
			}
		}
		if len(row.Ratios) > 0 || direct[sc.key] != nil {
			rep.Rows = append(rep.Rows, row)
		}
	}

	if cfg.jsonOut {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printScenarioTable(rep, subjects, cases)
	}

	var bad []string
	for _, tc := range cases {
		c := tc.result
		if c.Errors > 0 {
			bad = append(bad, fmt.Sprintf("%s: %d errors (first: %s)", c.Name, c.Errors, oneLine(c.FirstError)))
		}
		if c.Requests == 0 {
			bad = append(bad, c.Name+": no request completed")
		}
	}
	if err := checkLeaks(ctx, subjects); err != nil {
		bad = append(bad, err.Error())
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, "; "))
	}
	return nil
}

// checkLeaks fails when a /build reached the upstream of a subject that
// must refuse it (the broker and the peer models).
func checkLeaks(ctx context.Context, subjects []subject) error {
	for _, s := range subjects {
		if s.name != "sockguard" && s.name != "peer1" && s.name != "peer2" {
			continue
		}
		st, err := mockStatsAt(ctx, s.up)
		if err != nil {
			return err
		}
		if st.Builds > 0 {
			return fmt.Errorf("policy leak: %s let %d %s request(s) reach its upstream", s.name, st.Builds, deniedPath)
		}
	}
	return nil
}

// tenantID asks the broker for the id of tenant name (the owner label
// value of its objects).
func tenantID(ctx context.Context, bs brokerSetup, name string) (string, error) {
	out, err := runSgctlOut(ctx, bs.sgctl, "--admin-socket", bs.admin, "-o", "json", "inspect-socket", name)
	if err != nil {
		return "", err
	}
	id := findString(out, "tenantId", "tenant_id")
	if id == "" {
		return "", fmt.Errorf("sgctl inspect-socket %s: no tenant id in %q", name, trunc(out))
	}
	return id, nil
}

// findString returns the first string value, at any depth of a JSON
// document, of one of keys.
func findString(doc []byte, keys ...string) string {
	var v any
	if json.Unmarshal(doc, &v) != nil {
		return ""
	}
	var walk func(v any) string
	walk = func(v any) string {
		switch x := v.(type) {
		case map[string]any:
			for _, k := range keys {
				if s, ok := x[k].(string); ok && s != "" {
					return s
				}
			}
			for _, e := range x {
				if s := walk(e); s != "" {
					return s
				}
			}
		case []any:
			for _, e := range x {
				if s := walk(e); s != "" {
					return s
				}
			}
		}
		return ""
	}
	return walk(v)
}

func printScenarioTable(rep tableReport, subjects []subject, cases []*tableCase) {
	fmt.Println(rep.Env.String())
	fmt.Println("throughput as a ratio of direct-to-mock throughput, same scenario, same run (* = in-bench model of that kind of peer, not its code)")
	var b bytes.Buffer
	fmt.Fprintf(&b, "%-40s", "scenario")
	for _, s := range subjects[1:] {
		fmt.Fprintf(&b, " %9s", s.label)
	}
	fmt.Fprintf(&b, " %11s %5s", "target", "met")
	fmt.Println(b.String())
	for _, row := range rep.Rows {
		b.Reset()
		fmt.Fprintf(&b, "%-40s", row.Scenario)
		for _, s := range subjects[1:] {
			if v, ok := row.Ratios[s.name]; ok {
				fmt.Fprintf(&b, " %9.2f", v)
			} else {
				fmt.Fprintf(&b, " %9s", "-")
			}
		}
		met := "-"
		if row.Met != nil {
			met = map[bool]string{true: "yes", false: "NO"}[*row.Met]
		}
		fmt.Fprintf(&b, " %11s %5s", row.Goal, met)
		fmt.Println(b.String())
	}
	fmt.Println()
	const line = "%-20s %-9s %4s %9s %8s %8s %8s %6s %9s %11s %7s\n"
	fmt.Printf(line, "scenario", "subject", "c", "requests", "req/s", "p50", "p99", "errors", "vs direct", "rounds", "up/req")
	for _, tc := range cases {
		c := tc.result
		ratio, spread := "-", "-"
		if c.RatioDirect != nil {
			ratio = fmt.Sprintf("%.2fx", *c.RatioDirect)
			spread = fmt.Sprintf("%.2f-%.2f", tc.ratioLo, tc.ratioHi)
		}
		fmt.Printf(line, tc.scenario.key, tc.subject.name, fmt.Sprint(tc.c), fmt.Sprint(c.Requests),
			fmt.Sprintf("%.0f", c.ReqPerSec), fmtUS(c.P50us), fmtUS(c.P99us), fmt.Sprint(c.Errors), ratio,
			spread, fmt.Sprintf("%.2f", tc.upstreamPerReq))
	}
	fmt.Println("vs direct: median of the per-round ratios; rounds: their lowest and highest")
	for _, r := range rep.RefusalCost {
		fmt.Printf("refusal's upstream cost (want 0): %s -> %d, %.2f upstream requests per refusal\n", r.Request, r.Status, r.UpstreamReq)
	}
	fmt.Println("up/req: requests the subject's mock upstream saw per client request (warm-up scaled out; approximate)")
}

// ratioStats is the median over rounds of a case's req/s over direct's in
// the same round. The machine is shared: a burst of someone else's load
// lands on a few cases of one round, and the median of the per-round
// ratios leaves such a round out where a ratio of sums would not.
// It also returns the lowest and highest per-round ratio.
func ratioStats(rps, direct []float64) (med, lo, hi float64, ok bool) {
	var rs []float64
	for i := range min(len(rps), len(direct)) {
		if direct[i] > 0 {
			rs = append(rs, rps[i]/direct[i])
		}
	}
	if len(rs) == 0 {
		return 0, 0, 0, false
	}
	sort.Float64s(rs)
	m := rs[len(rs)/2]
	if len(rs)%2 == 0 {
		m = (rs[len(rs)/2-1] + rs[len(rs)/2]) / 2
	}
	return round3(m), round3(rs[0]), round3(rs[len(rs)-1]), true
}
