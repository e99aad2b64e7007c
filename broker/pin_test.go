package broker

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sockguard/sockguard/broker/docker"
)

func TestParsePinMode(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want pinMode
		err  bool
	}{
		{"", PinAuto, false}, {"auto", PinAuto, false}, {"mount", PinMount, false},
		{"root-owned", PinRootOwned, false}, {"refuse", PinRefuse, false},
		{"off", "", true}, {"MOUNT", "", true},
	} {
		got, err := ParsePinMode(tc.in)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("ParsePinMode(%q) = %q, %v", tc.in, got, err)
		}
	}
}

func TestOpenNoFollow(t *testing.T) {
	dir := t.TempDir()
	mustMkdir(t, filepath.Join(dir, "a", "b"))
	mustWrite(t, filepath.Join(dir, "a", "f"), "x")
	mustSymlink(t, "/", filepath.Join(dir, "toroot"))
	mustSymlink(t, filepath.Join(dir, "a"), filepath.Join(dir, "toa"))
	tests := []struct {
		name, path string
		create     bool
		refused    string // substring of a *pinRefused
	}{
		{name: "dir", path: "a/b"},
		{name: "file", path: "a/f"},
		{name: "link as the last component", path: "toroot", refused: "is a symlink now"},
		{name: "link in the middle", path: "toa/b", refused: "is a symlink now"},
		{name: "file in the middle", path: "a/f/x", refused: "is not a directory"},
		{name: "missing, not created", path: "a/new", refused: "does not exist"},
		{name: "missing, created", path: "a/new/deeper", create: true},
		{name: "missing below a link", path: "toroot/sg-pin-test-never", create: true, refused: "is a symlink now"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fd, err := openNoFollow(filepath.Join(dir, tc.path), tc.create)
			if tc.refused != "" {
				var pr *pinRefused
				if !errors.As(err, &pr) || !strings.Contains(err.Error(), tc.refused) {
					t.Fatalf("err = %v, want a refusal with %q", err, tc.refused)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			unix.Close(fd)
		})
	}
	fi, err := os.Stat(filepath.Join(dir, "a", "new", "deeper"))
	if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 {
		t.Fatalf("created source: %v %v", fi, err)
	}
	if _, err := os.Lstat("/sg-pin-test-never"); err == nil {
		t.Fatal("a directory was created through a symlink")
	}
}

// pinTestDir is a pin directory for a test, skipped where this process
// may not mount. Whatever a failed test leaves mounted is detached.
func pinTestDir(t *testing.T) (work string, pn *pinner) {
	t.Helper()
	root := t.TempDir()
	pn = newPinner(PinMount, filepath.Join(root, "pins"), "", nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := pn.prepareDir(); err != nil {
		t.Skipf("cannot mount here: %v", err)
	}
	t.Cleanup(func() {
		// Best effort: whatever is still mounted under the test's
		// directory goes; the walk's callback never fails.
		for range 4 {
			_ = filepath.WalkDir(pn.dir, func(p string, d os.DirEntry, err error) error {
				if p != pn.dir {
					_ = unix.Unmount(p, unix.MNT_DETACH)
				}
				return nil
			})
		}
		_ = unix.Unmount(pn.dir, unix.MNT_DETACH)
	})
	work = filepath.Join(root, "work")
	mustMkdir(t, work)
	return work, pn
}

func TestPinSurvivesSwapAndReleases(t *testing.T) {
	work, pn := pinTestDir(t)
	src := filepath.Join(work, "d")
	mustMkdir(t, src)
	mustWrite(t, filepath.Join(src, "marker"), "orig")
	body := `{"Image":"x","HostConfig":{"Binds":["` + src + `:/x","` + filepath.Join(src, "marker") + `:/m:ro"]}}`
	out, id, err := pn.prepare(t.Context(), "t-1", "r1", []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(pn.dir, "t-1", id)
	if !strings.Contains(string(out), dir+"/0:/x") || !strings.Contains(string(out), dir+"/1:/m:ro") ||
		!strings.Contains(string(out), `"`+pinLabel+`":"`+id+`"`) {
		t.Fatalf("forwarded body: %s", out)
	}
	// The tenant swaps the directory and the file for links to the host.
	if err := os.Rename(src, src+".aside"); err != nil {
		t.Fatal(err)
	}
	mustSymlink(t, "/", src)
	if b, err := os.ReadFile(filepath.Join(dir, "0", "marker")); err != nil || string(b) != "orig" {
		t.Fatalf("the pinned directory shows %q, %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "1")); err != nil || string(b) != "orig" {
		t.Fatalf("the pinned file shows %q, %v", b, err)
	}
	// Not in flight any more, but no container names it: the sweep's rule.
	pn.finish("t-1", id, false)
	if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pin directory left after a failed create: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(src+".aside", "marker")); err != nil || string(b) != "orig" {
		t.Fatalf("releasing the pin touched the source: %q, %v", b, err)
	}
}

func TestPrepareRefusals(t *testing.T) {
	work, pn := pinTestDir(t)
	pn.hostSocketDir = "/run/sockguard"
	pn.guarded = []string{"/run/sockguard", filepath.Join(filepath.Dir(pn.dir), "state")}
	mustSymlink(t, "/", filepath.Join(work, "link"))
	tests := []struct {
		name, body string
		refused    string // "" allowed
	}{
		{"own socket is not pinned", `{"HostConfig":{"Binds":["/run/sockguard/r1/sockguard.sock:/var/run/docker.sock"]}}`, ""},
		{"another tenant's socket", `{"HostConfig":{"Binds":["/run/sockguard/r2/sockguard.sock:/s"]}}`, "broker's own path /run/sockguard"},
		{"a link (changed after it was judged)", `{"HostConfig":{"Binds":["` + work + `/link:/x"]}}`, "is a symlink now"},
		{"missing Mounts source", `{"HostConfig":{"Mounts":[{"Type":"bind","Source":"` + work + `/none","Target":"/x"}]}}`, "does not exist"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, id, err := pn.prepare(t.Context(), "t-1", "r1", []byte(tc.body))
			if tc.refused == "" {
				if err != nil || id != "" || !strings.Contains(string(out), "/run/sockguard/r1/sockguard.sock") {
					t.Fatalf("prepare = %s, %q, %v", out, id, err)
				}
				return
			}
			var pr *pinRefused
			if !errors.As(err, &pr) || !strings.Contains(err.Error(), tc.refused) {
				t.Fatalf("err = %v, want a refusal with %q", err, tc.refused)
			}
			if !strings.Contains(err.Error(), "HostConfig.") {
				t.Fatalf("refusal does not name the field: %v", err)
			}
		})
	}
	if ents, _ := os.ReadDir(filepath.Join(pn.dir, "t-1")); len(ents) != 0 {
		t.Fatalf("refused creates left pins: %v", ents)
	}
}

// fakeLister answers GET /containers/json with containers carrying the
// given pin labels, or with status when it is not 200.
func fakeLister(t *testing.T, pins *atomic.Pointer[[]string], status *atomic.Int32) *docker.Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "d.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s := int(status.Load()); s != http.StatusOK {
			w.WriteHeader(s)
			return
		}
		if !strings.Contains(r.URL.Query().Get("filters"), pinLabel) || r.URL.Query().Get("all") != "1" {
			t.Errorf("list query %q", r.URL.RawQuery)
		}
		var cs []map[string]any
		for _, p := range *pins.Load() {
			cs = append(cs, map[string]any{"Labels": map[string]string{pinLabel: p}})
		}
		_ = json.NewEncoder(w).Encode(cs) // a failed write fails the client's read
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	up, err := docker.New("unix://"+sock, nil)
	if err != nil {
		t.Fatal(err)
	}
	return up
}

func TestSweep(t *testing.T) {
	var live atomic.Pointer[[]string]
	var status atomic.Int32
	status.Store(http.StatusOK)
	up := fakeLister(t, &live, &status)
	pn := newPinner(PinMount, filepath.Join(t.TempDir(), "pins"), "", nil, up, slog.New(slog.NewTextHandler(io.Discard, nil)))
	// Pin directories without mounts: release treats them the same.
	for _, p := range []string{"t-1/kept", "t-1/kept2", "t-1/gone", "t-2/gone2"} {
		mustMkdir(t, filepath.Join(pn.dir, p, "0"))
	}
	mustWrite(t, filepath.Join(pn.dir, "t-2", "gone2", "1"), "")
	busy, _, err := pn.begin("t-3")
	if err != nil {
		t.Fatal(err)
	}
	live.Store(&[]string{"kept", "someone-elses,kept2"}) // a VolumesFrom container names several

	for _, tc := range []struct {
		name   string
		status int
	}{{"daemon error", http.StatusInternalServerError}, {"daemon refuses the list", http.StatusBadRequest}} {
		status.Store(int32(tc.status))
		if n, err := pn.sweep(t.Context()); err == nil || n != 0 {
			t.Fatalf("%s: sweep = %d, %v; want nothing removed and an error", tc.name, n, err)
		}
	}
	status.Store(http.StatusOK)
	n, err := pn.sweep(t.Context())
	if err != nil || n != 2 {
		t.Fatalf("sweep = %d, %v; want 2 removed", n, err)
	}
	var left []string
	_ = filepath.WalkDir(pn.dir, func(p string, d os.DirEntry, err error) error { // the callback never fails
		if rel, _ := filepath.Rel(pn.dir, p); strings.Count(rel, "/") == 1 {
			left = append(left, rel)
		}
		return nil
	})
	slices.Sort(left)
	if want := []string{"t-1/kept", "t-1/kept2", "t-3/" + busy}; !slices.Equal(left, want) {
		t.Fatalf("left %v, want %v", left, want)
	}
	if _, err := os.Lstat(filepath.Join(pn.dir, "t-2")); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("an empty tenant directory was kept")
	}
	// Once answered, an unreferenced pin goes at the next sweep.
	pn.finish("t-3", busy, true)
	if n, err := pn.sweep(t.Context()); err != nil || n != 1 {
		t.Fatalf("sweep after finish = %d, %v", n, err)
	}
}

func TestCheckRootOwned(t *testing.T) {
	tmp := t.TempDir() // under a world-writable /tmp, or owned by us
	var st unix.Stat_t
	rootOK := unix.Stat("/", &st) == nil && st.Uid == 0 && st.Mode&0o022 == 0
	tests := []struct {
		name    string
		path    string
		ro      bool
		refused string
	}{
		{"read-write", "/", false, "bind it read-only"},
		{"temp dir", tmp, true, "not owned by root or is writable"},
		{"missing", "/sg-pin-test-never/x", true, "does not exist"},
	}
	if rootOK {
		tests = append(tests, struct {
			name    string
			path    string
			ro      bool
			refused string
		}{"root-owned", "/", true, ""})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkRootOwned(tc.path, tc.ro)
			if tc.refused == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var pr *pinRefused
			if !errors.As(err, &pr) || !strings.Contains(err.Error(), tc.refused) {
				t.Fatalf("err = %v, want a refusal with %q", err, tc.refused)
			}
		})
	}
}

func mustMkdir(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
}

func mustWrite(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustSymlink(t *testing.T, target, p string) {
	t.Helper()
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
}

func TestPinLimit(t *testing.T) {
	work, pn := pinTestDir(t)
	pn.limit = 2
	src := filepath.Join(work, "d")
	mustMkdir(t, src)
	bind := func(n int) []byte {
		var bs []string
		for i := range n {
			bs = append(bs, `"`+src+`:/x`+string(rune('a'+i))+`"`)
		}
		return []byte(`{"HostConfig":{"Binds":[` + strings.Join(bs, ",") + `]}}`)
	}
	_, _, err := pn.prepare(t.Context(), "t-1", "r1", bind(3))
	var pr *pinRefused
	if !errors.As(err, &pr) || pr.status != http.StatusTooManyRequests {
		t.Fatalf("3 binds with a limit of 2: %v", err)
	}
	if pn.counts["t-1"] != 0 {
		t.Fatalf("a refused create left %d counted", pn.counts["t-1"])
	}
	_, id, err := pn.prepare(t.Context(), "t-1", "r1", bind(2))
	if err != nil {
		t.Fatal(err)
	}
	pn.finish("t-1", id, true)
	if _, _, err := pn.prepare(t.Context(), "t-1", "r1", bind(1)); !errors.As(err, &pr) {
		t.Fatalf("past the limit: %v", err)
	}
	// Another tenant has its own budget.
	_, id2, err := pn.prepare(t.Context(), "t-2", "r2", bind(1))
	if err != nil {
		t.Fatal(err)
	}
	pn.finish("t-2", id2, false)
	if err := pn.release("t-1", id); err != nil {
		t.Fatal(err)
	}
	if len(pn.counts) != 0 {
		t.Fatalf("counts after release: %v", pn.counts)
	}
}

// BenchmarkPinCreate is the broker's own cost of pinning a create with n
// bind sources (open, mount, label) and of removing the pins again.
func BenchmarkPinCreate(b *testing.B) {
	for _, release := range []bool{false, true} {
		for _, n := range []int{0, 1, 8} {
			name := strconv.Itoa(n) + "-binds"
			if release {
				name += "+release"
			}
			b.Run(name, func(b *testing.B) {
				root := b.TempDir()
				pn := newPinner(PinMount, filepath.Join(root, "pins"), "", nil, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
				if err := pn.prepareDir(); err != nil {
					b.Skipf("cannot mount here: %v", err)
				}
				defer func() { _ = unix.Unmount(pn.dir, unix.MNT_DETACH) }()
				var bs []string
				for i := range n {
					d := filepath.Join(root, "work", strconv.Itoa(i))
					if err := os.MkdirAll(d, 0o755); err != nil {
						b.Fatal(err)
					}
					bs = append(bs, `"`+d+`:/m`+strconv.Itoa(i)+`"`)
				}
				body := []byte(`{"Image":"busybox","Cmd":["true"],"HostConfig":{"NetworkMode":"none","Binds":[` + strings.Join(bs, ",") + `]}}`)
				b.ResetTimer()
				for range b.N {
					_, id, err := pn.prepare(b.Context(), "t-1", "r1", body)
					if err != nil {
						b.Fatal(err)
					}
					if !release {
						b.StopTimer()
					}
					pn.finish("t-1", id, false)
					if !release {
						b.StartTimer()
					}
				}
			})
		}
	}
}

func TestPinSetupModes(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tests := []struct {
		name     string
		want     pinMode
		hostFS   bool
		mode     pinMode
		fallback bool // a reason is given
		err      bool
	}{
		{"root-owned asked", PinRootOwned, true, PinRootOwned, false, false},
		{"refuse asked", PinRefuse, true, PinRefuse, false, false},
		{"auto without the host's filesystem", PinAuto, false, PinRefuse, true, false},
		{"mount without the host's filesystem", PinMount, false, "", false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pn := newPinner(tc.want, filepath.Join(t.TempDir(), "pins"), "", nil, nil, log)
			why, err := pn.setup(tc.want, tc.hostFS)
			if (err != nil) != tc.err {
				t.Fatalf("setup err = %v", err)
			}
			if err != nil {
				return
			}
			if pn.mode != tc.mode || (why != "") != tc.fallback {
				t.Fatalf("mode %q, reason %q", pn.mode, why)
			}
		})
	}
}
