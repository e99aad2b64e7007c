package isolation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/sockguard/sockguard/broker/docker"
	"github.com/sockguard/sockguard/broker/pipeline"
	"github.com/sockguard/sockguard/policy"
)

func TestObjectRoute(t *testing.T) {
	tests := []struct {
		method, path string
		ok           bool
		kind         policy.ObjectKind
		ref          string
		rebuilt      string // prefix + "ID" + suffix
	}{
		{"GET", "/containers/json", false, 0, "", ""},
		{"POST", "/containers/create", false, 0, "", ""},
		{"POST", "/containers/prune", false, 0, "", ""},
		{"GET", "/containers/abc/json", true, policy.ObjectContainer, "abc", "/containers/ID/json"},
		{"DELETE", "/containers/abc", true, policy.ObjectContainer, "abc", "/containers/ID"},
		{"DELETE", "/containers/json", true, policy.ObjectContainer, "json", "/containers/ID"},
		{"GET", "/containers/json/json", true, policy.ObjectContainer, "json", "/containers/ID/json"},
		{"POST", "/containers/abc/exec", true, policy.ObjectContainer, "abc", "/containers/ID/exec"},
		{"PUT", "/containers/abc/archive", true, policy.ObjectContainer, "abc", "/containers/ID/archive"},
		{"GET", "/containers/a/b/logs", true, policy.ObjectContainer, "a/b", "/containers/ID/logs"},
		{"POST", "/exec/e1/start", true, policy.ObjectExec, "e1", "/exec/ID/start"},
		{"GET", "/exec/e1", false, 0, "", ""},
		{"GET", "/networks", false, 0, "", ""},
		{"POST", "/networks/create", false, 0, "", ""},
		{"POST", "/networks/prune", false, 0, "", ""},
		{"GET", "/networks/n1", true, policy.ObjectNetwork, "n1", "/networks/ID"},
		{"DELETE", "/networks/n1", true, policy.ObjectNetwork, "n1", "/networks/ID"},
		{"POST", "/networks/n1/connect", true, policy.ObjectNetwork, "n1", "/networks/ID/connect"},
		{"POST", "/networks/n1/disconnect", true, policy.ObjectNetwork, "n1", "/networks/ID/disconnect"},
		{"GET", "/volumes", false, 0, "", ""},
		{"POST", "/volumes/create", false, 0, "", ""},
		{"GET", "/volumes/v1", true, policy.ObjectVolume, "v1", "/volumes/ID"},
		{"DELETE", "/volumes/v1", true, policy.ObjectVolume, "v1", "/volumes/ID"},
		{"GET", "/images/json", false, 0, "", ""},
		{"GET", "/_ping", false, 0, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req := mustReq(t, tt.method, tt.path)
			k := req.Route().Object()
			ok := Isolated(k)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if !ok {
				return
			}
			got, err := req.WithObjectID("ID")
			if err != nil {
				t.Fatal(err)
			}
			if k != tt.kind || req.Route().Ref() != tt.ref || got.Path != tt.rebuilt {
				t.Fatalf("got kind %d ref %q path %q", k, req.Route().Ref(), got.Path)
			}
		})
	}
}

func TestMergeOwnerFilter(t *testing.T) {
	own := OwnerLabel + "=t-1"
	tests := []struct {
		name, raw string
		want      map[string]map[string]bool
		err       bool
	}{
		{"empty", "", map[string]map[string]bool{"label": {own: true}}, false},
		{"null", "null", map[string]map[string]bool{"label": {own: true}}, false},
		{"map form keeps caller labels", `{"label":{"job=1":true},"status":{"exited":true}}`,
			map[string]map[string]bool{"label": {"job=1": true, own: true}, "status": {"exited": true}}, false},
		{"array form", `{"label":["job=1","x"],"name":["db"]}`,
			map[string]map[string]bool{"label": {"job=1": true, "x": true, own: true}, "name": {"db": true}}, false},
		{"caller cannot replace the owner", `{"label":{"` + OwnerLabel + `=t-2":true}}`,
			map[string]map[string]bool{"label": {OwnerLabel + "=t-2": true, own: true}}, false},
		{"duplicate keys: last wins as in dockerd", `{"label":{"a=1":true},"label":{"b=2":true}}`,
			map[string]map[string]bool{"label": {"b=2": true, own: true}}, false},
		{"label!= is kept", `{"label!":{"a=1":true}}`,
			map[string]map[string]bool{"label!": {"a=1": true}, "label": {own: true}}, false},
		{"not JSON", `{label`, nil, true},
		{"wrong shape", `{"label":"x"}`, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := MergeOwnerFilter(tt.raw, "t-1")
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if err != nil {
				return
			}
			var got map[string]map[string]bool
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestStampOwner(t *testing.T) {
	tests := []struct {
		name, body string
		labelKey   string
		want       map[string]string
	}{
		{"empty body", "", "Labels", map[string]string{OwnerLabel: "t-1"}},
		{"no labels", `{"Image":"x"}`, "Labels", map[string]string{OwnerLabel: "t-1"}},
		{"spoofed owner is overwritten", `{"Labels":{"` + OwnerLabel + `":"t-2","a":"b"}}`, "Labels", map[string]string{OwnerLabel: "t-1", "a": "b"}},
		{"lower-case key is the one dockerd reads", `{"labels":{"` + OwnerLabel + `":"t-2"}}`, "labels", map[string]string{OwnerLabel: "t-1"}},
		{"null labels", `{"Labels":null}`, "Labels", map[string]string{OwnerLabel: "t-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := stampOwner([]byte(tt.body), "t-1")
			if err != nil {
				t.Fatal(err)
			}
			var top map[string]json.RawMessage
			if err := json.Unmarshal(out, &top); err != nil {
				t.Fatal(err)
			}
			var got map[string]string
			if err := json.Unmarshal(top[tt.labelKey], &got); err != nil {
				t.Fatalf("%s: %v in %s", tt.labelKey, err, out)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
	if _, err := stampOwner([]byte(`{"Labels":"x"}`), "t-1"); err == nil {
		t.Fatal("non-object Labels accepted")
	}
}

func TestScrubConflict(t *testing.T) {
	in := `Conflict. The container name "/job" is already in use by container "83ee47ccf22412345678901234567890123456789012345678901234567890ab". You have to remove (or rename) that container to be able to reuse that name.`
	want := `Conflict. The container name "/job" is already in use. You have to remove (or rename) that container to be able to reuse that name.`
	if got := ScrubConflict(in); got != want {
		t.Fatalf("got %q", got)
	}
}

func TestIsolateQuery(t *testing.T) {
	iso := Isolator{owner: "t-1"}
	own := OwnerLabel + "=t-1"
	tests := []struct {
		name, method, target string
		check                func(t *testing.T, q url.Values)
		err                  bool
	}{
		{"container list gets the owner filter", "GET", "/containers/json?all=1", func(t *testing.T, q url.Values) {
			if !strings.Contains(q.Get("filters"), own) || q.Get("all") != "1" {
				t.Fatalf("query %v", q)
			}
		}, false},
		{"events keep the caller's filters", "GET", `/events?filters={"type":["container"]}`, func(t *testing.T, q url.Values) {
			f := q.Get("filters")
			if !strings.Contains(f, own) || !strings.Contains(f, `"type":{"container":true}`) {
				t.Fatalf("filters %s", f)
			}
		}, false},
		{"prune", "POST", "/volumes/prune", func(t *testing.T, q url.Values) {
			if !strings.Contains(q.Get("filters"), own) {
				t.Fatalf("query %v", q)
			}
		}, false},
		{"two filters parameters are ambiguous", "GET", "/networks?filters={}&filters={}", nil, true},
		{"build labels get the owner", "POST", `/build?labels={"` + OwnerLabel + `":"t-2","a":"b"}`, func(t *testing.T, q url.Values) {
			var l map[string]string
			if err := json.Unmarshal([]byte(q.Get("labels")), &l); err != nil {
				t.Fatal(err)
			}
			if l[OwnerLabel] != "t-1" || l["a"] != "b" {
				t.Fatalf("labels %v", l)
			}
		}, false},
		{"build networkmode default untouched", "POST", "/build?networkmode=default", func(t *testing.T, q url.Values) {
			if q.Get("networkmode") != "default" {
				t.Fatalf("query %v", q)
			}
		}, false},
		{"other routes untouched", "GET", "/containers/abc/json?size=1", func(t *testing.T, q url.Values) {
			if q.Encode() != "size=1" {
				t.Fatalf("query %v", q)
			}
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := url.Parse(tt.target)
			if err != nil {
				t.Fatal(err)
			}
			req, err := policy.Canonicalize(tt.method, u.Path, u.RawQuery)
			if err != nil {
				t.Fatal(err)
			}
			raw, err := iso.isolatedQuery(context.Background(), req)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if err != nil {
				return
			}
			q, err := url.ParseQuery(raw)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, q)
		})
	}
}

// fakeObjects is a small in-memory dockerd for isolation's lookups: objects
// by kind, found by full id, name or unique id prefix, as dockerd finds them.
type fakeObjects struct {
	objs    map[policy.ObjectKind][]objectInfo
	lookups int                            // inspect calls
	creates map[string]docker.VolumeCreate // volumes created, by name
}

var _ Daemon = (*fakeObjects)(nil)

// notFound is the fake's answer for a missing object: dockerd's 404.
var notFound = &docker.StatusError{Method: "GET", Status: http.StatusNotFound, StatusLine: "404 Not Found"}

func (f *fakeObjects) InspectContainer(ctx context.Context, ref string) (docker.Container, error) {
	o, ok, _ := f.inspect(ctx, policy.ObjectContainer, ref)
	if !ok {
		return docker.Container{}, notFound
	}
	return docker.Container{ID: o.ID, Name: o.Name, Labels: o.Labels}, nil
}

func (f *fakeObjects) InspectExec(ctx context.Context, ref string) (docker.Exec, error) {
	o, ok, _ := f.inspect(ctx, policy.ObjectExec, ref)
	if !ok {
		return docker.Exec{}, notFound
	}
	return docker.Exec{ID: o.ID, ContainerID: o.ContainerID}, nil
}

func (f *fakeObjects) InspectNetwork(ctx context.Context, ref string) (docker.Network, error) {
	o, ok, _ := f.inspect(ctx, policy.ObjectNetwork, ref)
	if !ok {
		return docker.Network{}, notFound
	}
	return docker.Network{ID: o.ID, Name: o.Name, Labels: o.Labels}, nil
}

func (f *fakeObjects) InspectVolume(ctx context.Context, name string) (docker.Volume, error) {
	o, ok, _ := f.inspect(ctx, policy.ObjectVolume, name)
	if !ok {
		return docker.Volume{}, notFound
	}
	return docker.Volume{Name: o.Name, Labels: o.Labels}, nil
}

func (f *fakeObjects) inspect(_ context.Context, k policy.ObjectKind, ref string) (objectInfo, bool, error) {
	f.lookups++
	var byPrefix []objectInfo
	for _, o := range f.objs[k] {
		if o.ID == ref || o.Name == ref {
			return o, true, nil
		}
		if k != policy.ObjectVolume && strings.HasPrefix(o.ID, ref) {
			byPrefix = append(byPrefix, o)
		}
	}
	if len(byPrefix) == 1 {
		return byPrefix[0], true, nil
	}
	return objectInfo{}, false, nil // missing, or an ambiguous prefix
}

func (f *fakeObjects) CreateVolume(_ context.Context, v docker.VolumeCreate) error {
	f.objs[policy.ObjectVolume] = append(f.objs[policy.ObjectVolume], objectInfo{ID: v.Name, Name: v.Name, Labels: v.Labels})
	if f.creates == nil {
		f.creates = map[string]docker.VolumeCreate{}
	}
	f.creates[v.Name] = v
	return nil
}

// ListContainers answers like dockerd 20.10 for a missing since/before.
func (f *fakeObjects) ListContainers(_ context.Context, _ bool, filters string) ([]docker.ContainerSummary, error) {
	var args map[string]map[string]bool
	if err := json.Unmarshal([]byte(filters), &args); err != nil {
		return nil, err
	}
	for _, k := range []string{"since", "before"} {
		for ref := range args[k] {
			return nil, &docker.StatusError{Method: "GET", Path: "/containers/json", Status: http.StatusInternalServerError,
				StatusLine: "500 Internal Server Error", Message: "no such container " + ref}
		}
	}
	return nil, nil
}

func owned(id, name, owner string) objectInfo {
	return objectInfo{ID: id, Name: name, Labels: map[string]string{OwnerLabel: owner}}
}

func newFakeObjects() *fakeObjects {
	const a, b = "t-a", "t-b"
	return &fakeObjects{objs: map[policy.ObjectKind][]objectInfo{
		policy.ObjectContainer: {
			owned("aaaa0001", "job", a), owned("aaaa0002", "db", a),
			owned("bbbb0001", "victim", b),
			// A's decoy, named like the id prefix of B's container.
			owned("aaaa0003", "bbbb", a),
			{ID: "cccc0001", Name: "operator"}, // no owner label
		},
		policy.ObjectNetwork: {
			owned("aaaa1001", "anet", a), owned("aaaa1002", "anet2", a), owned("bbbb1001", "bnet", b),
			owned("bbbb2002", "bcfg", b), owned("aaaa1003", "acfg", a),
		},
		policy.ObjectVolume: {owned("avol", "avol", a), owned("bvol", "bvol", b)},
		policy.ObjectExec: {
			{ID: "eeee0001", ContainerID: "aaaa0001"}, {ID: "eeee0002", ContainerID: "bbbb0001"},
		},
	}}
}

func TestResolveMissingAndForeign(t *testing.T) {
	tests := []struct {
		name    string
		kind    policy.ObjectKind
		ref     string
		id      string // "" : refused
		foreign bool
	}{
		{"own by name", policy.ObjectContainer, "job", "aaaa0001", false},
		{"own by prefix", policy.ObjectContainer, "aaaa0002", "aaaa0002", false},
		{"missing", policy.ObjectContainer, "nosuch", "", false},
		{"ambiguous prefix is missing", policy.ObjectContainer, "aaaa", "", false},
		{"foreign by name", policy.ObjectContainer, "victim", "", true},
		{"foreign by prefix", policy.ObjectContainer, "bbbb00", "", true},
		{"unlabelled", policy.ObjectContainer, "operator", "", true},
		{"empty", policy.ObjectContainer, "", "", false},
		{"leading slash", policy.ObjectContainer, "/job", "", false},
		{"query characters", policy.ObjectContainer, "job?x", "", false},
		{"own exec", policy.ObjectExec, "eeee0001", "eeee0001", false},
		{"foreign exec", policy.ObjectExec, "eeee0002", "", true},
		{"missing exec", policy.ObjectExec, "eeee9", "", false},
		{"foreign network", policy.ObjectNetwork, "bnet", "", true},
		{"missing volume", policy.ObjectVolume, "nosuch", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			iso := Isolator{owner: "t-a", daemon: newFakeObjects()}
			id, err := iso.resolve(context.Background(), tt.kind, tt.ref)
			if tt.id != "" {
				if err != nil || id != tt.id {
					t.Fatalf("resolve = %q, %v; want %q", id, err, tt.id)
				}
				return
			}
			var nf *NoSuchObject
			if !errors.As(err, &nf) {
				t.Fatalf("resolve = %q, %v; want *NoSuchObject", id, err)
			}
			if nf.Foreign != tt.foreign {
				t.Fatalf("foreign = %v, want %v", nf.Foreign, tt.foreign)
			}
			if nf.Status() != http.StatusNotFound || nf.Error() != notFoundMessage(tt.kind, tt.ref) {
				t.Fatalf("answer %d %q: a foreign object must look exactly like a missing one", nf.Status(), nf.Error())
			}
		})
	}
}

func TestIsolateBodyRefs(t *testing.T) {
	type result struct {
		body    string // forwarded body, owner label left out; "" when refused
		foreign bool   // refused as another tenant's object
		missing bool   // refused as a missing object
		bad     bool   // refused as malformed (400)
	}
	tests := []struct {
		name string
		path string // "/containers/create", "/networks/create" or a canonical connect path
		body string
		want result
	}{
		{"namespace joins forward the full id", "/containers/create",
			`{"HostConfig":{"NetworkMode":"none","PidMode":"container:job","IpcMode":"container:aaaa0002"}}`,
			result{body: `{"HostConfig":{"NetworkMode":"none","PidMode":"container:aaaa0001","IpcMode":"container:aaaa0002"}}`}},
		{"decoy named like a prefix of another tenant's id resolves to the decoy", "/containers/create",
			`{"HostConfig":{"PidMode":"container:bbbb"}}`,
			result{body: `{"HostConfig":{"PidMode":"container:aaaa0003"}}`}},
		{"volumes-from and links", "/containers/create",
			`{"HostConfig":{"VolumesFrom":["db:ro"],"Links":["db:database","job"]}}`,
			result{body: `{"HostConfig":{"VolumesFrom":["aaaa0002:ro"],"Links":["aaaa0002:database","aaaa0001:job"]}}`}},
		{"foreign volumes-from", "/containers/create", `{"HostConfig":{"VolumesFrom":["victim"]}}`, result{foreign: true}},
		{"missing link", "/containers/create", `{"HostConfig":{"Links":["nosuch:x"]}}`, result{missing: true}},
		{"network by name with alias", "/containers/create",
			`{"HostConfig":{"NetworkMode":"anet"},"NetworkingConfig":{"EndpointsConfig":{"anet":{"Aliases":["svc"]}}}}`,
			result{body: `{"HostConfig":{"NetworkMode":"aaaa1001"},"NetworkingConfig":{"EndpointsConfig":{"aaaa1001":{"Aliases":["svc"],"NetworkID":"aaaa1001"}}}}`}},
		{"NetworkID hijack by name", "/containers/create",
			`{"HostConfig":{"NetworkMode":"anet"},"NetworkingConfig":{"EndpointsConfig":{"anet":{"NetworkID":"bnet"}}}}`,
			result{foreign: true}},
		{"NetworkID hijack by short id prefix", "/containers/create",
			`{"HostConfig":{"NetworkMode":"anet"},"NetworkingConfig":{"EndpointsConfig":{"anet":{"NetworkID":"bbbb10"}}}}`,
			result{foreign: true}},
		{"NetworkID naming another own network", "/containers/create",
			`{"NetworkingConfig":{"EndpointsConfig":{"anet":{"NetworkID":"anet2"}}}}`, result{bad: true}},
		{"named volume created for the tenant", "/containers/create",
			`{"HostConfig":{"Binds":["fresh:/x"]}}`, result{body: `{"HostConfig":{"Binds":["fresh:/x"]}}`}},
		{"foreign named volume", "/containers/create", `{"HostConfig":{"Mounts":[{"Type":"volume","Source":"bvol","Target":"/x"}]}}`, result{foreign: true}},
		{"connect", "/networks/aaaa1001/connect", `{"Container":"job","EndpointConfig":{"Aliases":["svc"]}}`,
			result{body: `{"Container":"aaaa0001","EndpointConfig":{"Aliases":["svc"],"NetworkID":"aaaa1001"}}`}},
		{"connect NetworkID hijack by prefix", "/networks/aaaa1001/connect", `{"Container":"job","EndpointConfig":{"NetworkID":"bbbb10"}}`, result{foreign: true}},
		{"connect NetworkID of another own network", "/networks/aaaa1001/connect", `{"Container":"job","EndpointConfig":{"NetworkID":"anet2"}}`, result{bad: true}},
		{"connect foreign container", "/networks/aaaa1001/connect", `{"Container":"victim"}`, result{foreign: true}},
		{"disconnect", "/networks/aaaa1001/disconnect", `{"Container":"db","Force":true}`, result{body: `{"Container":"aaaa0002","Force":true}`}},
		{"config-from own", "/networks/create", `{"Name":"x","ConfigFrom":{"Network":"acfg"}}`,
			result{body: `{"Name":"x","ConfigFrom":{"Network":"acfg"},"CheckDuplicate":true}`}},
		{"config-from foreign", "/networks/create", `{"Name":"x","ConfigFrom":{"Network":"bcfg"}}`, result{foreign: true}},
		{"config-from by id is not by name", "/networks/create", `{"Name":"x","ConfigFrom":{"Network":"aaaa1003"}}`, result{missing: true}},
		{"over the cap", "/containers/create", capBody(policy.MaxBodyRefs + 1), result{bad: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var vols []pipeline.Volume
			iso := Isolator{owner: "t-a", daemon: newFakeObjects(), volumes: &vols}
			ctx := context.Background()
			var out []byte
			var err error
			switch tt.path {
			case "/containers/create":
				out, err = iso.isolateContainerCreate(ctx, []byte(tt.body))
			case "/networks/create":
				out, err = iso.isolateNetworkCreate(ctx, []byte(tt.body))
			default:
				out, err = iso.isolateNetworkConnect(ctx, mustReq(t, "POST", tt.path), []byte(tt.body))
			}
			var nf *NoSuchObject
			var amb Malformed
			switch {
			case tt.want.body != "":
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if strings.Contains(tt.name, "volume created") && (len(vols) != 1 || vols[0].Name != "fresh") {
					t.Fatalf("volumes to create %+v, want fresh", vols)
				}
				var doc map[string]any
				if err := json.Unmarshal(out, &doc); err != nil {
					t.Fatal(err)
				}
				if tt.path != "/networks/aaaa1001/connect" && tt.path != "/networks/aaaa1001/disconnect" {
					if l, _ := doc["Labels"].(map[string]any); l[OwnerLabel] != "t-a" {
						t.Fatalf("owner label not stamped: %s", out)
					}
					delete(doc, "Labels")
				}
				var want map[string]any
				if err := json.Unmarshal([]byte(tt.want.body), &want); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(doc, want) {
					t.Fatalf("forwarded\n  %s\nwant\n  %s", out, tt.want.body)
				}
			case tt.want.foreign || tt.want.missing:
				if !errors.As(err, &nf) || nf.Foreign != tt.want.foreign {
					t.Fatalf("err = %#v, want NoSuchObject{Foreign: %v}", err, tt.want.foreign)
				}
			case tt.want.bad:
				if !errors.As(err, &amb) {
					t.Fatalf("err = %v, want a malformed-body refusal", err)
				}
			}
		})
	}
}

// capBody is a create body naming n distinct containers in VolumesFrom.
func capBody(n int) string {
	vf := make([]string, n)
	for i := range vf {
		vf[i] = fmt.Sprintf("c%d", i)
	}
	b, _ := json.Marshal(map[string]any{"HostConfig": map[string]any{"VolumesFrom": vf}})
	return string(b)
}

// TestBodyRefLookupsBounded: 20,000 VolumesFrom entries cost one lookup
// when they repeat one container, and none when they name more than the
// cap.
func TestBodyRefLookupsBounded(t *testing.T) {
	same := make([]string, 20000)
	for i := range same {
		same[i] = "db"
	}
	body, _ := json.Marshal(map[string]any{"HostConfig": map[string]any{"VolumesFrom": same}})
	d := newFakeObjects()
	iso := Isolator{owner: "t-a", daemon: d}
	if _, err := iso.isolateContainerCreate(context.Background(), body); err != nil {
		t.Fatal(err)
	}
	if d.lookups != 1 {
		t.Fatalf("20000 copies of one reference made %d lookups, want 1", d.lookups)
	}
	d.lookups = 0
	_, err := iso.isolateContainerCreate(context.Background(), []byte(capBody(20000)))
	var amb Malformed
	if !errors.As(err, &amb) || !strings.Contains(err.Error(), "more than 64") {
		t.Fatalf("20000 distinct references: err = %v, want a 400 naming the cap", err)
	}
	if d.lookups != 0 {
		t.Fatalf("a body over the cap made %d lookups, want 0", d.lookups)
	}
}

func TestIsolateContainerStart(t *testing.T) {
	for body, ok := range map[string]bool{"": true, " {} ": true, "null": true,
		`{"HostConfig":{"PidMode":"container:victim"}}`: false, `{"x":1}`: false} {
		if err := isolateContainerStart([]byte(body)); (err == nil) != ok {
			t.Errorf("start body %q: err = %v", body, err)
		}
	}
}

func TestIsolateListRefs(t *testing.T) {
	tests := []struct {
		name, filters string
		want          map[string]map[string]bool // since/before after isolation
		foreign       bool
		missing       bool
	}{
		{"own container by name", `{"since":{"job":true}}`, map[string]map[string]bool{"since": {"aaaa0001": true}}, false, false},
		{"legacy encoding", `{"before":["db"]}`, map[string]map[string]bool{"before": {"aaaa0002": true}}, false, false},
		{"another tenant's", `{"since":{"victim":true}}`, nil, true, false},
		{"missing", `{"before":{"nosuch":true}}`, nil, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			iso := Isolator{owner: "t-a", daemon: newFakeObjects()}
			req, err := policy.Canonicalize("GET", "/containers/json", "filters="+url.QueryEscape(tt.filters))
			if err != nil {
				t.Fatal(err)
			}
			raw, err := iso.isolatedQuery(context.Background(), req)
			if tt.foreign || tt.missing {
				var nf *NoSuchObject
				if !errors.As(err, &nf) || nf.Foreign != tt.foreign {
					t.Fatalf("err = %v, want NoSuchObject{Foreign: %v}", err, tt.foreign)
				}
				ref := "victim"
				if tt.missing {
					ref = "nosuch"
				}
				// dockerd's own answer for a missing one, whatever it is.
				if nf.Status() != http.StatusInternalServerError || nf.Error() != "no such container "+ref {
					t.Fatalf("answer %d %q", nf.Status(), nf.Error())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			q, _ := url.ParseQuery(raw)
			var args map[string]map[string]bool
			if err := json.Unmarshal([]byte(q.Get("filters")), &args); err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.want {
				if !reflect.DeepEqual(args[k], v) {
					t.Fatalf("%s = %v, want %v", k, args[k], v)
				}
			}
			if !args["label"][OwnerLabel+"=t-a"] {
				t.Fatalf("owner filter missing: %v", args)
			}
		})
	}
}

func TestIsolateBuildNetworkMode(t *testing.T) {
	for _, tt := range []struct {
		nm, want string
		foreign  bool
	}{
		{"anet", "aaaa1001", false},
		{"container:job", "container:aaaa0001", false},
		{"bnet", "", true},
		{"container:victim", "", true},
	} {
		iso := Isolator{owner: "t-a", daemon: newFakeObjects()}
		req, err := policy.Canonicalize("POST", "/build", "networkmode="+url.QueryEscape(tt.nm))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := iso.isolatedQuery(context.Background(), req)
		var nf *NoSuchObject
		switch {
		case tt.foreign && (!errors.As(err, &nf) || !nf.Foreign):
			t.Errorf("networkmode %s: err = %v, want a foreign-object refusal", tt.nm, err)
		case !tt.foreign && err != nil:
			t.Errorf("networkmode %s: %v", tt.nm, err)
		case !tt.foreign:
			if q, _ := url.ParseQuery(raw); q.Get("networkmode") != tt.want {
				t.Errorf("networkmode %s forwarded as %q, want %q", tt.nm, q.Get("networkmode"), tt.want)
			}
		}
	}
}

// TestOwnVolumeKeepsTheBodysSpec: a named volume the broker creates ahead
// of dockerd gets the driver, options and labels the body gives it (the
// first mount naming it wins, as in dockerd), never another owner.
func TestOwnVolumeKeepsTheBodysSpec(t *testing.T) {
	owner := map[string]string{OwnerLabel: "t-a"}
	tests := []struct {
		name, body string
		want       docker.VolumeCreate
	}{
		{"bind of a new volume", `{"HostConfig":{"Binds":["fresh:/x"]}}`, docker.VolumeCreate{Name: "fresh", Labels: owner}},
		{"bind with a volume driver", `{"HostConfig":{"VolumeDriver":"local","Binds":["fresh:/x"]}}`,
			docker.VolumeCreate{Name: "fresh", Driver: "local", Labels: owner}},
		{"tmpfs volume through a mount", `{"HostConfig":{"Mounts":[{"Type":"volume","Source":"fresh","Target":"/x",` +
			`"VolumeOptions":{"Labels":{"app":"ci","io.sockguard.owner":"t-b"},"DriverConfig":{"Name":"local","Options":{"type":"tmpfs","device":"tmpfs","o":"size=1m"}}}},` +
			`{"Type":"volume","Source":"fresh","Target":"/y"}]}}`,
			docker.VolumeCreate{Name: "fresh", Driver: "local", DriverOpts: map[string]string{"type": "tmpfs", "device": "tmpfs", "o": "size=1m"},
				Labels: map[string]string{"app": "ci", "io.sockguard.owner": "t-a"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs := newFakeObjects()
			var vols []pipeline.Volume
			iso := Isolator{owner: "t-a", daemon: objs, volumes: &vols}
			if _, err := iso.isolateContainerCreate(context.Background(), []byte(tt.body)); err != nil {
				t.Fatal(err)
			}
			if _, ok := objs.creates["fresh"]; ok {
				t.Fatal("the volume was created while the request was judged")
			}
			if err := iso.CreateVolumes(context.Background(), vols); err != nil {
				t.Fatal(err)
			}
			got, ok := objs.creates["fresh"]
			if !ok {
				t.Fatal("the volume was not created")
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("spec %+v, want %+v", got, tt.want)
			}
			for _, o := range objs.objs[policy.ObjectVolume] {
				if o.Name == "fresh" && o.Labels[OwnerLabel] != "t-a" {
					t.Fatalf("owner %q", o.Labels[OwnerLabel])
				}
			}
		})
	}
}

func mustReq(t testing.TB, method, target string) policy.Request {
	t.Helper()
	p, q, _ := strings.Cut(target, "?")
	req, err := policy.Canonicalize(method, p, q)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// pinLabel is the broker's pin label, stamped through SetLabelTop.
const pinLabel = "io.sockguard.pin"

func TestSetLabel(t *testing.T) {
	tests := []struct {
		name, body, value string
		want              map[string]string // nil: no Labels key expected
		same              bool              // the body comes back unchanged
	}{
		// An empty value is stamped, never left out: dockerd would give the
		// container its image's label of that name.
		{name: "empty value stamped", body: `{"Image":"x"}`, want: map[string]string{pinLabel: ""}},
		{name: "empty body, empty value stamped", body: ``, want: map[string]string{pinLabel: ""}},
		{name: "set", body: `{"Image":"x"}`, value: "p1", want: map[string]string{pinLabel: "p1"}},
		{name: "tenant value replaced", body: `{"Labels":{"a":"b","` + pinLabel + `":"evil"}}`, value: "p1",
			want: map[string]string{"a": "b", pinLabel: "p1"}},
		{name: "tenant value emptied", body: `{"Labels":{"a":"b","` + pinLabel + `":"evil"}}`,
			want: map[string]string{"a": "b", pinLabel: ""}},
		{name: "case-folded key", body: `{"labels":{"` + pinLabel + `":"evil"}}`, value: "p1",
			want: map[string]string{pinLabel: "p1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := setLabel([]byte(tc.body), pinLabel, tc.value)
			if err != nil {
				t.Fatal(err)
			}
			if tc.same {
				if string(out) != tc.body && !(tc.body == "" && string(out) == "{}") {
					t.Fatalf("body changed: %s", out)
				}
				return
			}
			var top map[string]json.RawMessage
			if err := json.Unmarshal(out, &top); err != nil {
				t.Fatal(err)
			}
			var labels map[string]string
			for k, v := range top {
				if strings.EqualFold(k, "Labels") {
					if err := json.Unmarshal(v, &labels); err != nil {
						t.Fatalf("Labels: %v", err)
					}
				}
			}
			if len(labels) != len(tc.want) {
				t.Fatalf("labels %v, want %v", labels, tc.want)
			}
			for k, v := range tc.want {
				if labels[k] != v {
					t.Fatalf("labels %v, want %v", labels, tc.want)
				}
			}
		})
	}
	if _, err := setLabel([]byte(`{"Labels":["x"]}`), pinLabel, "p"); err == nil {
		t.Fatal("Labels of the wrong type accepted")
	}
}
