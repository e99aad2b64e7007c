package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestBindRefusalsTellNothingOfTheHost: through the real docker CLI, a
// tenant cannot learn about the broker's host from bind refusals. Sources
// outside the socket's bind roots answer alike whether they are a file, a
// link (into /proc/self: the broker's working directory) or missing; a
// link under the root that leads out is refused without naming its target;
// a source above the daemon socket does not name the socket.
func TestBindRefusalsTellNothingOfTheHost(t *testing.T) {
	b := StartBroker(t)
	work := filepath.Join(b.Dir, "work")
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/proc/self/cwd", filepath.Join(work, "cwd")); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(b.Dir, "a-file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	b.CreateSocket(t, "oracle", "github-actions-runner", "--allow-bind", work)
	// The request id differs per answer.
	reqID := regexp.MustCompile(`request [0-9a-z-]+`)
	refusal := func(src string) string {
		t.Helper()
		r := b.Docker("oracle", "create", "--network", "none", "-v", src+":/x:ro", testImage, "true")
		out := r.Combined()
		if r.Code == 0 || !strings.Contains(out, "sockguard: denied by policy") {
			t.Fatalf("%s: want a refusal: %s", src, r)
		}
		return reqID.ReplaceAllString(strings.ReplaceAll(out, src, "SRC"), "request ID")
	}
	first := refusal(file + "/x") // a file: it cannot be resolved through
	for _, src := range []string{filepath.Join(b.Dir, "missing") + "/x", "/proc/self/cwd", "/etc/mtab"} {
		if got := refusal(src); got != first {
			t.Errorf("%s answers unlike a file below a file:\n%s\n%s", src, got, first)
		}
	}
	cwd := refusal(filepath.Join(work, "cwd"))
	if wd, _ := os.Getwd(); strings.Contains(cwd, wd) || strings.Contains(cwd, "/proc/") {
		t.Errorf("a link to /proc/self/cwd names its target: %s", cwd)
	}
	daemon := strings.TrimPrefix(suite.upstream, "unix://")
	if above := refusal(filepath.Dir(daemon)); strings.Contains(above, daemon) {
		t.Errorf("a source above the daemon socket names it: %s", above)
	}
}
