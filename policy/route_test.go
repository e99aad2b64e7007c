package policy

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// mustReq canonicalizes method and target (path?query, already decoded
// once as net/http would) or panics: for tables of known-good requests.
func mustReq(method, target string) Request {
	p, q, _ := strings.Cut(target, "?")
	r, err := Canonicalize(method, p, q)
	if err != nil {
		panic(err)
	}
	return r
}

func TestRoute(t *testing.T) {
	const (
		none = ObjectNone
		ctr  = ObjectContainer
		exc  = ObjectExec
		nw   = ObjectNetwork
		vol  = ObjectVolume
		img  = ObjectImage
	)
	type facts struct {
		ep             Endpoint
		kind           ObjectKind
		ref, action    string
		list, qiso     bool
		biso, inspect  bool
		upgrade, rmCtr bool
		scrub, fwdID   bool
	}
	tests := []struct {
		method, path string
		want         facts
	}{
		{"GET", "/_ping", facts{}},
		{"HEAD", "/_ping", facts{}},
		{"GET", "/version", facts{}},
		{"GET", "/info", facts{}},
		{"GET", "/events", facts{ep: EndpointEvents, list: true, qiso: true}},
		{"POST", "/containers/create", facts{ep: EndpointContainerCreate, qiso: true, biso: true, inspect: true, scrub: true}},
		{"GET", "/containers/json", facts{ep: EndpointContainerList, list: true, qiso: true}},
		{"POST", "/containers/prune", facts{ep: EndpointContainerPrune, list: true, qiso: true, rmCtr: true}},
		{"GET", "/containers/c1/json", facts{ep: EndpointContainerObject, kind: ctr, ref: "c1", action: "json", fwdID: true}},
		{"GET", "/containers/a/b/json", facts{ep: EndpointContainerObject, kind: ctr, ref: "a/b", action: "json", fwdID: true}},
		{"GET", "/containers/c1/logs", facts{ep: EndpointContainerObject, kind: ctr, ref: "c1", action: "logs", fwdID: true}},
		{"GET", "/containers/c1/attach/ws", facts{ep: EndpointContainerObject, kind: ctr, ref: "c1/attach", action: "ws", fwdID: true}},
		{"POST", "/containers/c1/start", facts{ep: EndpointContainerObject, kind: ctr, ref: "c1", action: "start", biso: true, inspect: true, fwdID: true}},
		{"POST", "/containers/c1/update", facts{ep: EndpointContainerObject, kind: ctr, ref: "c1", action: "update", inspect: true, fwdID: true}},
		{"POST", "/containers/c1/stop", facts{ep: EndpointContainerObject, kind: ctr, ref: "c1", action: "stop", fwdID: true}},
		{"POST", "/containers/c1/wait", facts{ep: EndpointContainerObject, kind: ctr, ref: "c1", action: "wait", rmCtr: true, fwdID: true}},
		{"POST", "/containers/c1/rename", facts{ep: EndpointContainerObject, kind: ctr, ref: "c1", action: "rename", qiso: true, scrub: true, fwdID: true}},
		{"POST", "/containers/c1/attach", facts{ep: EndpointContainerObject, kind: ctr, ref: "c1", action: "attach", upgrade: true, fwdID: true}},
		{"GET", "/containers/c1/attach", facts{ep: EndpointContainerObject, kind: ctr, ref: "c1", action: "attach", fwdID: true}},
		{"POST", "/containers/attach", facts{ep: EndpointContainerObject, kind: ctr, ref: "attach", fwdID: true}},
		{"DELETE", "/containers/c1", facts{ep: EndpointContainerObject, kind: ctr, ref: "c1", rmCtr: true, fwdID: true}},
		{"DELETE", "/containers/json", facts{ep: EndpointContainerObject, kind: ctr, ref: "json", rmCtr: true, fwdID: true}},
		{"GET", "/containers/create", facts{ep: EndpointContainerObject, kind: ctr, ref: "create", fwdID: true}},
		{"PUT", "/containers/c1/archive", facts{ep: EndpointContainerObject, kind: ctr, ref: "c1", action: "archive", inspect: true, fwdID: true}},
		{"GET", "/containers/c1/archive", facts{ep: EndpointContainerObject, kind: ctr, ref: "c1", action: "archive", fwdID: true}},
		{"GET", "/containers", facts{}},
		{"POST", "/containers/c1/exec", facts{ep: EndpointExecCreate, kind: ctr, ref: "c1", action: "exec", inspect: true, fwdID: true}},
		{"POST", "/exec/e1/start", facts{ep: EndpointExecObject, kind: exc, ref: "e1", action: "start", inspect: true, upgrade: true, fwdID: true}},
		{"POST", "/exec/e1/resize", facts{ep: EndpointExecObject, kind: exc, ref: "e1", action: "resize", fwdID: true}},
		{"GET", "/exec/e1/json", facts{ep: EndpointExecObject, kind: exc, ref: "e1", action: "json", fwdID: true}},
		{"GET", "/exec/e1", facts{}},
		{"POST", "/images/create", facts{ep: EndpointImagePull, inspect: true}},
		{"GET", "/images/json", facts{ep: EndpointImageList}},
		{"GET", "/images/get", facts{ep: EndpointImageExport}},
		{"POST", "/images/prune", facts{}},
		{"POST", "/images/load", facts{}},
		{"GET", "/images/ghcr.io/o/app:1/json", facts{ep: EndpointImageObject, kind: img, ref: "ghcr.io/o/app:1", action: "json", fwdID: true}},
		{"GET", "/images/busybox/history", facts{ep: EndpointImageObject, kind: img, ref: "busybox", action: "history", fwdID: true}},
		{"GET", "/images/busybox/get", facts{ep: EndpointImageObject, kind: img, ref: "busybox", action: "get"}},
		{"POST", "/images/busybox/tag", facts{ep: EndpointImageObject, kind: img, ref: "busybox", action: "tag"}},
		{"POST", "/images/r.io/a/push", facts{ep: EndpointImageObject, kind: img, ref: "r.io/a", action: "push"}},
		{"DELETE", "/images/r.io/a:1", facts{ep: EndpointImageObject, kind: img, ref: "r.io/a:1"}},
		{"POST", "/images/x/rename", facts{scrub: true}},
		{"POST", "/build", facts{ep: EndpointBuild, qiso: true}},
		{"GET", "/build", facts{}},
		{"POST", "/commit", facts{ep: EndpointCommit, qiso: true}},
		{"POST", "/auth", facts{ep: EndpointAuth, inspect: true}},
		{"POST", "/session", facts{ep: EndpointSession, upgrade: true}},
		{"POST", "/grpc", facts{ep: EndpointGrpc, upgrade: true}},
		{"POST", "/networks/create", facts{ep: EndpointNetworkCreate, biso: true, inspect: true}},
		{"GET", "/networks", facts{ep: EndpointNetworkList, list: true, qiso: true}},
		{"POST", "/networks/prune", facts{ep: EndpointNetworkPrune, list: true, qiso: true}},
		{"GET", "/networks/n1", facts{ep: EndpointNetworkObject, kind: nw, ref: "n1", fwdID: true}},
		{"DELETE", "/networks/n1", facts{ep: EndpointNetworkObject, kind: nw, ref: "n1", fwdID: true}},
		{"GET", "/networks/a/b", facts{ep: EndpointNetworkObject, kind: nw, ref: "a/b", fwdID: true}},
		{"POST", "/networks/n1/connect", facts{ep: EndpointNetworkConnect, kind: nw, ref: "n1", action: "connect", biso: true, inspect: true, fwdID: true}},
		{"POST", "/networks/n1/disconnect", facts{ep: EndpointNetworkDisconnect, kind: nw, ref: "n1", action: "disconnect", biso: true, inspect: true, fwdID: true}},
		{"GET", "/networks/n1/connect", facts{ep: EndpointNetworkObject, kind: nw, ref: "n1", action: "connect", fwdID: true}},
		{"POST", "/volumes/create", facts{ep: EndpointVolumeCreate, biso: true, inspect: true}},
		{"GET", "/volumes", facts{ep: EndpointVolumeList, list: true, qiso: true}},
		{"POST", "/volumes/prune", facts{ep: EndpointVolumePrune, list: true, qiso: true}},
		{"GET", "/volumes/v1", facts{ep: EndpointVolumeObject, kind: vol, ref: "v1", fwdID: true}},
		{"DELETE", "/volumes/a/b", facts{ep: EndpointVolumeObject, kind: vol, ref: "a/b", fwdID: true}},
		{"GET", "/plugins", facts{}},
		{"GET", "/distribution/busybox/json", facts{}},
		{"POST", "/swarm/init", facts{}},
		{"GET", "/", facts{}},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			rt := mustReq(tc.method, "/v1.44"+tc.path).Route()
			got := facts{
				ep: rt.Endpoint(), kind: rt.Object(), ref: rt.Ref(), action: rt.Action(),
				list: rt.IsList(), qiso: rt.QueryIsolated(), biso: rt.BodyIsolated(), inspect: rt.BodyInspected(),
				upgrade: rt.MayUpgrade(), rmCtr: rt.MayRemoveContainer(), scrub: rt.NamesContainerInConflict(),
				fwdID: rt.ForwardsResolvedID(),
			}
			if got != tc.want {
				t.Fatalf("route = %+v (%s)\nwant    %+v (%s)", got, got.ep, tc.want, tc.want.ep)
			}
			if got.kind != none && rt.prefix+rt.Ref()+rt.Suffix() != tc.path {
				t.Fatalf("prefix %q ref %q suffix %q do not rebuild %q", rt.prefix, rt.Ref(), rt.Suffix(), tc.path)
			}
		})
	}
}

func TestWithObjectID(t *testing.T) {
	id := strings.Repeat("ab", 32)
	tests := []struct {
		name, method, target, id string
		wantPath                 string // "" = refused
	}{
		{"container", "POST", "/v1.44/containers/web/start", id, "/containers/" + id + "/start"},
		{"ref with slash", "GET", "/containers/a/b/json", id, "/containers/" + id + "/json"},
		{"delete", "DELETE", "/containers/web", id, "/containers/" + id},
		{"volume name", "GET", "/volumes/data", "data_1.x-y", "/volumes/data_1.x-y"},
		{"image id", "GET", "/images/busybox/json", "sha256:" + id, "/images/sha256:" + id + "/json"},
		{"image name form refused for hex", "GET", "/images/busybox/json", "sha256:XY", ""},
		{"slash", "GET", "/containers/web/json", "a/b", ""},
		{"dotdot", "GET", "/containers/web/json", "..", ""},
		{"leading dot", "GET", "/containers/web/json", ".x", ""},
		{"empty", "GET", "/containers/web/json", "", ""},
		{"query", "GET", "/containers/web/json", "a?b", ""},
		{"control", "GET", "/containers/web/json", "a\x00", ""},
		{"too long", "GET", "/containers/web/json", strings.Repeat("a", 256), ""},
		{"no object", "GET", "/containers/json", id, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := mustReq(tc.method, tc.target)
			got, err := req.WithObjectID(tc.id)
			if tc.wantPath == "" {
				if err == nil || !errors.Is(err, ErrMalformed) || !got.IsZero() {
					t.Fatalf("WithObjectID(%q) = %q, %v; want a malformed error", tc.id, got.Path, err)
				}
				return
			}
			if err != nil || got.Path != tc.wantPath {
				t.Fatalf("WithObjectID(%q) = %q, %v; want %q", tc.id, got.Path, err, tc.wantPath)
			}
			if got.Route().Endpoint() != req.Route().Endpoint() || got.Route().Ref() != tc.id {
				t.Fatalf("route changed: %+v", got.Route())
			}
			if req.Path == got.Path {
				t.Fatal("the original request changed")
			}
			again := mustReq(got.Method, got.UpstreamPath())
			if again.Path != got.Path || again.Route().Endpoint() != got.Route().Endpoint() {
				t.Fatalf("not a fixed point: %q routes as %v", got.Path, again.Route().Endpoint())
			}
		})
	}
}

func TestWithQuery(t *testing.T) {
	req := mustReq("GET", "/containers/json?all=1")
	got, err := req.WithQuery("all=1&filters=%7B%7D")
	if err != nil || got.Param("filters") != "{}" || got.RawQuery != "all=1&filters=%7B%7D" {
		t.Fatalf("WithQuery = %+v, %v", got, err)
	}
	if req.Param("filters") != "" {
		t.Fatal("the original request changed")
	}
	if _, err := req.WithQuery("a=%zz"); !errors.Is(err, ErrMalformed) {
		t.Fatalf("bad escape: %v", err)
	}
	q := got.Query()
	q.Set("filters", "changed")
	if got.Param("filters") != "{}" {
		t.Fatal("Query() is not a copy")
	}
	ps := got.Params("all")
	ps[0] = "changed"
	if got.Param("all") != "1" {
		t.Fatal("Params() is not a copy")
	}
}

func TestDecideAnyObject(t *testing.T) {
	runner := mustPolicy(t, "github-actions-runner", Overrides{})
	literal := mustPresetPolicy(t, `
name: literal
rules:
  - {method: POST, path: /containers/keep/kill}
  - {method: POST, path: /containers/*/kill, action: deny}
  - {method: GET, path: /**/json}
  - {method: GET, path: /volumes/*}
`)
	tests := []struct {
		name   string
		pol    *Policy
		method string
		target string
		known  bool
		allow  bool
	}{
		{"runner export denied for any container", runner, "GET", "/containers/x/export", true, false},
		{"runner inspect allowed for any container", runner, "GET", "/containers/x/json", true, true},
		{"runner ref with slash judged as the id", runner, "GET", "/containers/a/b/logs", true, true},
		{"runner unknown action denied", runner, "POST", "/containers/x/frobnicate", true, false},
		{"image tag keeps its reference", runner, "POST", "/images/busybox/tag", false, false},
		{"image inspect judged as the id", runner, "GET", "/images/busybox/json", true, true},
		{"literal before the deny: depends on the object", literal, "POST", "/containers/x/kill", false, false},
		{"a ** before a literal matches every id", literal, "GET", "/containers/x/json", true, true},
		{"default deny for every object", literal, "DELETE", "/volumes/x", true, false},
		{"not an object route", runner, "GET", "/containers/json", false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := mustReq(tc.method, tc.target)
			d, known := tc.pol.DecideAnyObject(req)
			if known != tc.known || (known && d.Allow != tc.allow) {
				t.Fatalf("DecideAnyObject = %+v, %v; want known=%v allow=%v", d, known, tc.known, tc.allow)
			}
			if !known || !req.Route().ForwardsResolvedID() {
				return
			}
			// Known means: the same decision for every id.
			for _, id := range []string{strings.Repeat("ab", 32), "keep", "json", "kill", "x"} {
				r, err := req.WithObjectID(id)
				if err != nil {
					t.Fatal(err)
				}
				if got := tc.pol.Decide(r); got.Allow != d.Allow || got.Rule != d.Rule {
					t.Fatalf("id %q: Decide = %+v, DecideAnyObject said %+v", id, got, d)
				}
			}
		})
	}
}

// isCanonical reports whether req could have come out of Canonicalize:
// the fuzz test's independent check of Canonicalize's output.
func isCanonical(req Request) bool {
	if req.method == "" || req.path == "" || req.path[0] != '/' {
		return false
	}
	for i := 0; i < len(req.method); i++ {
		c := req.method[i]
		if !isTokenByte(c) || ('a' <= c && c <= 'z') {
			return false
		}
	}
	if req.version != "" && !isVersionSegment("v"+req.version) {
		return false
	}
	if req.path == "/" {
		return true
	}
	if !utf8.ValidString(req.path) {
		return false
	}
	rest := req.path[1:]
	first := true
	for {
		seg, more, found := strings.Cut(rest, "/")
		if seg == "" || seg == "." || seg == ".." || (first && looksLikeRouterVersion(seg)) {
			return false
		}
		for i := 0; i < len(seg); i++ {
			if c := seg[i]; c < 0x20 || c == 0x7f || c == '\\' || c == ';' {
				return false
			}
		}
		if !found {
			return true
		}
		rest, first = more, false
	}
}

func mustPresetPolicy(t testing.TB, src string) *Policy {
	t.Helper()
	p, err := ParsePreset("literal", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	pol, err := NewPolicy(p, Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	return pol
}
