package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAuditMode: an audit socket forwards what the policy refuses and
// records it as a would-deny; switching it to enforce refuses the same call.
func TestAuditMode(t *testing.T) {
	b := StartBroker(t)
	b.CreateSocket(t, "aud", "github-actions-runner", "--policy-mode", "audit")
	name := objectName(t, "audit")
	defer cleanupUpstream(t, "container", name)

	// docker create (not run): privileged containers cannot start on this
	// host, but the create shows that the broker let the request through.
	r := b.Docker("aud", "create", "--name", name, "--privileged", testImage, "true")
	if strings.Contains(r.Combined(), "sockguard: denied") || r.Code != 0 {
		t.Fatalf("audit mode refused a privileged create: %s", r)
	}
	ds := waitDenials(t, b, "aud", func(ds []denialJSON) bool {
		_, ok := findDenial(ds, "POST", "/containers/create")
		return ok
	})
	d, _ := findDenial(ds, "POST", "/containers/create")
	if d.ReasonCode != "privileged" {
		t.Fatalf("would-deny record: %+v", d)
	}
	var raw struct {
		Denials []struct {
			PolicyMode string `json:"policyMode"`
		} `json:"denials"`
	}
	b.SgctlJSON(t, &raw, "denials", "--socket", "aud")
	if len(raw.Denials) == 0 || raw.Denials[0].PolicyMode != "audit" {
		t.Fatalf("denial not marked audit: %+v", raw)
	}

	b.Sgctl("update-socket", "aud", "--policy-mode", "enforce").MustSucceed(t)
	r = b.Docker("aud", "create", "--privileged", testImage, "true")
	if !strings.Contains(r.Combined(), "sockguard: denied by policy") {
		t.Fatalf("enforce mode let a privileged create through: %s", r)
	}
}

// waitDenials polls the deny log (written off the request path) until ok.
func waitDenials(t *testing.T, b *Broker, socket string, ok func([]denialJSON) bool) []denialJSON {
	t.Helper()
	var ds []denialJSON
	for range 50 {
		if ds = b.denials(t, socket); ok(ds) {
			return ds
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("denials of %s never matched: %+v", socket, ds)
	return nil
}

// TestFollowDenials: sgctl denials --follow prints a refusal within a
// second of the refused docker command.
func TestFollowDenials(t *testing.T) {
	b := StartBroker(t)
	b.CreateSocket(t, "fol", "github-actions-runner")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, suite.sgctl, "--admin-socket", b.AdminSocket, "-o", "json", "denials", "--follow", "--socket", "fol")
	cmd.Env = cleanEnv()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }() // killed by cancel: its exit status says nothing
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	time.Sleep(500 * time.Millisecond) // let the stream start

	r := b.Docker("fol", "run", "--rm", "--pid=host", testImage, "true")
	refused := time.Now()
	if !strings.Contains(r.Combined(), "sockguard: denied by policy") {
		t.Fatalf("--pid=host was not refused: %s", r)
	}
	select {
	case line, ok := <-lines:
		if !ok {
			t.Fatal("sgctl --follow ended without printing")
		}
		latency := time.Since(refused) // negative-ish (0) when it came first
		var d denialJSON
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			t.Fatalf("--follow -o json printed %q: %v", line, err)
		}
		if d.Path != "/containers/create" || d.ReasonCode != "host-namespace" {
			t.Fatalf("followed record: %+v", d)
		}
		t.Logf("denial printed %v after the refused command returned", latency)
		if latency > time.Second {
			t.Fatalf("denial printed %v after the refused command returned, want within 1s", latency)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sgctl --follow printed nothing within 10s")
	}
}

// TestDenialFiltersAndPaging: hundreds of records across two sockets;
// filters and pages return exactly the matching records.
func TestDenialFiltersAndPaging(t *testing.T) {
	b := StartBroker(t)
	sa := b.CreateSocket(t, "pa", "github-actions-runner")
	sb := b.CreateSocket(t, "pb", "github-actions-runner")
	const perSocket = 150
	for i := range perSocket {
		doRaw(t, sa, "GET", fmt.Sprintf("/v1.41/secrets/s%d", i), "", nil)
		doRaw(t, sb, "POST", "/v1.41/build", "", nil)
	}
	count := func(args ...string) int {
		var out listDenialsJSON
		b.SgctlJSON(t, &out, append([]string{"denials", "--limit", "0"}, args...)...)
		return len(out.Denials)
	}
	for range 50 { // the writer batches off the request path
		if count() == 2*perSocket {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"all", nil, 2 * perSocket},
		{"socket a", []string{"--socket", "pa"}, perSocket},
		{"socket b", []string{"--socket", "pb"}, perSocket},
		{"path prefix", []string{"--path", "/secrets/s1"}, 61}, // s1, s10-s19, s100-s149
		{"method", []string{"--method", "POST"}, perSocket},
		{"reason", []string{"--reason", "rule-denied"}, 2 * perSocket},
		{"other reason", []string{"--reason", "privileged"}, 0},
		{"limit", []string{"--socket", "pa", "--limit", "7"}, 7},
		{"future", []string{"--since", time.Now().Add(time.Hour).Format(time.RFC3339)}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if len(args) >= 2 && args[len(args)-2] == "--limit" {
				var out listDenialsJSON
				b.SgctlJSON(t, &out, append([]string{"denials"}, args...)...)
				if len(out.Denials) != tt.want {
					t.Fatalf("got %d, want %d", len(out.Denials), tt.want)
				}
				return
			}
			if got := count(args...); got != tt.want {
				t.Fatalf("got %d records, want %d", got, tt.want)
			}
		})
	}
	// Newest first, no duplicates across pages.
	var out listDenialsJSON
	b.SgctlJSON(t, &out, "denials", "--limit", "0", "--socket", "pa")
	seen := map[string]bool{}
	for i, d := range out.Denials {
		if seen[d.ID] {
			t.Fatalf("record %s twice", d.ID)
		}
		seen[d.ID] = true
		if i > 0 && d.Time > out.Denials[i-1].Time {
			t.Fatalf("not newest first at %d", i)
		}
	}
}

// TestLiveUpdateKeepsStreams: changing a socket's preset while docker logs
// -f streams through it does not cut the stream, and the next request is
// judged by the new preset.
func TestLiveUpdateKeepsStreams(t *testing.T) {
	b := StartBroker(t)
	b.CreateSocket(t, "live", "github-actions-runner")
	name := objectName(t, "live")
	defer cleanupUpstream(t, "container", name)
	b.Docker("live", "run", "-d", "--name", name, testImage, "sh", "-c",
		"for i in 1 2 3 4 5 6 7 8 9 10; do echo line$i; sleep 0.3; done").MustSucceed(t)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, suite.dockerCLI, "logs", "-f", name)
	cmd.Env = append(cleanEnv(), "DOCKER_HOST=unix://"+b.TenantSocket("live"), "DOCKER_CONFIG="+suite.dockerConfig)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(out)
	if first, err := br.ReadString('\n'); err != nil || strings.TrimSpace(first) != "line1" {
		t.Fatalf("first line %q %v", first, err)
	}
	b.Sgctl("update-socket", "live", "--preset", "read-only").MustSucceed(t)
	rest, _ := io.ReadAll(br)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("docker logs -f ended with %v after the update", err)
	}
	if got := strings.Fields(string(rest)); len(got) != 9 || got[8] != "line10" {
		t.Fatalf("stream after the update: %q", rest)
	}
	r := b.Docker("live", "run", "--rm", testImage, "true")
	if !strings.Contains(r.Combined(), "sockguard: denied by policy") {
		t.Fatalf("read-only preset let a container create through: %s", r)
	}
	b.Docker("live", "ps", "-a").MustSucceed(t)
}

// TestMetricsEndpoint scrapes the metrics listener over its unix socket.
func TestMetricsEndpoint(t *testing.T) {
	b := NewBroker(t)
	metrics := filepath.Join(b.Dir, "metrics.sock")
	b.ExtraArgs = append(b.ExtraArgs, "--metrics-listen", "unix://"+metrics)
	b.Start()
	sock := b.CreateSocket(t, "met", "github-actions-runner")
	doRaw(t, sock, "GET", "/v1.41/_ping", "", nil)
	doRaw(t, sock, "POST", "/v1.41/build", "", nil)
	var body string
	for range 50 {
		_, _, data := doRaw(t, metrics, "GET", "/metrics", "", nil)
		body = string(data)
		if strings.Contains(body, `sockguard_deny_log_records_written_total 1`) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, want := range []string{
		"# TYPE sockguard_requests_total counter",
		`sockguard_requests_total{decision="allow",socket="met"} 1`,
		`sockguard_requests_total{decision="deny",socket="met"} 1`,
		`sockguard_denials_total{reason="rule-denied",socket="met"} 1`,
		"# TYPE sockguard_request_duration_seconds histogram",
		`sockguard_active_connections{socket="met"}`,
		`sockguard_hijacked_streams{socket="met"}`,
		"sockguard_upstream_up 1",
		"sockguard_deny_log_records_written_total 1",
		"sockguard_deny_log_records_dropped_total 0",
		`sockguard_tenants{state="serving"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestSuggestPolicy: a short audit session of refused-but-needed calls
// turns into a preset that, loaded from --preset-dir, lets the same calls
// through, while the privileged run it also saw stays refused (the
// suggestion only carries it as a commented-out warning).
func TestSuggestPolicy(t *testing.T) {
	b := NewBroker(t)
	presets := filepath.Join(b.Dir, "presets")
	if err := os.Mkdir(presets, 0o755); err != nil {
		t.Fatal(err)
	}
	b.ExtraArgs = append(b.ExtraArgs, "--preset-dir", presets)
	b.Start()
	b.CreateSocket(t, "learn", "github-actions-runner", "--policy-mode", "audit")
	name := objectName(t, "learn")
	defer cleanupUpstream(t, "container", name)
	priv := objectName(t, "learnpriv")
	defer cleanupUpstream(t, "container", priv)

	b.Docker("learn", "create", "--name", name, testImage, "true").MustSucceed(t)
	if r := b.Docker("learn", "export", "-o", filepath.Join(b.Dir, "x.tar"), name); r.Code != 0 {
		t.Fatalf("audit mode refused docker export: %s", r)
	}
	b.Docker("learn", "create", "--name", priv, "--privileged", testImage, "true").MustSucceed(t)
	waitDenials(t, b, "learn", func(ds []denialJSON) bool {
		_, export := findDenial(ds, "GET", "/containers/*/export")
		for _, d := range ds {
			if strings.HasSuffix(d.Path, "/export") {
				export = true
			}
		}
		_, create := findDenial(ds, "POST", "/containers/create")
		return export && create
	})

	r := b.Sgctl("suggest-policy", "--socket", "learn", "--name", "learned").MustSucceed(t)
	if !strings.Contains(r.Stdout, "WARNING") {
		t.Fatalf("suggestion has no warning for the privileged create:\n%s", r.Stdout)
	}
	file := filepath.Join(presets, "learned.yaml")
	if err := os.WriteFile(file, []byte(r.Stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	b.Sgctl("preset", "validate", file).MustSucceed(t)

	b.Restart() // operator presets are read at start
	b.Sgctl("update-socket", "learn", "--preset", "learned", "--policy-mode", "enforce").MustSucceed(t)
	if r := b.Docker("learn", "export", "-o", filepath.Join(b.Dir, "y.tar"), name); r.Code != 0 {
		t.Fatalf("the learned preset refuses docker export: %s\npreset:\n%s", r, readFile(t, file))
	}
	r = b.Docker("learn", "create", "--privileged", testImage, "true")
	if !strings.Contains(r.Combined(), "sockguard: denied by policy") {
		t.Fatalf("the learned preset lets a privileged create through: %s", r)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
