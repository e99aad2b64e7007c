package e2e

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Bind pins (issue 8, class 2): what a container gets mounted is what the
// broker judged at create, whatever the tenant does under its bind roots
// afterwards. Every swap below would hand the container the host's root
// directory if dockerd followed the path again.

// mountPoints lists the mount points of this mount namespace at or under
// dir (mountinfo's octal escapes decoded).
func mountPoints(t testing.TB, dir string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out
}

func unescapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountUnder detaches every mount at or under dir, deepest first, so a
// test's RemoveAll never walks into a bind pin (and so into the files it
// pins).
//
// It reports whether nothing is mounted under dir any more. A caller must
// not remove dir recursively otherwise: a pin is a read-write bind mount
// of a host path (in audit mode any path a tenant named, /etc included),
// and a recursive removal would delete the host's files through it.
func unmountUnder(t testing.TB, dir string) bool {
	mps := mountPoints(t, dir)
	slices.SortFunc(mps, func(a, b string) int { return len(b) - len(a) })
	for _, mp := range mps {
		if err := syscall.Unmount(mp, syscall.MNT_DETACH); err != nil {
			t.Logf("unmounting %s: %v", mp, err)
		}
	}
	if left := mountPoints(t, dir); len(left) > 0 {
		t.Errorf("still mounted under %s, not removing it: %v", dir, left)
		return false
	}
	return true
}

// isPinOf reports whether pin is a bind pin of src: the same file.
func isPinOf(pin, src string) bool {
	a, err1 := os.Stat(pin)
	b, err2 := os.Stat(src)
	return err1 == nil && err2 == nil && strings.Contains(pin, "/pins/") && os.SameFile(a, b)
}

// pinDir is where this broker keeps its pins.
func (b *Broker) pinDir() string { return filepath.Join(b.StateDir, "pins") }

// pinMounts are the pin mounts (not the pin directory's own) now mounted.
func (b *Broker) pinMounts(t testing.TB) []string {
	var out []string
	for _, mp := range mountPoints(t, b.pinDir()) {
		if mp != b.pinDir() {
			out = append(out, mp)
		}
	}
	return out
}

// pinEntries are the pin directories (tenant/pin) on disk.
func (b *Broker) pinEntries(t testing.TB) []string {
	var out []string
	tenants, _ := os.ReadDir(b.pinDir())
	for _, tn := range tenants {
		pins, _ := os.ReadDir(filepath.Join(b.pinDir(), tn.Name()))
		for _, p := range pins {
			out = append(out, tn.Name()+"/"+p.Name())
		}
	}
	return out
}

// waitNoPins waits for every pin to be swept.
func (b *Broker) waitNoPins(t testing.TB, what string) {
	t.Helper()
	if !waitFor(20*time.Second, func() bool { return len(b.pinMounts(t)) == 0 && len(b.pinEntries(t)) == 0 }) {
		t.Fatalf("%s: pins left: mounts %v, dirs %v", what, b.pinMounts(t), b.pinEntries(t))
	}
}

// swapDir replaces dir by a symlink to target; the returned func puts the
// directory back.
func swapDir(t testing.TB, dir, target string) (restore func()) {
	t.Helper()
	aside := dir + ".aside"
	if err := os.Rename(dir, aside); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, dir); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.Remove(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(aside, dir); err != nil {
			t.Fatal(err)
		}
	}
}

// pinWork makes work/<name> with a marker file saying "orig".
func pinWork(t testing.TB, work string, name ...string) string {
	t.Helper()
	d := filepath.Join(append([]string{work}, name...)...)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "marker"), []byte("orig\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return d
}

func startPinBroker(t *testing.T, extra ...string) *Broker {
	t.Helper()
	b := NewBroker(t)
	b.ExtraArgs = append([]string{"--pin-sweep-interval", "1s"}, extra...)
	b.Start()
	return b
}

func TestBindPinSwaps(t *testing.T) {
	b := startPinBroker(t)
	work := filepath.Join(b.Dir, "work")
	b.CreateSocket(t, "pin", "github-actions-runner", "--allow-bind", work)
	cleanupNewContainers(t)
	docker := func(args ...string) Result { return b.Docker("pin", args...) }
	if !b.waitLog("msg=bind_pins mode=mount") {
		t.Fatalf("broker did not pin by mounting:\n%s", b.Log())
	}

	create := func(t *testing.T, src string, args ...string) string {
		name := objectName(t, "c")
		cleanupUpstream(t, "container", name)
		a := append([]string{"create", "--name", name, "--network", "none", "-v", src + ":/x"}, args...)
		a = append(a, testImage, "cat", "/x/marker")
		docker(a...).MustSucceed(t)
		return name
	}
	startOut := func(t *testing.T, name string) string {
		t.Helper()
		r := docker("start", "-a", name)
		return strings.TrimSpace(r.Combined())
	}

	t.Run("dir swapped between create and start", func(t *testing.T) {
		src := pinWork(t, work, "a")
		name := create(t, src)
		defer swapDir(t, src, "/")()
		if out := startOut(t, name); out != "orig" {
			t.Fatalf("container saw %q, want the original directory", out)
		}
	})

	t.Run("--mount bind swapped between create and start", func(t *testing.T) {
		src := pinWork(t, work, "m")
		name := objectName(t, "c")
		cleanupUpstream(t, "container", name)
		docker("create", "--name", name, "--network", "none", "--mount", "type=bind,src="+src+",dst=/x",
			testImage, "cat", "/x/marker").MustSucceed(t)
		defer swapDir(t, src, "/")()
		if out := startOut(t, name); out != "orig" {
			t.Fatalf("container saw %q, want the original directory", out)
		}
	})

	t.Run("parent swapped between create and start", func(t *testing.T) {
		// work/p/etc is judged; work/p -> / would make it the host's /etc.
		src := pinWork(t, work, "p", "etc")
		name := create(t, src)
		defer swapDir(t, filepath.Join(work, "p"), "/")()
		if out := startOut(t, name); out != "orig" {
			t.Fatalf("container saw %q, want the original directory", out)
		}
	})

	t.Run("dir swapped between two starts", func(t *testing.T) {
		src := pinWork(t, work, "b")
		name := create(t, src)
		if out := startOut(t, name); out != "orig" {
			t.Fatalf("first start: %q", out)
		}
		defer swapDir(t, src, "/")()
		if out := startOut(t, name); out != "orig" {
			t.Fatalf("second start after the swap saw %q", out)
		}
	})

	t.Run("file bind swapped", func(t *testing.T) {
		src := pinWork(t, work, "f")
		name := objectName(t, "c")
		cleanupUpstream(t, "container", name)
		docker("create", "--name", name, "--network", "none", "-v", filepath.Join(src, "marker")+":/m:ro",
			testImage, "cat", "/m").MustSucceed(t)
		if err := os.Rename(filepath.Join(src, "marker"), filepath.Join(src, "marker.aside")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("/etc/hostname", filepath.Join(src, "marker")); err != nil {
			t.Fatal(err)
		}
		if out := startOut(t, name); out != "orig" {
			t.Fatalf("container saw %q, want the original file", out)
		}
	})

	t.Run("swapper races repeated starts", func(t *testing.T) {
		src := pinWork(t, work, "race")
		name := create(t, src)
		stop := make(chan struct{})
		var swaps atomic.Int64
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			aside := src + ".aside"
			for {
				select {
				case <-stop:
					return
				default:
				}
				// Errors are ignored on purpose: the loop only has to keep
				// the path flipping while the starts run.
				if os.Rename(src, aside) == nil {
					_ = os.Symlink("/", src)
					swaps.Add(1)
					time.Sleep(time.Millisecond)
					os.Remove(src)
					_ = os.Rename(aside, src)
				}
			}
		}()
		defer func() { close(stop); wg.Wait() }()
		for i := range 50 {
			if out := startOut(t, name); out != "orig" {
				t.Fatalf("start %d saw %q", i, out)
			}
		}
		// Creates race the swapper too: each is refused (the link was
		// seen) or gets the original directory, never the host's root.
		// (A create that lands while the directory is moved aside gets an
		// empty directory made in its place, as dockerd would make one.)
		for i := range 10 {
			r := docker("run", "--rm", "--network", "none", "-v", src+":/x", testImage,
				"sh", "-c", "if [ -e /x/proc ] || [ -e /x/etc ]; then echo HOSTROOT; fi; cat /x/marker")
			out := strings.TrimSpace(r.Stdout)
			switch {
			case strings.Contains(r.Combined(), "HOSTROOT"):
				t.Fatalf("run %d under the swapper got the host's root: %s", i, r)
			case r.Code == 0 && out == "orig":
			case r.Code != 0 && strings.Contains(r.Stderr, "sockguard: denied by policy"):
			case r.Code != 0 && strings.Contains(r.Stderr, "No such file"):
			default:
				t.Fatalf("run %d under the swapper: %s", i, r)
			}
		}
		if swaps.Load() == 0 {
			t.Fatal("the swapper never swapped")
		}
	})

	t.Run("restart policy while swapped", func(t *testing.T) {
		src := pinWork(t, work, "rs")
		name := objectName(t, "c")
		cleanupUpstream(t, "container", name)
		docker("run", "-d", "--name", name, "--network", "none", "--restart", "always", "-v", src+":/x",
			testImage, "sh", "-c", "cat /x/marker; sleep 0.2").MustSucceed(t)
		restarts := func() int {
			n, _ := strconv.Atoi(strings.TrimSpace(upstreamInspect(t, "container", "{{.RestartCount}}", name)))
			return n
		}
		if !waitFor(30*time.Second, func() bool { return restarts() >= 1 }) {
			t.Fatal("the container never restarted")
		}
		restore := swapDir(t, src, "/")
		n := restarts()
		ok := waitFor(60*time.Second, func() bool { return restarts() >= n+2 })
		upstreamDocker("update", "--restart", "no", name)
		restore()
		if !ok {
			t.Fatal("dockerd did not restart the container while the swap was in place")
		}
		logs := docker("logs", name).MustSucceed(t)
		for _, l := range lines(logs.Combined()) {
			if l != "orig" {
				t.Fatalf("a restart saw %q; logs:\n%s", l, logs)
			}
		}
	})
}

func TestBindPinCleanup(t *testing.T) {
	b := startPinBroker(t)
	work := filepath.Join(b.Dir, "work")
	src := pinWork(t, work, "d")
	b.CreateSocket(t, "pc", "github-actions-runner", "--allow-bind", work)
	cleanupNewContainers(t)
	docker := func(args ...string) Result { return b.Docker("pc", args...) }
	created := func(t *testing.T) string {
		t.Helper()
		name := objectName(t, "c")
		cleanupUpstream(t, "container", name)
		docker("create", "--name", name, "--network", "none", "-v", src+":/x", "-v", src+":/y:ro",
			testImage, "true").MustSucceed(t)
		if n := len(b.pinMounts(t)); n != 2 {
			t.Fatalf("want 2 pin mounts after create, have %v", b.pinMounts(t))
		}
		return name
	}

	t.Run("docker rm", func(t *testing.T) {
		name := created(t)
		docker("rm", name).MustSucceed(t)
		b.waitNoPins(t, "after docker rm")
	})
	t.Run("docker run --rm", func(t *testing.T) {
		r := docker("run", "--rm", "--network", "none", "-v", src+":/x", testImage, "cat", "/x/marker").MustSucceed(t)
		if strings.TrimSpace(r.Stdout) != "orig" {
			t.Fatalf("run: %s", r)
		}
		b.waitNoPins(t, "after docker run --rm")
	})
	t.Run("removed behind the broker's back", func(t *testing.T) {
		name := created(t)
		upstreamDocker("rm", name).MustSucceed(t)
		b.waitNoPins(t, "after a removal on the daemon (periodic sweep)")
	})
	t.Run("failed create", func(t *testing.T) {
		r := docker("create", "--network", "none", "-v", src+":/x", "sg-no-such-image:never", "true")
		r.MustFail(t)
		b.waitNoPins(t, "after a failed create")
	})
	t.Run("tenant label cannot keep pins", func(t *testing.T) {
		name := created(t)
		keep := upstreamInspect(t, "container", `{{index .Config.Labels "io.sockguard.pin"}}`, name)
		if strings.TrimSpace(keep) == "" {
			t.Fatal("the created container has no pin label")
		}
		// A second container claiming the first one's pin id gets its
		// own label instead.
		other := objectName(t, "c")
		cleanupUpstream(t, "container", other)
		docker("create", "--name", other, "--network", "none", "--label", "io.sockguard.pin="+strings.TrimSpace(keep),
			testImage, "true").MustSucceed(t)
		if got := strings.TrimSpace(upstreamInspect(t, "container", `{{index .Config.Labels "io.sockguard.pin"}}`, other)); got != "" {
			t.Fatalf("the tenant's pin label survived: %q", got)
		}
		docker("rm", name).MustSucceed(t)
		b.waitNoPins(t, "after removing the pinned container")
	})
	t.Run("image label cannot keep pins", func(t *testing.T) {
		// Pin ids are public (the host's mountinfo lists every pin), and
		// dockerd gives a container its image's labels where the create
		// sets none: an image labelled with another container's pin id
		// (pulled from any registry; built upstream here) must not keep
		// that pin alive.
		name := created(t)
		keep := strings.TrimSpace(upstreamInspect(t, "container", `{{index .Config.Labels "io.sockguard.pin"}}`, name))
		if keep == "" {
			t.Fatal("the created container has no pin label")
		}
		ctx := t.TempDir()
		if err := os.WriteFile(filepath.Join(ctx, "Dockerfile"), []byte("FROM "+testImage+"\nLABEL io.sockguard.pin="+keep+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		img := objectName(t, "img")
		cleanupUpstream(t, "image", img)
		upstreamDocker("build", "-q", "-t", img, ctx).MustSucceed(t)
		other := objectName(t, "c")
		cleanupUpstream(t, "container", other)
		docker("create", "--name", other, "--network", "none", img, "true").MustSucceed(t)
		if got := strings.TrimSpace(upstreamInspect(t, "container", `{{index .Config.Labels "io.sockguard.pin"}}`, other)); got != "" {
			t.Fatalf("the container took its image's pin label: %q", got)
		}
		docker("rm", name).MustSucceed(t)
		b.waitNoPins(t, "after removing the pinned container")
	})
	t.Run("volumes-from keeps the source's pins", func(t *testing.T) {
		a := created(t)
		b2 := objectName(t, "c")
		cleanupUpstream(t, "container", b2)
		docker("create", "--name", b2, "--network", "none", "--volumes-from", a, testImage, "cat", "/x/marker").MustSucceed(t)
		docker("rm", a).MustSucceed(t)
		time.Sleep(2 * time.Second) // several sweep intervals
		if len(b.pinMounts(t)) != 2 {
			t.Fatalf("pins a --volumes-from container mounts were swept: %v", b.pinMounts(t))
		}
		if r := docker("start", "-a", b2).MustSucceed(t); strings.TrimSpace(r.Stdout) != "orig" {
			t.Fatalf("the --volumes-from container saw %s", r)
		}
		docker("rm", b2).MustSucceed(t)
		b.waitNoPins(t, "after removing both")
	})
	t.Run("broker restart", func(t *testing.T) {
		name := created(t)
		b.Stop()
		upstreamDocker("rm", name).MustSucceed(t)
		if len(b.pinMounts(t)) != 2 {
			t.Fatalf("pins must outlive the broker (restart policies need them): %v", b.pinMounts(t))
		}
		b.Start()
		b.waitNoPins(t, "after a broker restart")
	})
	t.Run("pins outlive a broker restart while the container exists", func(t *testing.T) {
		name := created(t)
		b.Restart()
		time.Sleep(2 * time.Second) // several sweep intervals
		if len(b.pinMounts(t)) != 2 {
			t.Fatalf("a pin of an existing container was swept: %v", b.pinMounts(t))
		}
		r := docker("start", "-a", name).MustSucceed(t)
		_ = r
		docker("rm", name).MustSucceed(t)
		b.waitNoPins(t, "after docker rm")
	})
	t.Run("delete-socket --purge", func(t *testing.T) {
		b.CreateSocket(t, "pc2", "github-actions-runner", "--allow-bind", work)
		name := objectName(t, "c")
		cleanupUpstream(t, "container", name)
		b.Docker("pc2", "run", "-d", "--name", name, "--network", "none", "-v", src+":/x", testImage, "sleep", "300").MustSucceed(t)
		if len(b.pinMounts(t)) != 1 {
			t.Fatalf("want 1 pin mount, have %v", b.pinMounts(t))
		}
		b.Sgctl("delete-socket", "pc2", "--purge").MustSucceed(t)
		if m, d := b.pinMounts(t), b.pinEntries(t); len(m)+len(d) != 0 {
			t.Fatalf("purge left pins: mounts %v, dirs %v", m, d)
		}
	})
}

// TestBindPinFallback: where the broker does not pin by mounting, it says
// so and applies the root-owned rule; refuse mode allows no host bind.
func TestBindPinFallback(t *testing.T) {
	t.Run("root-owned", func(t *testing.T) {
		b := startPinBroker(t, "--bind-pins", "root-owned")
		if !b.waitLog("msg=bind_pins mode=root-owned") {
			t.Fatalf("mode not logged:\n%s", b.Log())
		}
		work := filepath.Join(b.Dir, "work") // under /tmp: world-writable
		pinWork(t, work, "d")
		// A root-owned chain that nobody else may write.
		safe := "/usr/share"
		b.CreateSocket(t, "ro", "github-actions-runner", "--allow-bind", work, "--allow-bind", safe+":ro")
		cleanupNewContainers(t)
		docker := func(args ...string) Result { return b.Docker("ro", args...) }

		r := docker("run", "--rm", "--network", "none", "-v", work+"/d:/x:ro", testImage, "true").MustFail(t)
		if !strings.Contains(r.Stderr, "not owned by root or is writable by group or others") {
			t.Fatalf("want the root-owned refusal: %s", r)
		}
		r = docker("run", "--rm", "--network", "none", "-v", work+"/d:/x", testImage, "true").MustFail(t)
		if !strings.Contains(r.Stderr, "bind it read-only") {
			t.Fatalf("want the read-only refusal: %s", r)
		}
		docker("run", "--rm", "--network", "none", "-v", safe+":/x:ro", testImage, "ls", "/x").MustSucceed(t)
		docker("run", "--rm", "--network", "none", "-v", "/var/run/docker.sock:/var/run/docker.sock",
			testImage, "test", "-S", "/var/run/docker.sock").MustSucceed(t)
		if m := b.pinMounts(t); len(m) != 0 {
			t.Fatalf("root-owned mode mounted pins: %v", m)
		}
	})
	t.Run("refuse", func(t *testing.T) {
		b := startPinBroker(t, "--bind-pins", "refuse")
		work := filepath.Join(b.Dir, "work")
		pinWork(t, work, "d")
		b.CreateSocket(t, "rf", "github-actions-runner", "--allow-bind", work)
		cleanupNewContainers(t)
		r := b.Docker("rf", "run", "--rm", "--network", "none", "-v", work+"/d:/x:ro", testImage, "true").MustFail(t)
		if !strings.Contains(r.Stderr, "host binds are refused") {
			t.Fatalf("want the refusal: %s", r)
		}
		b.Docker("rf", "run", "--rm", "--network", "none", "-v", "/var/run/docker.sock:/var/run/docker.sock",
			testImage, "test", "-S", "/var/run/docker.sock").MustSucceed(t)
	})
}

// TestBrokerOwnPaths (issue 8, class 5): no bind root and no bind may reach
// the broker's admin socket, socket directory, state directory (pins
// included) or the daemon socket; the docker.sock rewrite is the one
// exception.
func TestBrokerOwnPaths(t *testing.T) {
	b := startPinBroker(t)
	work := filepath.Join(b.Dir, "work")
	pinWork(t, work, "d")
	up := strings.TrimPrefix(suite.upstream, "unix://")

	for _, root := range []string{b.StateDir, b.SocketDir, "/", b.Dir, filepath.Join(b.StateDir, "pins"),
		filepath.Join(b.SocketDir, "x"), filepath.Dir(b.AdminSocket), filepath.Dir(up)} {
		r := b.Sgctl("create-socket", "bad", "--preset", "github-actions-runner", "--allow-bind", root)
		if r.Code == 0 {
			t.Fatalf("create-socket with --allow-bind %s succeeded", root)
		}
		if !containsAny(r.Stderr, "broker's own path", "daemon socket", "every host path") {
			t.Errorf("--allow-bind %s: unclear refusal: %s", root, r)
		}
	}
	// The host's kernel interfaces and the engine's own state are never
	// bind roots (a careless operator's --allow-bind /proc hands out the host).
	for _, root := range []string{"/proc", "/sys", "/dev", "/proc/1/root", "/sys/fs/cgroup", "/var/lib/docker", "/var/lib", "/run/containerd"} {
		r := b.Sgctl("create-socket", "bad", "--preset", "github-actions-runner", "--allow-bind", root+":ro")
		if r.Code == 0 {
			t.Fatalf("create-socket with --allow-bind %s succeeded", root)
		}
		if !containsAny(r.Stderr, "host system path", "kernel's", "broker's own path", "daemon socket") {
			t.Errorf("--allow-bind %s: unclear refusal: %s", root, r)
		}
	}
	// A root that is a symlink to the state directory is judged by its real path.
	link := filepath.Join(work, "to-state")
	if err := os.Symlink(b.StateDir, link); err != nil {
		t.Fatal(err)
	}
	if r := b.Sgctl("create-socket", "bad", "--preset", "github-actions-runner", "--allow-bind", link); r.Code == 0 {
		t.Fatal("create-socket with a bind root linking to the state dir succeeded")
	}
	if names := b.socketNames(t); slices.Contains(names, "bad") {
		t.Fatalf("a refused create-socket left a socket: %v", names)
	}

	b.CreateSocket(t, "own", "github-actions-runner", "--allow-bind", work)
	binds := func() string {
		var v struct {
			Socket struct {
				Overrides json.RawMessage `json:"overrides"`
			} `json:"socket"`
		}
		b.SgctlJSON(t, &v, "inspect-socket", "own")
		return string(v.Socket.Overrides)
	}
	before := binds()
	if !strings.Contains(before, work) {
		t.Fatalf("inspect-socket does not show the bind root: %s", before)
	}
	if r := b.Sgctl("update-socket", "own", "--allow-bind", b.StateDir); r.Code == 0 || !strings.Contains(r.Stderr, "broker's own path") {
		t.Fatalf("update-socket to the state dir: %s", r)
	}
	if after := binds(); after != before {
		t.Fatalf("a refused update changed the socket: %s -> %s", before, after)
	}

	cleanupNewContainers(t)
	// Links under the allowed root to each of the broker's paths: the
	// real path is judged and refused. (A bind of the daemon socket is
	// rewritten to the tenant's own: runner_test covers it.)
	for i, target := range []string{b.AdminSocket, b.StateDir, filepath.Join(b.StateDir, "pins"), b.SocketDir,
		filepath.Join(b.SocketDir, "own"), filepath.Dir(up)} {
		l := filepath.Join(work, "l"+strconv.Itoa(i))
		if err := os.Symlink(target, l); err != nil {
			t.Fatal(err)
		}
		for _, src := range []string{l, target} {
			r := b.Docker("own", "create", "--network", "none", "-v", src+":/x", testImage, "true")
			if r.Code == 0 || !strings.Contains(r.Stderr, "sockguard: denied by policy") {
				t.Errorf("bind of %s (-> %s) not refused: %s", src, target, r)
			}
		}
	}
	// The one exception: docker.sock becomes the tenant's own socket.
	b.Docker("own", "run", "--rm", "--network", "none", "-v", "/var/run/docker.sock:/var/run/docker.sock",
		testImage, "test", "-S", "/var/run/docker.sock").MustSucceed(t)

	// Audit mode relaxes the policy, never this.
	b.CreateSocket(t, "aud", "github-actions-runner", "--allow-bind", work, "--policy-mode", "audit")
	r := b.Docker("aud", "create", "--network", "none", "-v", b.AdminSocket+":/admin.sock", testImage, "true")
	if r.Code == 0 {
		t.Fatalf("an audit socket bound the admin socket: %s", r)
	}
}
