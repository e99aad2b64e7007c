package e2e

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// tenantIDs lists the broker's sockets: name -> tenant id, and the names
// whose state is not serving.
func (b *Broker) tenantIDs(t testing.TB) (ids map[string]string, failed []string) {
	t.Helper()
	var out listSocketsJSON
	b.SgctlJSON(t, &out, "ls")
	ids = map[string]string{}
	for _, s := range out.Sockets {
		ids[s.Name] = s.TenantID
		if s.State != "serving" {
			failed = append(failed, s.Name+" "+s.State)
		}
	}
	return ids, failed
}

// brokerState runs `broker state ARGS...`.
func brokerState(args ...string) Result {
	return run(cmdOpts{timeout: time.Minute}, suite.broker, append([]string{"state"}, args...)...)
}

// TestStateBackupRestore: an online backup taken while tenants run
// traffic, the state dir wiped, the broker refusing to start empty, the
// backup restored offline: every tenant is back with its id, serves, and
// delete-socket --purge still finds the objects it made before.
func TestStateBackupRestore(t *testing.T) {
	b := StartBroker(t)
	names := []string{"sr-1", "sr-2", "sr-3"}
	containers := map[string]string{}
	for _, n := range names {
		b.CreateSocket(t, n, preset)
		c := objectName(t, "c-"+n)
		cleanupUpstream(t, "container", c)
		b.Docker(n, "create", "--name", c, "--network", "none", testImage, "true").MustSucceed(t)
		containers[n] = c
	}
	ids, _ := b.tenantIDs(t)

	// Traffic on every tenant (allowed and denied) while the backup runs.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var requests atomic.Int64
	for _, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := HTTPClient(b.TenantSocket(n))
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, target := range []string{"/_ping", "/containers/json", "/build"} {
					method := http.MethodGet
					if target == "/build" {
						method = http.MethodPost
					}
					req, _ := http.NewRequest(method, "http://docker"+target, nil)
					if resp, err := c.Do(req); err == nil {
						resp.Body.Close()
						requests.Add(1)
					}
				}
			}
		}()
	}
	backup := filepath.Join(t.TempDir(), "state.backup")
	time.Sleep(200 * time.Millisecond)
	r := b.Sgctl("backup", backup).MustSucceed(t)
	close(stop)
	wg.Wait()
	t.Logf("backup during %d requests: %s", requests.Load(), strings.TrimSpace(r.Stdout))
	if requests.Load() == 0 {
		t.Fatal("no traffic ran during the backup")
	}
	if r := b.Sgctl("backup", backup); r.Code == 0 {
		t.Error("backup overwrote an existing file")
	}
	brokerState("check", "--state-dir", b.StateDir).MustFail(t) // the broker holds the lock

	b.Stop()
	// Wipe the state: everything but the bind-pin mount point, which the
	// broker keeps under the state dir.
	ents, err := os.ReadDir(b.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != "pins" {
			if err := os.RemoveAll(filepath.Join(b.StateDir, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The socket dir's copy of the marker remembers the state: no empty start.
	r = RunBrokerExpectingFailure(t, 30*time.Second, b.Args()...)
	if !strings.Contains(r.Stderr, "state restore") {
		t.Errorf("refusal does not name the recovery: %s", r.Stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.Stderr), "\n")
	t.Logf("start on a wiped state dir: exit %d: %s", r.Code, lines[len(lines)-1])

	brokerState("restore", "--state-dir", b.StateDir, backup).MustSucceed(t)
	brokerState("check", "--state-dir", b.StateDir).MustSucceed(t)
	b.Start()
	got, failed := b.tenantIDs(t)
	if len(failed) > 0 {
		t.Fatalf("after restore, failed sockets: %v", failed)
	}
	for _, n := range names {
		if got[n] != ids[n] {
			t.Errorf("%s: tenant id %q after restore, want %q", n, got[n], ids[n])
		}
		b.Docker(n, "version").MustSucceed(t)
	}
	// Restored ids still own their objects.
	r = b.Sgctl("delete-socket", "sr-1", "--purge").MustSucceed(t)
	if !strings.Contains(r.Stdout, "1 container") {
		t.Errorf("purge after restore: %s", r.Stdout)
	}
	if r := upstreamDocker("inspect", containers["sr-1"]); r.Code == 0 {
		t.Errorf("container %s survived the purge of its restored tenant", containers["sr-1"])
	}
}

// TestStateKillUnderLoad: SIGKILL at random moments while tenants are being
// created and a deny flood is written. Every restart serves every tenant
// whose create was acknowledged, with the same id, and none is failed.
func TestStateKillUnderLoad(t *testing.T) {
	b := StartBroker(t)
	b.CreateSocket(t, "flood", preset)
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	acked := map[string]string{}
	next := 0
	for round := range 3 {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // deny flood
			defer wg.Done()
			c := HTTPClient(b.TenantSocket("flood"))
			for {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest(http.MethodPost, "http://docker/build", nil)
				if resp, err := c.Do(req); err == nil {
					resp.Body.Close()
				}
			}
		}()
		var mu sync.Mutex
		wg.Add(1)
		go func() { // creates, each acknowledged or not
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				name := fmt.Sprintf("k-%d", next)
				next++
				mu.Unlock()
				if b.Sgctl("create-socket", name, "--preset", preset).Code == 0 {
					mu.Lock()
					acked[name] = ""
					mu.Unlock()
				}
			}
		}()
		time.Sleep(time.Duration(300+rng.Intn(900)) * time.Millisecond)
		p := b.proc
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
			t.Fatal(err)
		}
		<-p.done
		b.proc = nil
		close(stop)
		wg.Wait()

		b.Start()
		got, failed := b.tenantIDs(t)
		if len(failed) > 0 {
			t.Fatalf("round %d: failed sockets after kill -9: %v", round, failed)
		}
		mu.Lock()
		for n, id := range acked {
			switch {
			case got[n] == "":
				t.Errorf("round %d: acknowledged tenant %s is gone", round, n)
			case id != "" && got[n] != id:
				t.Errorf("round %d: tenant %s changed id %s -> %s", round, n, id, got[n])
			}
			acked[n] = got[n]
		}
		t.Logf("round %d: killed; %d acknowledged tenants all back (%d sockets)", round, len(acked), len(got))
		mu.Unlock()
	}
	brokerState("check", "--state-dir", b.StateDir).MustFail(t) // running
	b.Stop()
	r := brokerState("check", "--state-dir", b.StateDir).MustSucceed(t)
	t.Logf("state check after the rounds:\n%s", firstLine(r.Stdout))
}

// TestStateCorruptStart: the real broker binary on damaged state files.
// Each start is a clean refusal (non-zero exit, one message naming the
// file, no panic) or a start with the damaged tenant failed and the
// others serving.
func TestStateCorruptStart(t *testing.T) {
	b := StartBroker(t)
	b.CreateSocket(t, "cs-good", preset)
	b.CreateSocket(t, "cs-victim", preset)
	b.Stop()
	db := filepath.Join(b.StateDir, "state.db")
	orig, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	ps := os.Getpagesize()
	everyCopy := func(b []byte, needle string, delta int) []byte {
		for i := 0; ; {
			j := strings.Index(string(b[i:]), needle)
			if j < 0 {
				return b
			}
			b[i+j+delta] ^= 0x20
			i += j + len(needle)
		}
	}
	refusals := []struct {
		name   string
		damage func([]byte) []byte
	}{
		{"zero bytes", func([]byte) []byte { return nil }},
		// Half of the data, not of the file: bbolt's file may end in
		// unused pages, and cutting only those loses nothing (a clean start).
		{"truncated to half the data", func(b []byte) []byte { return b[:boltDataEnd(t, b)/2] }},
		{"meta page 0 zeroed", func(b []byte) []byte { clear(b[:ps]); return b }},
		{"meta page 1 flipped", func(b []byte) []byte { b[ps+40] ^= 1; return b }},
		{"garbage", func(b []byte) []byte { return []byte(strings.Repeat("garbage ", len(b)/8)) }},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(db, tt.damage(append([]byte(nil), orig...)), 0o600); err != nil {
				t.Fatal(err)
			}
			r := RunBrokerExpectingFailure(t, 30*time.Second, b.Args()...)
			if strings.Contains(r.Stderr, "panic") || strings.Contains(r.Stderr, "goroutine ") || r.Code != 1 {
				t.Fatalf("exit %d, want 1 and no panic:\n%s", r.Code, r.Stderr)
			}
			if !strings.Contains(r.Stderr, db) {
				t.Errorf("refusal does not name %s:\n%s", db, r.Stderr)
			}
		})
	}
	t.Run("one tenant record flipped", func(t *testing.T) {
		if err := os.WriteFile(db, everyCopy(append([]byte(nil), orig...), `"name":"cs-victim"`, 10), 0o600); err != nil {
			t.Fatal(err)
		}
		b.Start()
		defer b.Stop()
		_, failed := b.tenantIDs(t)
		if len(failed) != 1 || !strings.HasPrefix(failed[0], "cs-victim ") {
			t.Fatalf("failed sockets: %v, want cs-victim only", failed)
		}
		b.Docker("cs-good", "version").MustSucceed(t)
		ls := b.Sgctl("ls").MustSucceed(t)
		if !strings.Contains(ls.Stdout, "cs-victim failed: ") || !strings.Contains(ls.Stdout, "checksum") {
			t.Errorf("sgctl ls does not say why cs-victim failed:\n%s", ls.Stdout)
		}
	})
}

// boltDataEnd is where a bbolt file's data ends: the high-water page of its
// newer meta page times the page size (meta: a 16-byte page header, then
// magic, version, page size, flags, root bucket, freelist, pgid, txid).
func boltDataEnd(t *testing.T, b []byte) int {
	t.Helper()
	le := binary.LittleEndian
	if len(b) < 72 {
		t.Fatalf("state file of %d bytes has no meta page", len(b))
	}
	ps := int(le.Uint32(b[24:]))
	end, txid := 0, uint64(0)
	for i := 0; i < 2 && (i+1)*ps <= len(b); i++ {
		m := b[i*ps:]
		if tx := le.Uint64(m[64:]); tx >= txid {
			txid, end = tx, int(le.Uint64(m[56:]))*ps
		}
	}
	if end <= 2*ps || end > len(b) {
		t.Fatalf("meta pages give a data end of %d in a file of %d bytes", end, len(b))
	}
	return end
}
