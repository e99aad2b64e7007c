package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"unicode/utf8"

	"github.com/sockguard/sockguard/broker/docker"
	"github.com/sockguard/sockguard/broker/isolation"
	"github.com/sockguard/sockguard/broker/pipeline"
	"github.com/sockguard/sockguard/policy"
	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
)

// tripwireDaemon is a daemon that counts every request it gets: a dry run
// must send it none.
func tripwireDaemon(t *testing.T, calls *atomic.Int64) *docker.Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "d.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	up, err := docker.New("unix://"+sock, nil)
	if err != nil {
		t.Fatal(err)
	}
	return up
}

// TestDryRunStages: each dry stage judges what it can offline, lists what
// it cannot, and creates, mounts or remembers nothing.
func TestDryRunStages(t *testing.T) {
	ctx := context.Background()
	guarded := t.TempDir()
	tenant := &Tenant{ID: "t-a", Name: "a"}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	// The tripwire trips: the live stages on the same proxy do ask.
	var live atomic.Int64
	lp := &Proxy{up: tripwireDaemon(t, &live), owners: isolation.NewOwnerCache(64), log: log}
	if _, err := lp.stages(tenant).Owners.Resolve(ctx, policy.ObjectContainer, "web"); err == nil || live.Load() == 0 {
		t.Fatalf("live Resolve: err %v after %d daemon requests; the tripwire does not work", err, live.Load())
	}
	tests := []struct {
		name    string
		run     func(p *Proxy, notes *dryNotes) error
		unknown bool   // the error wraps pipeline.ErrUnknown
		refusal bool   // the error is a *pipeline.Refusal
		missing bool   // the error is a *pipeline.Missing
		notes   string // a note that must be listed
	}{
		{name: "path object", unknown: true, run: func(p *Proxy, n *dryNotes) error {
			_, err := p.dryStages(tenant, n).Owners.Resolve(ctx, policy.ObjectContainer, "web")
			return err
		}},
		{name: "path object that names nothing", missing: true, run: func(p *Proxy, n *dryNotes) error {
			_, err := p.dryStages(tenant, n).Owners.Resolve(ctx, policy.ObjectContainer, "a?b")
			return err
		}},
		{name: "body references", notes: `whether network "ci-net" exists`, run: func(p *Proxy, n *dryNotes) error {
			req := mustCanonical(t, "POST", "/containers/create")
			body, vols, err := p.dryStages(tenant, n).Owners.IsolateBody(ctx, req,
				[]byte(`{"Image":"x","HostConfig":{"NetworkMode":"ci-net","Binds":["cache:/c"]}}`))
			if err == nil && (!strings.Contains(string(body), `"`+isolation.OwnerLabel+`":"t-a"`) || len(vols) != 0) {
				return fmt.Errorf("body %s, volumes %v: want the owner stamped and no volume to create", body, vols)
			}
			if err == nil && !strings.Contains(strings.Join(n.list, "\n"), `whether volume "cache" exists`) {
				return fmt.Errorf("notes %q lack the volume", n.list)
			}
			return err
		}},
		{name: "list filter reference", notes: `whether container "web" exists`, run: func(p *Proxy, n *dryNotes) error {
			req := mustCanonical(t, "GET", "/containers/json", `filters={"ancestor":["x"],"before":["web"]}`)
			_, err := p.dryStages(tenant, n).Owners.IsolateQuery(ctx, req)
			return err
		}},
		{name: "volume create name", notes: `whether volume "v1" exists`, run: func(p *Proxy, n *dryNotes) error {
			req := mustCanonical(t, "POST", "/volumes/create")
			_, _, err := p.dryStages(tenant, n).Owners.IsolateBody(ctx, req, []byte(`{"Name":"v1"}`))
			return err
		}},
		{name: "ambiguous body is known offline", refusal: true, run: func(p *Proxy, n *dryNotes) error {
			req := mustCanonical(t, "POST", "/containers/x/start")
			_, _, err := p.dryStages(tenant, n).Owners.IsolateBody(ctx, req, []byte(`{"HostConfig":{}}`))
			return err
		}},
		{name: "volumes are not created", run: func(p *Proxy, n *dryNotes) error {
			return p.dryStages(tenant, n).Owners.CreateVolumes(ctx, []pipeline.Volume{{Name: "v"}})
		}},
		{name: "image", unknown: true, run: func(p *Proxy, n *dryNotes) error {
			_, err := p.dryStages(tenant, n).Images.CheckCreate(ctx, []byte(`{"Image":"private/app:1"}`))
			return err
		}},
		{name: "pull of every tag with credentials", refusal: true, run: func(p *Proxy, n *dryNotes) error {
			req := mustCanonical(t, "POST", "/images/create", "fromImage=busybox")
			_, err := p.dryStages(tenant, n).Images.BeginPull(ctx, req, http.Header{"X-Registry-Auth": {"eyJ1c2VybmFtZSI6InUifQ=="}})
			return err
		}},
		{name: "anonymous pull", run: func(p *Proxy, n *dryNotes) error {
			req := mustCanonical(t, "POST", "/images/create", "fromImage=busybox&tag=1")
			pull, err := p.dryStages(tenant, n).Images.BeginPull(ctx, req, http.Header{})
			if pull != nil {
				return errors.New("a dry run prepared a pull")
			}
			return err
		}},
		{name: "bind of a broker path", refusal: true, run: func(p *Proxy, n *dryNotes) error {
			_, _, err := p.dryStages(tenant, n).Pins.Prepare(ctx, []byte(`{"HostConfig":{"Binds":["`+guarded+`/x:/x"]}}`))
			return err
		}},
		{name: "bind in mount mode", notes: `whether host path "/srv/work" can be pinned`, run: func(p *Proxy, n *dryNotes) error {
			out, id, err := p.dryStages(tenant, n).Pins.Prepare(ctx, []byte(`{"HostConfig":{"Binds":["/srv/work:/w"]}}`))
			if id != "" || strings.Contains(string(out), pinLabel) {
				return fmt.Errorf("pinned: id %q, body %s", id, out)
			}
			return err
		}},
		{name: "registry host", unknown: true, run: func(p *Proxy, n *dryNotes) error {
			_, err := p.dryStages(tenant, n).Registries.LookupIPAddr(ctx, "registry.example")
			return err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int64
			up := tripwireDaemon(t, &calls)
			p := &Proxy{up: up, owners: isolation.NewOwnerCache(64), log: log,
				images: newImageGuard(up, nil, log),
				pins:   newPinner(PinMount, t.TempDir(), "", []string{guarded}, up, log)}
			notes := &dryNotes{}
			err := tc.run(p, notes)
			var rf *pipeline.Refusal
			var miss *pipeline.Missing
			switch {
			case tc.unknown && !errors.Is(err, pipeline.ErrUnknown):
				t.Errorf("err = %v, want an unknown", err)
			case tc.refusal && !errors.As(err, &rf):
				t.Errorf("err = %v, want a refusal", err)
			case tc.missing && !errors.As(err, &miss):
				t.Errorf("err = %v, want a missing object", err)
			case !tc.unknown && !tc.refusal && !tc.missing && err != nil:
				t.Errorf("err = %v", err)
			}
			if tc.notes != "" && !strings.Contains(strings.Join(notes.list, "\n"), tc.notes) {
				t.Errorf("notes %q lack %q", notes.list, tc.notes)
			}
			if n := calls.Load(); n != 0 {
				t.Errorf("the dry run sent %d requests to the daemon", n)
			}
			if n := p.owners.Len(); n != 0 {
				t.Errorf("the dry run left %d entries in the owner cache", n)
			}
		})
	}
}

// TestDryNotesBounded: the unknown list keeps at most maxDryUnknown
// entries of at most maxDryUnknownLen bytes, without repeats, and says
// that it left some out.
func TestDryNotesBounded(t *testing.T) {
	n := &dryNotes{}
	for i := range 3 * maxDryUnknown {
		n.add(fmt.Sprintf("note %d %s", i, strings.Repeat("é", 400)))
		n.add(fmt.Sprintf("note %d %s", i, strings.Repeat("é", 400))) // a repeat
	}
	got := n.merge([]string{"first"})
	if len(got) != maxDryUnknown || got[0] != "first" || !strings.HasPrefix(got[len(got)-1], "... and ") {
		t.Fatalf("%d notes, first %q, last %q", len(got), got[0], got[len(got)-1])
	}
	if got[len(got)-1] != "... and more, not listed" {
		t.Errorf("last note %q", got[len(got)-1])
	}
	for _, s := range got {
		if len(s) > maxDryUnknownLen || !utf8.ValidString(s) {
			t.Errorf("note of %d bytes (or split character): %q", len(s), s)
		}
	}
}

func mustCanonical(t *testing.T, method, path string, query ...string) policy.Request {
	t.Helper()
	req, err := policy.Canonicalize(method, path, strings.Join(query, "&"))
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// TestCheckRequest: the service's dry run judges with the socket's policy
// and mode, the real headers and the live stages' order; it lists what it
// could not know, never contacts the daemon, and never answers with a
// header value.
func TestCheckRequest(t *testing.T) {
	const secret = "eyJwYXNzd29yZCI6ImRyeXJ1bi1zZWNyZXQifQ=="
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
	var calls atomic.Int64
	up := tripwireDaemon(t, &calls)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := &Registry{tenants: map[string]*tenantServer{}, proxy: &Proxy{up: up, owners: isolation.NewOwnerCache(64), log: log, images: newImageGuard(up, nil, log)}}
	reg.catalog.Store(cat)
	for name, mode := range map[string]Mode{"enf": ModeEnforce, "aud": ModeAudit} {
		ts := &tenantServer{}
		ts.state.Store(&tenantState{t: &Tenant{Name: name, ID: "t-" + name, Mode: mode}, pol: pol})
		reg.tenants[name] = ts
	}
	svc := &service{b: &Broker{reg: reg}}

	priv := []byte(`{"Image":"busybox","HostConfig":{"Privileged":true}}`)
	h := func(kv ...string) []*sockguardv1.CheckHeader {
		var out []*sockguardv1.CheckHeader
		for i := 0; i < len(kv); i += 2 {
			out = append(out, &sockguardv1.CheckHeader{Name: kv[i], Value: kv[i+1]})
		}
		return out
	}
	many := make([]*sockguardv1.CheckHeader, maxCheckHeaders+1)
	for i := range many {
		many[i] = &sockguardv1.CheckHeader{Name: "X-A", Value: "1"}
	}
	tests := []struct {
		name    string
		req     *sockguardv1.CheckRequestRequest
		code    codes.Code // of the call; OK below
		allowed bool
		reason  policy.ReasonCode
		would   policy.ReasonCode // the audit would-deny
		unknown string            // an entry of unknown contains it
		mode    sockguardv1.PolicyMode
	}{
		{name: "preset, privileged", req: &sockguardv1.CheckRequestRequest{Preset: "github-actions-runner", Method: "POST", Target: "/containers/create", Body: priv},
			reason: policy.ReasonPrivileged, mode: sockguardv1.PolicyMode_POLICY_MODE_ENFORCE},
		{name: "socket, privileged", req: &sockguardv1.CheckRequestRequest{Socket: "enf", Method: "POST", Target: "/v1.41/containers/create", Body: priv},
			reason: policy.ReasonPrivileged, mode: sockguardv1.PolicyMode_POLICY_MODE_ENFORCE},
		{name: "audit socket, privileged: forwarded with a would-deny", req: &sockguardv1.CheckRequestRequest{Socket: "aud", Method: "POST", Target: "/containers/create", Body: priv},
			allowed: true, would: policy.ReasonPrivileged, unknown: `image "busybox"`, mode: sockguardv1.PolicyMode_POLICY_MODE_AUDIT},
		{name: "form body header", req: &sockguardv1.CheckRequestRequest{Socket: "aud", Method: "GET", Target: "/containers/json",
			Headers: h("Content-Type", "application/x-www-form-urlencoded")}, reason: policy.ReasonMalformed, mode: sockguardv1.PolicyMode_POLICY_MODE_AUDIT},
		{name: "exec on a named container", req: &sockguardv1.CheckRequestRequest{Socket: "enf", Method: "POST", Target: "/containers/web/exec", Body: []byte(`{"Cmd":["true"]}`)},
			allowed: true, unknown: "container web", mode: sockguardv1.PolicyMode_POLICY_MODE_ENFORCE},
		{name: "pull every tag with credentials", req: &sockguardv1.CheckRequestRequest{Socket: "enf", Method: "POST", Target: "/images/create?fromImage=busybox",
			Headers: h("X-Registry-Auth", secret)}, reason: policy.ReasonMalformed, mode: sockguardv1.PolicyMode_POLICY_MODE_ENFORCE},
		{name: "pull one tag with credentials", req: &sockguardv1.CheckRequestRequest{Socket: "enf", Method: "POST", Target: "/images/create?fromImage=registry.example/app&tag=1",
			Headers: h("X-Registry-Auth", secret)}, allowed: true, unknown: `registry host "registry.example"`, mode: sockguardv1.PolicyMode_POLICY_MODE_ENFORCE},
		{name: "bad target", req: &sockguardv1.CheckRequestRequest{Socket: "enf", Method: "GET", Target: "containers/json"},
			reason: policy.ReasonMalformed, mode: sockguardv1.PolicyMode_POLICY_MODE_ENFORCE},
		{name: "no socket", req: &sockguardv1.CheckRequestRequest{Method: "GET", Target: "/x"}, code: codes.InvalidArgument},
		{name: "unknown socket", req: &sockguardv1.CheckRequestRequest{Socket: "nope", Method: "GET", Target: "/x"}, code: codes.NotFound},
		{name: "no method", req: &sockguardv1.CheckRequestRequest{Socket: "enf", Target: "/x"}, code: codes.InvalidArgument},
		{name: "too many headers", req: &sockguardv1.CheckRequestRequest{Socket: "enf", Method: "GET", Target: "/x", Headers: many}, code: codes.InvalidArgument},
		{name: "bad header name", req: &sockguardv1.CheckRequestRequest{Socket: "enf", Method: "GET", Target: "/x", Headers: h("X Bad", "1")}, code: codes.InvalidArgument},
		{name: "header value with a newline", req: &sockguardv1.CheckRequestRequest{Socket: "enf", Method: "GET", Target: "/x", Headers: h("X-Registry-Auth", secret+"\r\nX: y")}, code: codes.InvalidArgument},
		{name: "header value too long", req: &sockguardv1.CheckRequestRequest{Socket: "enf", Method: "GET", Target: "/x", Headers: h("X-Registry-Auth", secret+strings.Repeat("A", maxCheckHeaderValue))}, code: codes.InvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := svc.CheckRequest(context.Background(), tc.req)
			if status.Code(err) != tc.code {
				t.Fatalf("code %v (%v), want %v", status.Code(err), err, tc.code)
			}
			if strings.Contains(fmt.Sprint(err), secret) || strings.Contains(prototext.Format(resp), secret) {
				t.Fatalf("the answer quotes the X-Registry-Auth value: %v %v", err, resp)
			}
			if err != nil {
				return
			}
			if resp.GetAllowed() != tc.allowed || resp.GetPolicyMode() != tc.mode {
				t.Fatalf("allowed %v mode %v, want %v %v: %v", resp.GetAllowed(), resp.GetPolicyMode(), tc.allowed, tc.mode, resp)
			}
			if !tc.allowed && resp.GetReasonCode() != sockguardv1.DenialReason(tc.reason) {
				t.Errorf("reason code %v, want %v: %s", resp.GetReasonCode(), tc.reason, resp.GetReason())
			}
			if tc.would != 0 {
				if w := resp.GetWouldDeny(); len(w) != 1 || w[0].GetReasonCode() != sockguardv1.DenialReason(tc.would) || !strings.HasPrefix(resp.GetReason(), "audit mode: forwarded") {
					t.Errorf("would deny %v, reason %q", w, resp.GetReason())
				}
			} else if len(resp.GetWouldDeny()) != 0 {
				t.Errorf("unexpected would-deny %v", resp.GetWouldDeny())
			}
			if tc.unknown != "" && !strings.Contains(strings.Join(resp.GetUnknown(), "\n"), tc.unknown) {
				t.Errorf("unknown %q lacks %q", resp.GetUnknown(), tc.unknown)
			}
		})
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("CheckRequest sent %d requests to the daemon", n)
	}
}

// TestCheckRequestHidesRealPaths: a CheckRequest caller (viewer role)
// learns nothing of the broker's host through bind source resolution:
// neither the real path of a link (/proc/self/cwd is one) nor why a source
// could not be resolved. The verdict and its code are the live ones.
func TestCheckRequestHidesRealPaths(t *testing.T) {
	hidden := filepath.Join(t.TempDir(), "hidden-target-dir")
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Mkdir(hidden, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(hidden, link); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(t.TempDir(), "dangling")
	if err := os.Symlink(filepath.Join(hidden, "gone"), dangling); err != nil {
		t.Fatal(err)
	}
	cat, err := policy.BuiltinCatalog()
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var calls atomic.Int64
	up := tripwireDaemon(t, &calls)
	reg := &Registry{tenants: map[string]*tenantServer{}, proxy: &Proxy{up: up, owners: isolation.NewOwnerCache(64), log: log, resolveBinds: true,
		pins: newPinner(PinMount, t.TempDir(), "", nil, up, log)}}
	reg.catalog.Store(cat)
	svc := &service{b: &Broker{reg: reg}}
	for _, src := range []string{link, dangling, "/proc/self/cwd"} {
		t.Run(src, func(t *testing.T) {
			resp, err := svc.CheckRequest(context.Background(), &sockguardv1.CheckRequestRequest{Preset: "github-actions-runner", Method: "POST", Target: "/containers/create",
				Body: []byte(`{"Image":"busybox","HostConfig":{"Binds":["` + src + `:/x"]}}`)})
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetAllowed() || resp.GetReasonCode() != sockguardv1.DenialReason(policy.ReasonBindMount) {
				t.Fatalf("want a bind-mount refusal: %v", resp)
			}
			cwd, _ := os.Getwd()
			text := prototext.Format(resp)
			if strings.Contains(text, "hidden-target-dir") || strings.Contains(text, cwd) || strings.Contains(text, "no such file") {
				t.Errorf("the answer tells about the host: %s", text)
			}
		})
	}
	// A source that is no link is quoted as usual.
	resp, err := svc.CheckRequest(context.Background(), &sockguardv1.CheckRequestRequest{Preset: "github-actions-runner", Method: "POST", Target: "/containers/create",
		Body: []byte(`{"Image":"busybox","HostConfig":{"Binds":["` + hidden + `:/x"]}}`)})
	if err != nil || !strings.Contains(resp.GetReason(), hidden) {
		t.Errorf("a plain source's refusal does not name it: %v %v", resp, err)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("CheckRequest sent %d requests to the daemon", n)
	}
}
