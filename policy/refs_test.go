package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// fakeIDs resolves every reference to "<kind>-<ref>-id" (volumes to their
// name), the way the broker fills Forward's map.
func fakeIDs(b *BodyRefs) map[RefKey]string {
	ids := map[RefKey]string{}
	for _, k := range b.Distinct() {
		switch {
		case k.Kind == RefVolume, k.ByName:
			ids[k] = k.Ref
		default:
			ids[k] = k.Kind.String() + "-" + k.Ref + "-id"
		}
	}
	return ids
}

// jsonEq decodes both and compares.
func jsonEq(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("forwarded body is not JSON: %v: %s", err, got)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want: %v", err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("forwarded\n  %s\nwant\n  %s", got, want)
	}
}

func TestContainerCreateRefs(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		want    []ContainerRef
		forward string // "" : the body is forwarded unchanged
		err     string // non-empty: extraction fails with this in the message
		// mismatch: fakeIDs resolves the references apart (see TestForwardChecksNetworkID)
		mismatch bool
	}{
		{name: "none", body: dockerRunBody},
		{name: "empty body", body: ""},
		{name: "joins", body: `{"HostConfig":{"NetworkMode":"container:web","PidMode":"container:/db","IpcMode":"container:db","VolumesFrom":["data:ro","/data"],"Links":["/cache:/me/c","db"]}}`,
			want: []ContainerRef{
				{Kind: RefContainer, Field: "HostConfig.NetworkMode", Ref: "web"}, {Kind: RefContainer, Field: "HostConfig.PidMode", Ref: "db"},
				{Kind: RefContainer, Field: "HostConfig.IpcMode", Ref: "db"},
				{Kind: RefContainer, Field: "HostConfig.VolumesFrom[0]", Ref: "data"}, {Kind: RefContainer, Field: "HostConfig.VolumesFrom[1]", Ref: "data"},
				{Kind: RefContainer, Field: "HostConfig.Links[0]", Ref: "cache"}, {Kind: RefContainer, Field: "HostConfig.Links[1]", Ref: "db"},
			},
			forward: `{"HostConfig":{"NetworkMode":"container:container-web-id","PidMode":"container:container-db-id","IpcMode":"container:container-db-id",
				"VolumesFrom":["container-data-id:ro","container-data-id"],"Links":["container-cache-id:c","container-db-id:db"]}}`},
		{name: "every namespace field", body: `{"HostConfig":{"UTSMode":"container:a","UsernsMode":"container:b","CgroupnsMode":"container:c","Cgroup":"container:d"}}`,
			want: []ContainerRef{
				{Kind: RefContainer, Field: "HostConfig.UTSMode", Ref: "a"}, {Kind: RefContainer, Field: "HostConfig.UsernsMode", Ref: "b"},
				{Kind: RefContainer, Field: "HostConfig.CgroupnsMode", Ref: "c"}, {Kind: RefContainer, Field: "HostConfig.Cgroup", Ref: "d"},
			},
			forward: `{"HostConfig":{"UTSMode":"container:container-a-id","UsernsMode":"container:container-b-id","CgroupnsMode":"container:container-c-id","Cgroup":"container:container-d-id"}}`},
		{name: "lower-case field names are the ones rewritten", body: `{"hostconfig":{"pidmode":"container:x"}}`,
			want:    []ContainerRef{{Kind: RefContainer, Field: "HostConfig.PidMode", Ref: "x"}},
			forward: `{"hostconfig":{"pidmode":"container:container-x-id"}}`},
		{name: "top-level host config", body: `{"PidMode":"container:x","VolumesFrom":["y:rw"]}`,
			want:    []ContainerRef{{Kind: RefContainer, Field: "PidMode", Ref: "x"}, {Kind: RefContainer, Field: "VolumesFrom[0]", Ref: "y"}},
			forward: `{"PidMode":"container:container-x-id","VolumesFrom":["container-y-id:rw"]}`},
		{name: "network mode gets an endpoint pinned by id", body: `{"Image":"i","HostConfig":{"NetworkMode":"jobnet"}}`,
			want:    []ContainerRef{{Kind: RefNetwork, Field: "HostConfig.NetworkMode", Ref: "jobnet"}},
			forward: `{"Image":"i","HostConfig":{"NetworkMode":"network-jobnet-id"},"NetworkingConfig":{"EndpointsConfig":{"network-jobnet-id":{"NetworkID":"network-jobnet-id"}}}}`},
		{name: "docker run --network --network-alias", body: `{"HostConfig":{"NetworkMode":"jobnet"},"NetworkingConfig":{"EndpointsConfig":{"jobnet":{"Aliases":["db"]}}}}`,
			want: []ContainerRef{
				{Kind: RefNetwork, Field: "HostConfig.NetworkMode", Ref: "jobnet"},
				{Kind: RefNetwork, Field: `NetworkingConfig.EndpointsConfig["jobnet"]`, Ref: "jobnet"},
			},
			forward: `{"HostConfig":{"NetworkMode":"network-jobnet-id"},"NetworkingConfig":{"EndpointsConfig":{"network-jobnet-id":{"Aliases":["db"],"NetworkID":"network-jobnet-id"}}}}`},
		{name: "NetworkID is a reference", body: `{"HostConfig":{"NetworkMode":"a"},"NetworkingConfig":{"EndpointsConfig":{"a":{"NetworkID":"b"},"none":{}}}}`,
			want: []ContainerRef{
				{Kind: RefNetwork, Field: "HostConfig.NetworkMode", Ref: "a"},
				{Kind: RefNetwork, Field: `NetworkingConfig.EndpointsConfig["a"]`, Ref: "a"},
				{Kind: RefNetwork, Field: `NetworkingConfig.EndpointsConfig["a"].NetworkID`, Ref: "b"},
			}, mismatch: true},
		{name: "builtin networks are not references", body: `{"HostConfig":{"NetworkMode":"bridge"},"NetworkingConfig":{"EndpointsConfig":{"default":{},"none":{}}}}`},
		{name: "NetworkID on a builtin network", body: `{"NetworkingConfig":{"EndpointsConfig":{"bridge":{"NetworkID":"abc"}}}}`, err: "only on the tenant's own networks"},
		{name: "null endpoint", body: `{"NetworkingConfig":{"EndpointsConfig":{"n":null}}}`, err: "is null"},
		{name: "volumes at both levels", body: `{"Binds":["top:/a"],"HostConfig":{"Binds":["/host:/h","/anon","named:/n:ro"],"Mounts":[{"Type":"volume","Source":"mv","Target":"/m"},{"Type":"volume","Target":"/anon2"},{"Type":"bind","Source":"/x","Target":"/y"}]}}`,
			want: []ContainerRef{
				{Kind: RefVolume, Field: "Binds[0]", Ref: "top"},
				{Kind: RefVolume, Field: "HostConfig.Binds[2]", Ref: "named"}, {Kind: RefVolume, Field: "HostConfig.Mounts[0].Source", Ref: "mv"},
			}},
		{name: "folded container prefix", body: `{"HostConfig":{"PidMode":"Container:x"}}`, err: "write the prefix"},
		{name: "empty container", body: `{"HostConfig":{"IpcMode":"container:"}}`, err: "names no container"},
		{name: "empty volumes-from", body: `{"HostConfig":{"VolumesFrom":[""]}}`, err: "names no container"},
		{name: "bad link", body: `{"HostConfig":{"Links":["a:b:c"]}}`, err: "name[:alias]"},
		{name: "ambiguous", body: `{"HostConfig":{"PidMode":"","pidmode":"container:x"}}`, err: "ambiguous"},
		{name: "wrong type", body: `{"HostConfig":{"VolumesFrom":"x"}}`, err: "VolumesFrom"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := ContainerCreateRefs([]byte(tc.body))
			if tc.err != "" {
				if err == nil || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want ErrMalformed with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := b.Refs(); !reflect.DeepEqual(got, tc.want) && (len(got) > 0 || len(tc.want) > 0) {
				t.Fatalf("refs\n  %+v\nwant\n  %+v", got, tc.want)
			}
			out, err := b.Forward(fakeIDs(b))
			if tc.mismatch {
				if !errors.Is(err, ErrRefMismatch) {
					t.Fatalf("Forward: err = %v, want ErrRefMismatch", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Forward: %v", err)
			}
			if tc.forward == "" {
				if len(tc.want) == 0 && string(out) != tc.body {
					t.Fatalf("a body without references was re-encoded: %s", out)
				}
				return
			}
			jsonEq(t, out, tc.forward)
		})
	}
}

func TestForwardChecksNetworkID(t *testing.T) {
	body := `{"HostConfig":{"NetworkMode":"mine"},"NetworkingConfig":{"EndpointsConfig":{"mine":{"NetworkID":"theirs"}}}}`
	b, err := ContainerCreateRefs([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	ids := map[RefKey]string{{Kind: RefNetwork, Ref: "mine"}: "id1", {Kind: RefNetwork, Ref: "theirs"}: "id2"}
	if _, err := b.Forward(ids); !errors.Is(err, ErrRefMismatch) {
		t.Fatalf("NetworkID naming another network: err = %v, want ErrRefMismatch", err)
	}
	// Two spellings of one network are one endpoint twice.
	b, err = ContainerCreateRefs([]byte(`{"NetworkingConfig":{"EndpointsConfig":{"mine":{},"1234":{}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	ids = map[RefKey]string{{Kind: RefNetwork, Ref: "mine"}: "123456", {Kind: RefNetwork, Ref: "1234"}: "123456"}
	if _, err := b.Forward(ids); !errors.Is(err, ErrRefMismatch) {
		t.Fatalf("one network under two keys: err = %v, want ErrRefMismatch", err)
	}
	// Same network by name and id prefix: accepted, forwarded by id.
	b, _ = ContainerCreateRefs([]byte(body))
	ids = map[RefKey]string{{Kind: RefNetwork, Ref: "mine"}: "id1", {Kind: RefNetwork, Ref: "theirs"}: "id1"}
	out, err := b.Forward(ids)
	if err != nil {
		t.Fatal(err)
	}
	jsonEq(t, out, `{"HostConfig":{"NetworkMode":"id1"},"NetworkingConfig":{"EndpointsConfig":{"id1":{"NetworkID":"id1"}}}}`)
	// A reference left unresolved is an error, never forwarded as text.
	if _, err := b.Forward(map[RefKey]string{{Kind: RefNetwork, Ref: "mine"}: "id1"}); err == nil {
		t.Fatal("Forward accepted an unresolved reference")
	}
}

func TestBodyRefsCap(t *testing.T) {
	same := make([]string, 20000)
	for i := range same {
		same[i] = "data"
	}
	body, _ := json.Marshal(map[string]any{"HostConfig": map[string]any{"VolumesFrom": same}})
	b, err := ContainerCreateRefs(body)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Refs()) != 20000 || len(b.Distinct()) != 1 {
		t.Fatalf("20000 copies of one reference: %d refs, %d distinct; want 20000 and 1", len(b.Refs()), len(b.Distinct()))
	}
	for _, n := range []int{MaxBodyRefs, MaxBodyRefs + 1, 20000} {
		distinct := make([]string, n)
		for i := range distinct {
			distinct[i] = fmt.Sprintf("c%d", i)
		}
		body, _ := json.Marshal(map[string]any{"HostConfig": map[string]any{"VolumesFrom": distinct}})
		b, err := ContainerCreateRefs(body)
		switch {
		case n <= MaxBodyRefs && (err != nil || len(b.Distinct()) != n):
			t.Fatalf("%d distinct references: %v", n, err)
		case n > MaxBodyRefs && (!errors.Is(err, ErrTooManyRefs) || !errors.Is(err, ErrMalformed)):
			t.Fatalf("%d distinct references: err = %v, want ErrTooManyRefs", n, err)
		}
	}
}

func TestNetworkConnectRefs(t *testing.T) {
	const netID = "netid"
	tests := []struct {
		name    string
		body    string
		connect bool
		ids     map[RefKey]string
		want    []ContainerRef
		forward string
		err     error
	}{
		{name: "docker network connect --alias", body: `{"Container":"job","EndpointConfig":{"Aliases":["svc"]}}`, connect: true,
			want:    []ContainerRef{{Kind: RefContainer, Field: "Container", Ref: "job"}},
			forward: `{"Container":"container-job-id","EndpointConfig":{"Aliases":["svc"],"NetworkID":"netid"}}`},
		{name: "no endpoint config", body: `{"container":"/job"}`, connect: true,
			want:    []ContainerRef{{Kind: RefContainer, Field: "Container", Ref: "job"}},
			forward: `{"container":"container-job-id","EndpointConfig":{"NetworkID":"netid"}}`},
		{name: "NetworkID naming the path's network", body: `{"Container":"job","EndpointConfig":{"NetworkID":"abc"}}`, connect: true,
			ids: map[RefKey]string{{Kind: RefContainer, Ref: "job"}: "cid", {Kind: RefNetwork, Ref: "abc"}: netID},
			want: []ContainerRef{{Kind: RefContainer, Field: "Container", Ref: "job"},
				{Kind: RefNetwork, Field: "EndpointConfig.NetworkID", Ref: "abc"}},
			forward: `{"Container":"cid","EndpointConfig":{"NetworkID":"netid"}}`},
		{name: "NetworkID naming another network", body: `{"Container":"job","EndpointConfig":{"NetworkID":"abc"}}`, connect: true,
			ids: map[RefKey]string{{Kind: RefContainer, Ref: "job"}: "cid", {Kind: RefNetwork, Ref: "abc"}: "other"},
			err: ErrRefMismatch},
		{name: "disconnect", body: `{"Container":"job","Force":true}`,
			want:    []ContainerRef{{Kind: RefContainer, Field: "Container", Ref: "job"}},
			forward: `{"Container":"container-job-id","Force":true}`},
		{name: "no container", body: `{}`, connect: true, err: ErrMalformed},
		{name: "folded", body: `{"Container":"a","container":"b"}`, connect: true, err: ErrMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := NetworkConnectRefs([]byte(tc.body), netID, tc.connect)
			if err == nil {
				if !reflect.DeepEqual(b.Refs(), tc.want) && tc.want != nil {
					t.Fatalf("refs %+v, want %+v", b.Refs(), tc.want)
				}
				ids := tc.ids
				if ids == nil {
					ids = fakeIDs(b)
				}
				var out []byte
				if out, err = b.Forward(ids); err == nil {
					jsonEq(t, out, tc.forward)
				}
			}
			if tc.err != nil && !errors.Is(err, tc.err) || tc.err == nil && err != nil {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
		})
	}
}

func TestNetworkCreateRefs(t *testing.T) {
	b, err := NetworkCreateRefs([]byte(`{"Name":"n","ConfigFrom":{"Network":"cfg"}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := []ContainerRef{{Kind: RefNetwork, Field: "ConfigFrom.Network", Ref: "cfg", ByName: true}}
	if !reflect.DeepEqual(b.Refs(), want) {
		t.Fatalf("refs %+v, want %+v", b.Refs(), want)
	}
	for _, body := range []string{`{"Name":"n"}`, `{"Name":"n","ConfigFrom":null}`, `{"Name":"n","ConfigFrom":{"Network":""}}`} {
		b, err := NetworkCreateRefs([]byte(body))
		if err != nil || len(b.Refs()) != 0 {
			t.Fatalf("%s: refs %+v, err %v", body, b.Refs(), err)
		}
	}
}

// TestFieldTableReferencesExtracted holds the field table against the
// extractor: every field the table says names a container, network or
// volume is returned as a reference when the body sets it.
func TestFieldTableReferencesExtracted(t *testing.T) {
	// Not references for tenant isolation, on purpose:
	exempt := map[string]string{
		"image": "images are judged by image ownership, not by isolation",
	}
	dnsAlias := "EndpointSettings.Links are DNS aliases answered by the network's resolver among the containers on that (owned) network; dockerd looks no object up"
	n := 0
	for _, f := range FieldTable() {
		if f.Refers == "" || exempt[f.Refers] != "" {
			continue
		}
		if strings.HasSuffix(f.Path, "EndpointsConfig.*.Links") || f.Path == "EndpointConfig.Links" {
			t.Logf("%s %s: not extracted: %s", f.Body, f.Path, dnsAlias)
			continue
		}
		if strings.HasSuffix(f.Path, "Mounts") {
			continue // an array of objects: its member Mounts.[].Source is the reference
		}
		n++
		t.Run(string(f.Body)+" "+f.Path, func(t *testing.T) {
			body := map[string]any{}
			if f.Body == BodyNetworkConnect || f.Body == BodyNetworkDisconnect {
				body["Container"] = "c"
			}
			setPath(body, strings.Split(f.Path, "."), refValue(f))
			raw, _ := json.Marshal(body)
			var b *BodyRefs
			var err error
			switch f.Body {
			case BodyContainerCreate:
				b, err = ContainerCreateRefs(raw)
			case BodyNetworkConnect:
				b, err = NetworkConnectRefs(raw, "netid", true)
			case BodyNetworkDisconnect:
				b, err = NetworkConnectRefs(raw, "netid", false)
			case BodyNetworkCreate:
				b, err = NetworkCreateRefs(raw)
			default:
				t.Fatalf("the table has a reference in %s, which has no extractor", f.Body)
			}
			if err != nil {
				t.Fatalf("%s: %v", raw, err)
			}
			for _, r := range b.Refs() {
				if r.Ref == "r" && r.Kind.String() == f.Refers || f.Refers == "network" && r.Kind == RefContainer && r.Ref == "r" {
					return
				}
			}
			t.Fatalf("%s: the extractor returned %+v, no %s reference \"r\"", raw, b.Refs(), f.Refers)
		})
	}
	if n < 10 {
		t.Fatalf("only %d reference fields in the table", n)
	}
}

// refValue is a value of field f that names the object "r".
func refValue(f Field) any {
	leaf := f.Path[strings.LastIndex(f.Path, ".")+1:]
	switch {
	case leaf == "Binds":
		return []any{"r:/dst"}
	case f.kind == kArray:
		return []any{"r"}
	case f.kind == kMap:
		return map[string]any{"r": map[string]any{}}
	case leaf == "NetworkMode" && f.Refers == "network":
		return "r"
	case f.Refers == "container" && strings.HasSuffix(leaf, "Mode"):
		return "container:r"
	}
	return "r"
}

// setPath sets v at path in m, making "[]" an array of one object and "*"
// an entry "k"; a volume mount's Source gets Type "volume".
func setPath(m map[string]any, path []string, v any) {
	if len(path) == 1 {
		m[path[0]] = v
		if path[0] == "Source" {
			m["Type"], m["Target"] = "volume", "/dst"
		}
		return
	}
	child := map[string]any{}
	switch path[1] {
	case "[]":
		m[path[0]] = []any{child}
		path = path[1:]
	case "*":
		m[path[0]] = map[string]any{"k": child}
		path = path[1:]
	default:
		m[path[0]] = child
	}
	setPath(child, path[1:], v)
}

// FuzzContainerCreateRefs: whatever the body, extraction does not panic,
// and what is forwarded names every container and network only by the ids
// it was given: no text of the tenant's survives as a reference.
func FuzzContainerCreateRefs(f *testing.F) {
	for _, s := range []string{
		dockerRunBody,
		`{"HostConfig":{"NetworkMode":"container:web","PidMode":"container:/db","VolumesFrom":["data:ro"],"Links":["/cache:/me/c","db"]}}`,
		`{"PidMode":"container:x","hostconfig":{"ipcmode":"container:y","Cgroup":"container:z"}}`,
		`{"HostConfig":{"NetworkMode":"a"},"NetworkingConfig":{"EndpointsConfig":{"a":{"NetworkID":"a","Aliases":["s"]},"none":{}}}}`,
		`{"HostConfig":{"NetworkMode":"n"}}`,
		`{"NetworkingConfig":{"EndpointsConfig":{"x":{},"y":{"NetworkID":"x"}}}}`,
		`{"HostConfig":{"Binds":["v:/d","/h:/h"],"Mounts":[{"Type":"volume","Source":"w","Target":"/w"}]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		b, err := ContainerCreateRefs(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error not wrapping ErrMalformed: %v", err)
			}
			return
		}
		// Every distinct reference resolves to its own id, so the
		// checks between references (NetworkID vs key) pass only when
		// both spell the same text.
		ids := map[RefKey]string{}
		isID := map[string]bool{}
		for i, k := range b.Distinct() {
			ids[k] = k.Ref
			if k.Kind != RefVolume {
				ids[k] = fmt.Sprintf("%064x", i+1)
				isID[ids[k]] = true
			}
		}
		out, err := b.Forward(ids)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Forward: %v", err)
			}
			return
		}
		again, err := ContainerCreateRefs(out)
		if err != nil {
			t.Fatalf("the forwarded body does not decode: %v\n%s", err, out)
		}
		for _, r := range again.Refs() {
			if r.Kind != RefVolume && !isID[r.Ref] {
				t.Fatalf("forwarded %s still names %q\nin:  %s\nout: %s", r.Field, r.Ref, body, out)
			}
		}
	})
}

// FuzzNetworkConnectRefs: the forwarded connect body names the container
// and the network only by the ids given.
func FuzzNetworkConnectRefs(f *testing.F) {
	for _, s := range []string{`{"Container":"job","EndpointConfig":{"Aliases":["svc"]}}`, `{"container":"/j","endpointconfig":{"NetworkID":"x"}}`, `{"Container":"c","EndpointConfig":null}`} {
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, connect bool) {
		b, err := NetworkConnectRefs(body, "netid", connect)
		if err != nil {
			return
		}
		ids := map[RefKey]string{}
		for _, k := range b.Distinct() {
			ids[k] = "cid"
			if k.Kind == RefNetwork {
				ids[k] = "netid"
			}
		}
		out, err := b.Forward(ids)
		if err != nil {
			t.Fatalf("Forward: %v", err)
		}
		var got struct {
			Container      string
			EndpointConfig *struct{ NetworkID string }
		}
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if got.Container != "cid" || connect && (got.EndpointConfig == nil || got.EndpointConfig.NetworkID != "netid") {
			t.Fatalf("forwarded %s for %s", out, body)
		}
	})
}
