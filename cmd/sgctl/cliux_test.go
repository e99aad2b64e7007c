package main

import (
	"bytes"
	"context"
	"flag"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestVersionFlag(t *testing.T) {
	// --version is offline: no broker at this path.
	res := sgctl(t, filepath.Join(shortTempDir(t), "none.sock"), "--version")
	if res.code != 0 || res.stdout != "sgctl version dev\n" || res.stderr != "" {
		t.Errorf("exit %d stdout %q stderr %q", res.code, res.stdout, res.stderr)
	}
}

func TestCompletionCoversTheCommandTable(t *testing.T) {
	global, cmds := completionModel()
	if len(global) == 0 || len(cmds) != len(commands()) {
		t.Fatalf("model: %d global flags, %d commands", len(global), len(cmds))
	}
	for _, shell := range []string{"bash", "zsh", "fish"} {
		t.Run(shell, func(t *testing.T) {
			res := sgctl(t, "/nonexistent.sock", "completion", shell)
			if res.code != 0 || res.stderr != "" {
				t.Fatalf("exit %d stderr %q", res.code, res.stderr)
			}
			for _, cmd := range commands() {
				fs := newFlagSetFor(cmd)
				for _, name := range append([]string{cmd.name}, cmd.aliases...) {
					if !strings.Contains(res.stdout, name) {
						t.Errorf("lacks command %s", name)
					}
				}
				for _, f := range fs {
					want := "--" + f
					if shell == "fish" {
						want = "-l " + f
					}
					if len(f) == 1 {
						want = "-" + f
						if shell == "fish" {
							want = "-s " + f
						}
					}
					if !strings.Contains(res.stdout, want) {
						t.Errorf("%s: lacks flag %s", cmd.name, want)
					}
				}
			}
			// The shell itself must accept the script, where it is installed.
			if path, err := exec.LookPath(shell); err == nil {
				out, err := exec.Command(path, "-n", "-c", res.stdout).CombinedOutput()
				if shell == "zsh" || shell == "fish" {
					cmd := exec.Command(path, "-n")
					cmd.Stdin = strings.NewReader(res.stdout)
					out, err = cmd.CombinedOutput()
				}
				if err != nil {
					t.Errorf("%s -n: %v\n%s", shell, err, out)
				}
			} else {
				t.Logf("%s not installed: syntax not checked", shell)
			}
		})
	}
	res := sgctl(t, "/nonexistent.sock", "completion", "tcsh")
	if res.code != exitUsage || !strings.Contains(res.stderr, "want bash, zsh or fish") {
		t.Errorf("tcsh: exit %d stderr %q", res.code, res.stderr)
	}
}

// TestCompletionKnowsTheGlobalFlags: every global flag sgctl --help lists
// is completed.
func TestCompletionKnowsTheGlobalFlags(t *testing.T) {
	var help bytes.Buffer
	(&cli{}).printMainUsage(&help)
	global, _ := completionModel()
	have := map[string]bool{}
	for _, f := range global {
		have[f.name] = true
	}
	_, flags, _ := strings.Cut(help.String(), "Global flags")
	flags, _, _ = strings.Cut(flags, "\n\n")
	n := 0
	for _, line := range strings.Split(flags, "\n") {
		for _, w := range strings.Fields(strings.ReplaceAll(line, ",", " ")) {
			if name, ok := strings.CutPrefix(w, "--"); ok && strings.HasPrefix(strings.TrimSpace(line), "-") {
				n++
				if !have[name] {
					t.Errorf("sgctl --help lists --%s, completion does not", name)
				}
			}
		}
	}
	if n < 5 {
		t.Errorf("found %d global flags in the help:\n%s", n, help.String())
	}
}

// newFlagSetFor lists the flag names cmd registers.
func newFlagSetFor(cmd *command) []string {
	var names []string
	fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	cmd.setup(fs)
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	return names
}

// TestBashCompletion runs the generated bash function the way bash's
// programmable completion does.
func TestBashCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash not installed")
	}
	res := sgctl(t, "/nonexistent.sock", "completion", "bash")
	tests := []struct {
		words []string // the last one is being completed
		want  string
	}{
		{[]string{"sgctl", "de"}, "delete-socket denials"},
		{[]string{"sgctl", "-o", "json", "insp"}, "inspect-socket"},
		{[]string{"sgctl", "--admin-socket", "/x", "-o", ""}, "table json yaml"},
		{[]string{"sgctl", "denials", "--no"}, "--no-trunc"},
		{[]string{"sgctl", "denials", "--reason", "foreign"}, "foreign-object"},
		{[]string{"sgctl", "create-socket", "r1", "--policy-mode", "a"}, "audit"},
		{[]string{"sgctl", "rm", "--pu"}, "--purge --purge-timeout"},
		{[]string{"sgctl", "rm", "--purge-t"}, "--purge-timeout"},
		{[]string{"sgctl", "completion", "z"}, "zsh"},
		{[]string{"sgctl", "help", "sta"}, "status"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.words, "_"), func(t *testing.T) {
			script := res.stdout + "\nCOMP_WORDS=(" + quoteWords(tt.words) + "); COMP_CWORD=" +
				strconv.Itoa(len(tt.words)-1) + "; _sgctl; echo \"${COMPREPLY[*]}\"\n"
			out, err := exec.Command(bash, "--norc", "-c", script).CombinedOutput()
			if err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			if got := strings.TrimSpace(string(out)); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func quoteWords(w []string) string {
	q := make([]string, len(w))
	for i, s := range w {
		q[i] = "'" + s + "'"
	}
	return strings.Join(q, " ")
}

func TestCheckExitCodeForErrors(t *testing.T) {
	missing := filepath.Join(shortTempDir(t), "admin.sock")
	res := sgctl(t, missing, "check", "--preset", "p", "GET", "/_ping")
	if res.code != exitCheckError || !strings.Contains(res.stderr, "cannot reach the broker") {
		t.Errorf("unreachable: exit %d stderr %q", res.code, res.stderr)
	}
	sock := startBroker(t, &fakeBroker{err: status.Error(codes.NotFound, `preset "p" not found`)})
	res = sgctl(t, sock, "check", "--preset", "p", "GET", "/_ping")
	if res.code != exitCheckError || !strings.Contains(res.stderr, `preset "p" not found`) {
		t.Errorf("unknown preset: exit %d stderr %q", res.code, res.stderr)
	}
	res = sgctl(t, sock, "check", "-h")
	if flat := strings.Join(strings.Fields(res.stdout), " "); !strings.Contains(flat, "0 allow, 1 deny, 2 usage error") || !strings.Contains(flat, "3 no answer") {
		t.Errorf("check -h does not document the exit codes:\n%s", res.stdout)
	}
}

func TestDenialsNoTrunc(t *testing.T) {
	d := testDenials(1)
	d[0].Reason = strings.Repeat("long reason ", 20) + "END"
	sock := startBroker(t, &fakeBroker{denials: d})
	res := sgctl(t, sock, "denials")
	if strings.Contains(res.stdout, "END") || !strings.Contains(res.stdout, "...") {
		t.Errorf("table not truncated:\n%s", res.stdout)
	}
	res = sgctl(t, sock, "denials", "--no-trunc")
	if res.code != 0 || !strings.Contains(res.stdout, "END") || strings.Contains(res.stdout, "...") {
		t.Errorf("--no-trunc: exit %d:\n%s", res.code, res.stdout)
	}
}

func TestDeleteSeveral(t *testing.T) {
	f := &fakeBroker{sockets: testSockets()}
	sock := startBroker(t, f)
	res := sgctl(t, sock, "rm", "runner-1", "ghost", "runner-2", "runner-1")
	if res.code != exitFailure {
		t.Errorf("exit %d, want 1", res.code)
	}
	for _, w := range []string{"deleted socket runner-1;", "deleted socket runner-2;"} {
		if !strings.Contains(res.stdout, w) {
			t.Errorf("stdout lacks %q:\n%s", w, res.stdout)
		}
	}
	if !strings.Contains(res.stderr, `sgctl: ghost: socket "ghost" not found`) || !strings.Contains(res.stderr, "1 of 3 sockets not deleted") {
		t.Errorf("stderr %q", res.stderr)
	}
	var names []string
	for _, r := range requests[*sockguardv1.DeleteSocketRequest](f) {
		names = append(names, r.GetName())
	}
	if strings.Join(names, ",") != "runner-1,ghost,runner-2" {
		t.Errorf("deleted %v", names)
	}
	res = sgctl(t, sock, "rm", "runner-1", "runner-2")
	if res.code != 0 || res.stderr != "" {
		t.Errorf("all deleted: exit %d stderr %q", res.code, res.stderr)
	}
}

// logBroker serves a shared, growing denial log: ListDenials newest first,
// WatchDenials the records after after_id (as the broker does), then it
// waits.
type logBroker struct {
	fakeBroker
	log *denialLog
}

type denialLog struct {
	mu      sync.Mutex
	recs    []*sockguardv1.Denial // oldest first, ids increasing
	changed chan struct{}         // closed and replaced by add
}

func newDenialLog() *denialLog { return &denialLog{changed: make(chan struct{})} }

func (l *denialLog) add(d ...*sockguardv1.Denial) {
	l.mu.Lock()
	l.recs = append(l.recs, d...)
	close(l.changed)
	l.changed = make(chan struct{})
	l.mu.Unlock()
}

func (l *denialLog) changedCh() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

func (l *denialLog) after(id uint64) []*sockguardv1.Denial {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*sockguardv1.Denial
	for _, d := range l.recs {
		if d.GetId() > id {
			out = append(out, d)
		}
	}
	return out
}

func (b *logBroker) ListDenials(_ context.Context, req *sockguardv1.ListDenialsRequest) (*sockguardv1.ListDenialsResponse, error) {
	if err := b.record(req); err != nil {
		return nil, err
	}
	all := b.log.after(0)
	resp := &sockguardv1.ListDenialsResponse{}
	for i := len(all) - 1; i >= 0 && (req.GetPageSize() == 0 || len(resp.Denials) < int(req.GetPageSize())); i-- {
		if req.GetSocket() == "" || all[i].GetSocket() == req.GetSocket() {
			resp.Denials = append(resp.Denials, all[i])
		}
	}
	return resp, nil
}

func (b *logBroker) WatchDenials(req *sockguardv1.WatchDenialsRequest, stream grpc.ServerStreamingServer[sockguardv1.WatchDenialsResponse]) error {
	changed := b.log.changedCh()
	if err := b.record(req); err != nil {
		return err
	}
	cursor := req.GetAfterId()
	if cursor == 0 {
		if all := b.log.after(0); len(all) > 0 {
			cursor = all[len(all)-1].GetId()
		}
	}
	for {
		for _, d := range b.log.after(cursor) {
			cursor = d.GetId()
			if req.GetSocket() != "" && d.GetSocket() != req.GetSocket() {
				continue
			}
			if err := stream.Send(&sockguardv1.WatchDenialsResponse{Denial: d}); err != nil {
				return err
			}
		}
		select {
		case <-stream.Context().Done():
			return nil
		case <-changed:
			changed = b.log.changedCh()
		}
	}
}

// serveAt serves b on path until the returned stop is called.
func serveAt(t *testing.T, path string, b *logBroker) (stop func()) {
	t.Helper()
	lis, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	sockguardv1.RegisterSockguardServiceServer(srv, b)
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(lis)
	}()
	var once sync.Once
	stop = func() { once.Do(func() { srv.Stop(); <-done }) }
	t.Cleanup(stop)
	return stop
}

func denial(id uint64, socket string) *sockguardv1.Denial {
	d := testDenials(1)[0]
	d.Id, d.Socket = id, socket
	return d
}

// TestFollowSurvivesRestart stops the broker while denials --follow runs,
// records more while it is away, and starts a new one on the same socket:
// every matching record is printed once, in order.
func TestFollowSurvivesRestart(t *testing.T) {
	tests := []struct {
		name     string
		before   []*sockguardv1.Denial // in the log before following starts: not shown
		first    []*sockguardv1.Denial // recorded while the first broker runs
		meantime []*sockguardv1.Denial // recorded while no broker runs
		second   []*sockguardv1.Denial // recorded after the restart
		want     []uint64
		// resume is the after_id of the watch on the second broker.
		resume uint64
	}{
		{
			name:     "records before",
			before:   []*sockguardv1.Denial{denial(1, "r1"), denial(2, "r2")},
			first:    []*sockguardv1.Denial{denial(3, "r1"), denial(4, "r2"), denial(5, "r1")},
			meantime: []*sockguardv1.Denial{denial(6, "r1"), denial(7, "r2")},
			second:   []*sockguardv1.Denial{denial(8, "r1")},
			want:     []uint64{3, 5, 6, 8},
			resume:   5,
		},
		{
			// The store was empty and nothing came before the restart:
			// after_id 0 means "from now", so the reconnect lists what was
			// recorded meanwhile and watches after the newest.
			name:     "empty store",
			meantime: []*sockguardv1.Denial{denial(1, "r1"), denial(2, "r2"), denial(3, "r1")},
			second:   []*sockguardv1.Denial{denial(4, "r1")},
			want:     []uint64{1, 3, 4},
			resume:   3,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(shortTempDir(t), "admin.sock")
			log := newDenialLog()
			log.add(tt.before...)
			first := &logBroker{log: log}
			stopFirst := serveAt(t, path, first)

			var stdout, stderr lockedBuffer
			c := &cli{stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }, now: time.Now, timeout: 5 * time.Second}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			done := make(chan int, 1)
			go func() {
				done <- c.main(ctx, []string{"--admin-socket", path, "-o", "json", "denials", "--follow", "--socket", "r1",
					"--limit", strconv.Itoa(len(tt.want))})
			}()
			waitFor(t, func() bool { return len(requests[*sockguardv1.WatchDenialsRequest](&first.fakeBroker)) == 1 })
			log.add(tt.first...)
			shown := 0
			for _, d := range tt.first {
				if d.GetSocket() == "r1" {
					shown++
				}
			}
			waitFor(t, func() bool { return strings.Count(stdout.String(), "\n") == shown })
			// A filtered-out record is not printed; give the client a
			// moment to take it in before the broker goes.
			time.Sleep(50 * time.Millisecond)
			stopFirst()
			waitFor(t, func() bool { return strings.Contains(stderr.String(), "sgctl: lost the broker") })
			log.add(tt.meantime...)
			second := &logBroker{log: log}
			serveAt(t, path, second)
			waitFor(t, func() bool { return len(requests[*sockguardv1.WatchDenialsRequest](&second.fakeBroker)) == 1 })
			log.add(tt.second...)
			var code int
			select {
			case code = <-done:
			case <-time.After(20 * time.Second):
				t.Fatalf("follow did not end\nstdout %s\nstderr %s", stdout.String(), stderr.String())
			}
			if code != 0 {
				t.Fatalf("exit %d\nstderr %s", code, stderr.String())
			}
			var got []uint64
			for _, l := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
				var d sockguardv1.Denial
				if err := unmarshalStructured([]byte(l), &d); err != nil {
					t.Fatalf("%v: %s", err, l)
				}
				got = append(got, d.GetId())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("printed ids %v, want %v\nstderr %s", got, tt.want, stderr.String())
			}
			if w := requests[*sockguardv1.WatchDenialsRequest](&second.fakeBroker); w[0].GetAfterId() != tt.resume {
				t.Errorf("resumed after %d, want %d", w[0].GetAfterId(), tt.resume)
			}
			if !strings.Contains(stderr.String(), "sgctl: reconnected to the broker; resuming after record "+strconv.FormatUint(tt.resume, 10)) {
				t.Errorf("stderr %q", stderr.String())
			}
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
