package broker

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sockguard/sockguard/broker/isolation"
	"github.com/sockguard/sockguard/policy"
	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
	"google.golang.org/protobuf/encoding/prototext"
)

// TestCheckRequestIsNoHostOracle: a CheckRequest caller (viewer role)
// cannot tell from the answer whether a host path outside the socket's
// bind roots exists, is a file or is a link. Each pair of sources differs
// only in what is on the host; with the source's own text taken out, the
// two answers must be the same. The audit socket reaches bind pins (in
// root-owned mode they would read every component of the path).
func TestCheckRequestIsNoHostOracle(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	cat, err := policy.BuiltinCatalog()
	if err != nil {
		t.Fatal(err)
	}
	pre, err := cat.Get("github-actions-runner")
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.NewPolicy(pre, policy.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, mode := range []pinMode{PinMount, PinRootOwned} {
		var calls atomic.Int64
		up := tripwireDaemon(t, &calls)
		reg := &Registry{tenants: map[string]*tenantServer{}, proxy: &Proxy{up: up, owners: isolation.NewOwnerCache(64), log: log, resolveBinds: true,
			pins: newPinner(mode, t.TempDir(), "", nil, up, log)}}
		reg.catalog.Store(cat)
		ts := &tenantServer{}
		ts.state.Store(&tenantState{t: &Tenant{Name: "aud", ID: "t-aud", Mode: ModeAudit}, pol: pol})
		reg.tenants["aud"] = ts
		svc := &service{b: &Broker{reg: reg}}
		pairs := [][2]string{
			{file + "/x", missing + "/x"},         // a file cannot be resolved through
			{link, missing},                       // a link is followed
			{"/etc", "/sockguard-attack-missing"}, // root-owned mode reads each component
		}
		for _, target := range []*sockguardv1.CheckRequestRequest{{Preset: "github-actions-runner"}, {Socket: "aud"}} {
			for _, pair := range pairs {
				var answers [2]string
				for i, src := range pair {
					req := &sockguardv1.CheckRequestRequest{Preset: target.GetPreset(), Socket: target.GetSocket(), Method: "POST", Target: "/containers/create",
						Body: []byte(`{"Image":"busybox","HostConfig":{"Binds":["` + src + `:/x:ro"]}}`)}
					resp, err := svc.CheckRequest(context.Background(), req)
					if err != nil {
						t.Fatal(err)
					}
					answers[i] = strings.ReplaceAll(prototext.Format(resp), src, "SRC")
				}
				if answers[0] != answers[1] {
					t.Errorf("pins %s, %s: the answers for %s and %s differ:\n%s\n----\n%s", mode, target, pair[0], pair[1], answers[0], answers[1])
				}
			}
		}
		if n := calls.Load(); n != 0 {
			t.Errorf("CheckRequest sent %d requests to the daemon", n)
		}
	}
}
