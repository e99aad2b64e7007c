package broker

import (
	"context"
	"encoding/json"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/sockguard/sockguard/policy"
)

func TestObjectRoute(t *testing.T) {
	tests := []struct {
		method, path string
		ok           bool
		kind         objectKind
		ref          string
		rebuilt      string // prefix + "ID" + suffix
	}{
		{"GET", "/containers/json", false, 0, "", ""},
		{"POST", "/containers/create", false, 0, "", ""},
		{"POST", "/containers/prune", false, 0, "", ""},
		{"GET", "/containers/abc/json", true, kindContainer, "abc", "/containers/ID/json"},
		{"DELETE", "/containers/abc", true, kindContainer, "abc", "/containers/ID"},
		{"DELETE", "/containers/json", true, kindContainer, "json", "/containers/ID"},
		{"GET", "/containers/json/json", true, kindContainer, "json", "/containers/ID/json"},
		{"POST", "/containers/abc/exec", true, kindContainer, "abc", "/containers/ID/exec"},
		{"PUT", "/containers/abc/archive", true, kindContainer, "abc", "/containers/ID/archive"},
		{"GET", "/containers/a/b/logs", true, kindContainer, "a/b", "/containers/ID/logs"},
		{"POST", "/exec/e1/start", true, kindExec, "e1", "/exec/ID/start"},
		{"GET", "/exec/e1", false, 0, "", ""},
		{"GET", "/networks", false, 0, "", ""},
		{"POST", "/networks/create", false, 0, "", ""},
		{"POST", "/networks/prune", false, 0, "", ""},
		{"GET", "/networks/n1", true, kindNetwork, "n1", "/networks/ID"},
		{"DELETE", "/networks/n1", true, kindNetwork, "n1", "/networks/ID"},
		{"POST", "/networks/n1/connect", true, kindNetwork, "n1", "/networks/ID/connect"},
		{"POST", "/networks/n1/disconnect", true, kindNetwork, "n1", "/networks/ID/disconnect"},
		{"GET", "/volumes", false, 0, "", ""},
		{"POST", "/volumes/create", false, 0, "", ""},
		{"GET", "/volumes/v1", true, kindVolume, "v1", "/volumes/ID"},
		{"DELETE", "/volumes/v1", true, kindVolume, "v1", "/volumes/ID"},
		{"GET", "/images/json", false, 0, "", ""},
		{"GET", "/_ping", false, 0, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			k, ref, prefix, suffix, ok := objectRoute(tt.method, tt.path)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v", ok, tt.ok)
			}
			if !ok {
				return
			}
			if k != tt.kind || ref != tt.ref || prefix+"ID"+suffix != tt.rebuilt {
				t.Fatalf("got kind %d ref %q path %q", k, ref, prefix+"ID"+suffix)
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
			out, err := mergeOwnerFilter(tt.raw, "t-1")
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
	if got := scrubConflict(in); got != want {
		t.Fatalf("got %q", got)
	}
}

func TestIsolateQuery(t *testing.T) {
	iso := isolator{owner: "t-1"}
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
			json.Unmarshal([]byte(q.Get("labels")), &l)
			if l[OwnerLabel] != "t-1" || l["a"] != "b" {
				t.Fatalf("labels %v", l)
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
			raw, err := iso.isolateQuery(context.Background(), &req)
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
