package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/sockguard/sockguard/policy"
)

var (
	idWeb  = strings.Repeat("a1", 32)
	idNet  = strings.Repeat("b2", 32)
	imgID  = "sha256:" + strings.Repeat("c3", 32)
	errBad = errors.New("daemon unreachable")
)

// fakeOwners is the tenant's view of the daemon: its own objects by
// reference, another tenant's, and everything else missing.
type fakeOwners struct {
	own     map[string]string // ref -> id
	foreign map[string]bool
	unknown bool  // a dry run: nothing can be looked up
	fail    error // the daemon cannot be asked
	bodyErr error
	volErr  error
	calls   int      // lookups asked of the daemon
	created []string // volumes created
}

func newOwners() *fakeOwners {
	return &fakeOwners{
		own:     map[string]string{"web": idWeb, idWeb: idWeb, "net1": idNet, "data": "data"},
		foreign: map[string]bool{"victim": true},
	}
}

func (f *fakeOwners) Resolve(_ context.Context, k policy.ObjectKind, ref string) (string, error) {
	f.calls++
	switch {
	case f.unknown:
		return "", fmt.Errorf("owner of %s %q: %w", k, ref, ErrUnknown)
	case f.fail != nil:
		return "", f.fail
	case f.foreign[ref]:
		return "", &Refusal{Decision: policy.Decision{Status: http.StatusNotFound, Code: policy.ReasonForeignObject,
			Reason: "not owned by this tenant", Rule: "tenant isolation"}, Message: "No such container: " + ref}
	}
	if id, ok := f.own[ref]; ok {
		return id, nil
	}
	return "", &Missing{Status: http.StatusNotFound, Message: "No such container: " + ref}
}

func (f *fakeOwners) IsolateQuery(_ context.Context, req policy.Request) (policy.Request, error) {
	if !req.Route().QueryIsolated() {
		return req, nil
	}
	f.calls++
	if f.unknown {
		return req, fmt.Errorf("query references: %w", ErrUnknown)
	}
	if c := req.Param("container"); c != "" {
		id, err := f.Resolve(context.Background(), policy.ObjectContainer, c)
		if err != nil {
			return req, err
		}
		return req.WithQuery("container=" + id)
	}
	return req.WithQuery(req.RawQuery + "&owner=t1")
}

func (f *fakeOwners) IsolateBody(_ context.Context, req policy.Request, body []byte) ([]byte, []Volume, error) {
	if f.bodyErr != nil {
		return nil, nil, f.bodyErr
	}
	var vols []Volume
	if bytes.Contains(body, []byte(`"fresh:`)) {
		vols = append(vols, Volume{Name: "fresh"})
	}
	return append(bytes.TrimSuffix(bytes.TrimSpace(body), []byte("}")), []byte(`,"Stamped":true}`)...), vols, nil
}

func (f *fakeOwners) CreateVolumes(_ context.Context, vols []Volume) error {
	if f.volErr != nil {
		return f.volErr
	}
	for _, v := range vols {
		f.created = append(f.created, v.Name)
	}
	return nil
}

type fakeImages struct {
	calls  int
	hidden bool
	pulls  int
	done   int
}

func (f *fakeImages) CheckRef(_ context.Context, action, ref string) (string, error) {
	f.calls++
	switch {
	case f.hidden:
		return "", &Refusal{Decision: policy.Decision{Status: http.StatusNotFound, Code: policy.ReasonForeignObject, Reason: "hidden", Rule: "image ownership"},
			Message: "No such image: " + ref}
	case ref == "nosuch":
		return "", &Missing{Status: http.StatusNotFound, Message: "No such image: " + ref}
	}
	return imgID, nil
}

func (f *fakeImages) CheckCreate(_ context.Context, body []byte) ([]byte, error) {
	f.calls++
	return body, nil
}

func (f *fakeImages) CheckExport(context.Context, []string) error { f.calls++; return nil }

func (f *fakeImages) BeginPull(_ context.Context, req policy.Request, _ http.Header) (Pull, error) {
	f.pulls++
	return pullDone{f}, nil
}

type pullDone struct{ f *fakeImages }

func (p pullDone) Done() { p.f.done++ }

type fakePins struct {
	refuse   bool
	prepared int
	finished int
}

func (f *fakePins) Prepare(_ context.Context, body []byte) ([]byte, string, error) {
	if f.refuse {
		return nil, "", &Refusal{Decision: policy.Decision{Status: http.StatusForbidden, Code: policy.ReasonBindMount, Reason: "pin refused", Rule: "bind pins"}}
	}
	f.prepared++
	return body, "pin1", nil
}

func (f *fakePins) Finish(string, bool) { f.finished++ }

func runner(t testing.TB) *policy.Policy {
	t.Helper()
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
	return pol
}

type world struct {
	owners *fakeOwners
	images *fakeImages
	pins   *fakePins
}

func (w world) stages() Stages {
	return Stages{Owners: w.owners, Images: w.images, Pins: w.pins,
		Registries: fakeResolver{"ghcr.io": {"140.82.112.33"}, "rebind.example": {"127.0.0.1"}}}
}

func TestJudge(t *testing.T) {
	pol := runner(t)
	big := `{"Image":"busybox","Env":["X=` + strings.Repeat("x", 2<<20) + `"]}`
	type want struct {
		outcome  Outcome
		status   int
		code     policy.ReasonCode
		path     string // forwarded path (Forward)
		audits   int
		lookups  int    // owner lookups, when more than 0
		noLookup bool   // no owner lookup at all
		body     string // a substring of the forwarded body
		message  string // a substring of the answer's message
		unknown  bool
		pins     int // pins prepared
		bodyRead bool
		volumes  int // volumes created
	}
	tests := []struct {
		name    string
		audit   bool
		method  string
		target  string
		header  http.Header
		body    string
		upgrade bool
		setup   func(*world)
		want    want
	}{
		// canonical
		{name: "malformed path", method: "GET", target: "/../x",
			want: want{outcome: Refuse, status: 400, code: policy.ReasonMalformed}},
		{name: "malformed path in audit mode", audit: true, method: "GET", target: "/containers/web/json;x",
			want: want{outcome: Refuse, status: 400, code: policy.ReasonMalformed}},
		{name: "form body, even in audit mode", audit: true, method: "POST", target: "/containers/prune",
			header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, body: "filters=x",
			want: want{outcome: Refuse, status: 400, code: policy.ReasonMalformed, noLookup: true}},
		// route and rules, no object
		{name: "allowed, nothing to look up", method: "GET", target: "/v1.44/_ping",
			want: want{outcome: Forward, path: "/_ping", noLookup: true}},
		{name: "refused from its text: no lookup", method: "POST", target: "/commit?container=web",
			want: want{outcome: Refuse, status: 403, code: policy.ReasonRuleDenied, noLookup: true}},
		{name: "refused in audit mode: recorded, isolated, forwarded", audit: true, method: "POST", target: "/commit?container=web",
			want: want{outcome: Forward, audits: 1, lookups: 2, path: "/commit"}},
		{name: "audit mode keeps isolation: foreign query reference", audit: true, method: "POST", target: "/commit?container=victim",
			want: want{outcome: Refuse, status: 404, code: policy.ReasonForeignObject, audits: 1, message: "No such container: victim"}},
		{name: "list narrowed to the tenant", method: "GET", target: "/containers/json?all=1",
			want: want{outcome: Forward, path: "/containers/json", lookups: 1}},
		// owners then rules, object routes
		{name: "own container by name: forwarded by id", method: "GET", target: "/v1.44/containers/web/json",
			want: want{outcome: Forward, path: "/containers/" + idWeb + "/json", lookups: 1}},
		{name: "another tenant's container answers as missing", method: "GET", target: "/containers/victim/json",
			want: want{outcome: Refuse, status: 404, code: policy.ReasonForeignObject, message: "No such container: victim"}},
		{name: "missing container: not a denial", method: "GET", target: "/containers/nosuch/json",
			want: want{outcome: NotFound, status: 404, message: "No such container: nosuch"}},
		{name: "another tenant's container on a refused route still answers as missing", method: "GET", target: "/containers/victim/archive?path=/etc",
			want: want{outcome: Refuse, status: 404, code: policy.ReasonForeignObject, message: "No such container: victim"}},
		{name: "own container on a refused route: the rules' refusal", method: "GET", target: "/containers/web/archive?path=/etc",
			want: want{outcome: Refuse, status: 403, code: policy.ReasonRuleDenied}},
		{name: "daemon unreachable", method: "GET", target: "/containers/web/json", setup: func(w *world) { w.owners.fail = errBad },
			want: want{outcome: Failed}},
		// images
		{name: "image inspect forwarded by the checked id", method: "GET", target: "/images/busybox/json",
			want: want{outcome: Forward, path: "/images/" + imgID + "/json"}},
		{name: "hidden image answers as missing", method: "GET", target: "/images/priv/json", setup: func(w *world) { w.images.hidden = true },
			want: want{outcome: Refuse, status: 404, code: policy.ReasonForeignObject, message: "No such image: priv"}},
		{name: "missing image", method: "GET", target: "/images/nosuch/json",
			want: want{outcome: NotFound, status: 404, message: "No such image: nosuch"}},
		{name: "refused tag: no image lookup", method: "POST", target: "/images/busybox/tag?repo=x",
			want: want{outcome: Refuse, status: 403, code: policy.ReasonRuleDenied}},
		{name: "pull prepared", method: "POST", target: "/images/create?fromImage=ghcr.io/o/app&tag=1",
			want: want{outcome: Forward, path: "/images/create", bodyRead: true}},
		{name: "pull from the broker's own host", method: "POST", target: "/images/create?fromImage=rebind.example/app&tag=1",
			want: want{outcome: Refuse, status: 403, code: policy.ReasonBodyDenied}},
		// body
		{name: "create: stamped, image checked, pinned", method: "POST", target: "/containers/create?name=job",
			body: `{"Image":"busybox","HostConfig":{"NetworkMode":"none"}}`,
			want: want{outcome: Forward, path: "/containers/create", body: `"Stamped":true`, pins: 1, bodyRead: true}},
		{name: "privileged create refused", method: "POST", target: "/containers/create",
			body: `{"Image":"busybox","HostConfig":{"Privileged":true}}`,
			want: want{outcome: Refuse, status: 403, code: policy.ReasonPrivileged}},
		{name: "privileged create in audit mode: recorded, stamped, pinned", audit: true, method: "POST", target: "/containers/create",
			body: `{"Image":"busybox","HostConfig":{"Privileged":true}}`,
			want: want{outcome: Forward, audits: 1, body: `"Stamped":true`, pins: 1, path: "/containers/create", bodyRead: true}},
		{name: "ambiguous body, even in audit mode", audit: true, method: "POST", target: "/containers/create",
			body: `{"Image":"busybox","image":"other"}`,
			want: want{outcome: Refuse, status: 400, code: policy.ReasonMalformed}},
		{name: "body too large, even in audit mode", audit: true, method: "POST", target: "/containers/create", body: big,
			want: want{outcome: Refuse, status: 413, code: policy.ReasonBodyTooLarge}},
		{name: "isolation refuses the body, even in audit mode", audit: true, method: "POST", target: "/networks/create",
			body: `{"Name":"n"}`, setup: func(w *world) {
				w.owners.bodyErr = &Refusal{Decision: policy.Decision{Status: 400, Code: policy.ReasonMalformed, Reason: "ambiguous"}}
			},
			want: want{outcome: Refuse, status: 400, code: policy.ReasonMalformed}},
		{name: "pins refuse, even in audit mode", audit: true, method: "POST", target: "/containers/create",
			body: `{"Image":"busybox"}`, setup: func(w *world) { w.pins.refuse = true },
			want: want{outcome: Refuse, status: 403, code: policy.ReasonBindMount}},
		{name: "create mounting a new volume: created once judged", method: "POST", target: "/containers/create",
			body: `{"Image":"busybox","HostConfig":{"Binds":["fresh:/data"]}}`,
			want: want{outcome: Forward, path: "/containers/create", pins: 1, bodyRead: true, volumes: 1}},
		{name: "refused create mounting a new volume: nothing created", method: "POST", target: "/containers/create",
			body: `{"Image":"busybox","HostConfig":{"Binds":["fresh:/data"]}}`, setup: func(w *world) { w.pins.refuse = true },
			want: want{outcome: Refuse, status: 403, code: policy.ReasonBindMount}},
		{name: "volume lost to another tenant: refused, pins given back", method: "POST", target: "/containers/create",
			body: `{"Image":"busybox","HostConfig":{"Binds":["fresh:/data"]}}`,
			setup: func(w *world) {
				w.owners.volErr = &Refusal{Decision: policy.Decision{Status: 400, Code: policy.ReasonForeignObject, Reason: "taken"}, Message: "no such volume"}
			},
			want: want{outcome: Refuse, status: 400, code: policy.ReasonForeignObject, pins: 1, message: "no such volume"}},
		{name: "network connect body isolated", method: "POST", target: "/networks/net1/connect", body: `{"Container":"web"}`,
			want: want{outcome: Forward, path: "/networks/" + idNet + "/connect", body: `"Stamped":true`, bodyRead: true}},
		// streams
		{name: "attach that switches protocols: body read", method: "POST", target: "/containers/web/attach?stream=1", upgrade: true,
			want: want{outcome: Forward, path: "/containers/" + idWeb + "/attach", bodyRead: true}},
		{name: "oversize attach body: a recorded refusal", method: "POST", target: "/containers/web/attach?stream=1", upgrade: true,
			body: strings.Repeat("x", HijackBodyLimit+1),
			want: want{outcome: Refuse, status: 413, code: policy.ReasonBodyTooLarge}},
		{name: "attach without upgrade streams its body", method: "POST", target: "/containers/web/attach?stream=1",
			body: strings.Repeat("x", HijackBodyLimit+1),
			want: want{outcome: Forward, path: "/containers/" + idWeb + "/attach"}},
		// dry run
		{name: "dry run: object unknown, rules decide for any object", method: "GET", target: "/containers/web/export",
			setup: func(w *world) { w.owners.unknown = true },
			want:  want{outcome: Refuse, status: 403, code: policy.ReasonRuleDenied, unknown: true}},
		{name: "dry run: object unknown, allowed route", method: "GET", target: "/containers/web/json",
			setup: func(w *world) { w.owners.unknown = true },
			want:  want{outcome: Forward, path: "/containers/web/json", unknown: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := world{owners: newOwners(), images: &fakeImages{}, pins: &fakePins{}}
			if tc.setup != nil {
				tc.setup(&w)
			}
			p, q, _ := strings.Cut(tc.target, "?")
			h := tc.header
			if h == nil {
				h = http.Header{}
			}
			in := In{Tenant: Tenant{ID: "t1", Policy: pol, Audit: tc.audit},
				Method: tc.method, Path: p, RawQuery: q, Header: h, Upgrade: tc.upgrade}
			if tc.body != "" {
				in.Body = strings.NewReader(tc.body)
			}
			v := Judge(context.Background(), in, w.stages())
			got := v.Outcome
			if got != tc.want.outcome {
				t.Fatalf("outcome %v, want %v (verdict %+v)", got, tc.want.outcome, v.Decision)
			}
			if len(v.Audits) != tc.want.audits {
				t.Errorf("audits %+v, want %d", v.Audits, tc.want.audits)
			}
			if (len(v.Unknown) > 0) != tc.want.unknown {
				t.Errorf("unknown %q, want some: %v", v.Unknown, tc.want.unknown)
			}
			if (tc.want.lookups > 0 || tc.want.noLookup) && w.owners.calls != tc.want.lookups {
				t.Errorf("%d owner lookups, want %d", w.owners.calls, tc.want.lookups)
			}
			if strings.Contains(tc.name, "no image lookup") && w.images.calls != 0 {
				t.Errorf("%d image lookups, want none", w.images.calls)
			}
			if w.pins.prepared != tc.want.pins {
				t.Errorf("%d pins prepared, want %d", w.pins.prepared, tc.want.pins)
			}
			if got == Refuse && w.pins.finished != w.pins.prepared {
				t.Errorf("refused with %d pins prepared, %d given back", w.pins.prepared, w.pins.finished)
			}
			if len(w.owners.created) != tc.want.volumes {
				t.Errorf("volumes created %q, want %d", w.owners.created, tc.want.volumes)
			}
			switch got {
			case Forward:
				if v.Req.Path != tc.want.path {
					t.Errorf("forwarded path %q, want %q", v.Req.Path, tc.want.path)
				}
				if !v.Req.Valid() {
					t.Error("forwarded request is not canonical")
				}
				if tc.want.body != "" && !strings.Contains(string(v.Body), tc.want.body) {
					t.Errorf("forwarded body %s lacks %s", v.Body, tc.want.body)
				}
				if v.BodyRead != tc.want.bodyRead {
					t.Errorf("body read %v, want %v", v.BodyRead, tc.want.bodyRead)
				}
				if v.Req.Route().Endpoint() == policy.EndpointImagePull && (v.Pull == nil || w.images.pulls != 1) {
					t.Error("pull not prepared")
				}
			case Refuse, NotFound:
				if v.Decision.Status != tc.want.status || (got == Refuse && v.Decision.Code != tc.want.code) {
					t.Errorf("decision %+v, want status %d code %v", v.Decision, tc.want.status, tc.want.code)
				}
				if got == Refuse && v.Decision.Allow {
					t.Error("a refusal that allows")
				}
				if !strings.Contains(v.Message, tc.want.message) {
					t.Errorf("message %q lacks %q", v.Message, tc.want.message)
				}
				if v.PinID != "" || v.Pull != nil {
					t.Error("a refused verdict holds a pin or a pull")
				}
			}
		})
	}
}

// TestJudgeForeignAndMissingAlike: another tenant's object and a missing
// one get the same status and message, on allowed and refused routes.
func TestJudgeForeignAndMissingAlike(t *testing.T) {
	pol := runner(t)
	for _, route := range []string{"/containers/%s/json", "/containers/%s/archive", "/containers/%s/export"} {
		var answers []string
		for _, ref := range []string{"victim", "nosuch"} {
			in := In{Tenant: Tenant{ID: "t1", Policy: pol}, Method: "GET", Path: fmt.Sprintf(route, ref), Header: http.Header{}}
			v := Judge(context.Background(), in, world{owners: newOwners()}.stages())
			answers = append(answers, fmt.Sprintf("%d %s", v.Decision.Status, strings.ReplaceAll(v.Message, ref, "REF")))
		}
		if answers[0] != answers[1] {
			t.Errorf("%s: foreign %q, missing %q", route, answers[0], answers[1])
		}
	}
}

// TestJudgeUndo: a verdict refused after a pin or a pull was prepared
// gives them back.
func TestJudgeUndo(t *testing.T) {
	j := judge{st: Stages{Pins: &fakePins{}}}
	f := &fakeImages{}
	j.v.PinID, j.v.Pull = "p", pullDone{f}
	j.undo()
	if j.v.PinID != "" || j.v.Pull != nil || f.done != 1 || j.st.Pins.(*fakePins).finished != 1 {
		t.Fatalf("undo left %+v", j.v)
	}
}

// TestJudgeAdmit: the request slot is taken once the request is
// canonical; a malformed request never takes one; a refused slot is
// enforced in audit mode too, before any lookup.
func TestJudgeAdmit(t *testing.T) {
	pol := runner(t)
	full := &Refusal{Decision: policy.Decision{Status: http.StatusTooManyRequests, Code: policy.ReasonLimit, Reason: "over the limit"}, Message: "too many"}
	tests := []struct {
		name, path string
		admit      bool
		want       Outcome
		calls      int
	}{
		{"malformed: no slot taken", "/../x", true, Refuse, 0},
		{"admitted", "/containers/web/json", true, Forward, 1},
		{"refused: no lookup", "/containers/web/json", false, Refuse, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			w := world{owners: newOwners()}
			in := In{Tenant: Tenant{ID: "t1", Policy: pol, Audit: true}, Method: "GET", Path: tc.path, Header: http.Header{},
				Admit: func() *Refusal {
					calls++
					if tc.admit {
						return nil
					}
					return full
				}}
			v := Judge(context.Background(), in, w.stages())
			if v.Outcome != tc.want || calls != tc.calls {
				t.Fatalf("outcome %v after %d admits, want %v after %d", v.Outcome, calls, tc.want, tc.calls)
			}
			if !tc.admit && (v.Decision.Code != policy.ReasonLimit || v.Message != "too many" || w.owners.calls != 0) {
				t.Fatalf("verdict %+v, %d lookups", v, w.owners.calls)
			}
		})
	}
}

// TestJudgeFailsClosedWithoutStages: no owner resolver or no policy, no
// forwarding.
func TestJudgeFailsClosedWithoutStages(t *testing.T) {
	in := In{Tenant: Tenant{ID: "t1", Policy: runner(t)}, Method: "GET", Path: "/_ping", Header: http.Header{}}
	if v := Judge(context.Background(), in, Stages{}); v.Outcome != Failed {
		t.Fatalf("no owners: %v", v.Outcome)
	}
	in.Tenant.Policy = nil
	if v := Judge(context.Background(), in, world{owners: newOwners()}.stages()); v.Outcome != Failed {
		t.Fatalf("no policy: %v", v.Outcome)
	}
}
