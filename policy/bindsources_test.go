package policy

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
)

// fakeFS resolves the symlinks it lists and returns every other path as is,
// like filepath.EvalSymlinks on an existing path without links.
type fakeFS struct {
	t     *testing.T
	links map[string]string
	fail  map[string]error
	seen  []string // "field=src" in call order
}

func (f *fakeFS) resolve(field, src string) (string, error) {
	f.seen = append(f.seen, field+"="+src)
	if err := f.fail[src]; err != nil {
		return "", err
	}
	if dst, ok := f.links[src]; ok {
		return dst, nil
	}
	return src, nil
}

func TestResolveBindSources(t *testing.T) {
	errGone := errors.New("no such file or directory")
	links := map[string]string{
		"/home/runner/_work/etc":   "/etc",
		"/home/runner/_work/sock":  "/run/docker.sock",
		"/home/runner/_work/ok":    "/home/runner/_work/real",
		"/home/runner/_work/colon": "/srv/a:b",
		"/home/runner/_work/rel":   "etc",
	}
	tests := []struct {
		name      string
		body      string
		want      map[string]any // fields of the re-encoded body; nil: no change
		seen      []string       // resolver calls, when checked
		errField  string         // a *BindSourceError on this field
		malformed bool
	}{
		{name: "empty body", body: ``},
		{name: "docker run without binds", body: dockerRunBody, seen: []string{}},
		{name: "no symlinks", body: `{"HostConfig":{"Binds":["/home/runner/_work/x:/w"]}}`,
			seen: []string{"HostConfig.Binds[0]=/home/runner/_work/x"}},
		{name: "volumes and anonymous binds are not host paths",
			body: `{"HostConfig":{"Binds":["cache:/cache","/anon","relative/x:/y"],"Mounts":[{"Type":"volume","Source":"v","Target":"/v"},{"Type":"tmpfs","Target":"/t"}]}}`,
			seen: []string{}},
		{name: "malformed binds are left to InspectBody", body: `{"HostConfig":{"Binds":[":/x","/a:/b:ro:x"]}}`, seen: []string{}},
		{name: "bind keeps its options",
			body: `{"HostConfig":{"Binds":["/home/runner/_work/etc:/host-etc:ro,z","/home/runner/_work/x:/x"]}}`,
			want: map[string]any{"HostConfig.Binds": []any{"/etc:/host-etc:ro,z", "/home/runner/_work/x:/x"}}},
		{name: "bind without options", body: `{"HostConfig":{"Binds":["/home/runner/_work/ok:/w"]}}`,
			want: map[string]any{"HostConfig.Binds": []any{"/home/runner/_work/real:/w"}}},
		{name: "mount of type bind",
			body: `{"HostConfig":{"Mounts":[{"Type":"volume","Source":"v","Target":"/v"},{"Type":"BIND","Source":"/home/runner/_work/sock","Target":"/var/run/docker.sock"}]}}`,
			want: map[string]any{"HostConfig.Mounts.1.Source": "/run/docker.sock", "HostConfig.Mounts.0.Source": "v"}},
		{name: "top-level host config fields",
			body: `{"Image":"alpine","Binds":["/home/runner/_work/etc:/e"],"Mounts":[{"Type":"bind","Source":"/home/runner/_work/ok","Target":"/w"}],"HostConfig":{"Binds":["/home/runner/_work/ok:/w"]}}`,
			want: map[string]any{"Binds": []any{"/etc:/e"}, "Mounts.0.Source": "/home/runner/_work/real", "HostConfig.Binds": []any{"/home/runner/_work/real:/w"}, "Image": "alpine"},
			seen: []string{"Binds[0]=/home/runner/_work/etc", "Mounts[0].Source=/home/runner/_work/ok", "HostConfig.Binds[0]=/home/runner/_work/ok"}},
		{name: "field names in any case", body: `{"hostconfig":{"binds":["/home/runner/_work/etc:/e"],"mounts":[{"type":"bind","source":"/home/runner/_work/ok","target":"/w"}]}}`,
			want: map[string]any{"hostconfig.binds": []any{"/etc:/e"}, "hostconfig.mounts.0.source": "/home/runner/_work/real"}},
		{name: "other fields survive exactly", body: `{"HostConfig":{"Memory":9007199254740993,"Binds":["/home/runner/_work/ok:/w"]},"Labels":{"a":"b"}}`,
			want: map[string]any{"HostConfig.Memory": json.Number("9007199254740993"), "Labels.a": "b"}},
		{name: "resolver error names the field", body: `{"HostConfig":{"Binds":["/home/runner/_work/x:/x","/gone:/g"]}}`, errField: "HostConfig.Binds[1]"},
		{name: "resolver error on a mount", body: `{"Mounts":[{"Type":"bind","Source":"/gone","Target":"/g"}]}`, errField: "Mounts[0].Source"},
		{name: "resolved path with a colon cannot be a bind", body: `{"HostConfig":{"Binds":["/home/runner/_work/colon:/x"]}}`, errField: "HostConfig.Binds[0]"},
		{name: "resolved path with a colon is fine in a mount", body: `{"HostConfig":{"Mounts":[{"Type":"bind","Source":"/home/runner/_work/colon","Target":"/x"}]}}`,
			want: map[string]any{"HostConfig.Mounts.0.Source": "/srv/a:b"}},
		{name: "relative resolved path", body: `{"HostConfig":{"Binds":["/home/runner/_work/rel:/x"]}}`, errField: "HostConfig.Binds[0]"},
		{name: "duplicate keys", body: `{"HostConfig":{"Binds":["/a:/a"],"Binds":["/home/runner/_work/etc:/e"]}}`, malformed: true},
		{name: "keys equal under folding", body: `{"HostConfig":{"Binds":[]},"hostConfig":{}}`, malformed: true},
		{name: "wrong type", body: `{"HostConfig":{"Binds":"/etc:/e"}}`, malformed: true},
		{name: "trailing data", body: `{} {}`, malformed: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := &fakeFS{t: t, links: links, fail: map[string]error{"/gone": errGone}}
			got, err := ResolveBindSources([]byte(tc.body), fs.resolve)
			switch {
			case tc.malformed:
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("err = %v, want ErrMalformed", err)
				}
				return
			case tc.errField != "":
				var be *BindSourceError
				if !errors.As(err, &be) || be.Field != tc.errField {
					t.Fatalf("err = %v, want a BindSourceError on %s", err, tc.errField)
				}
				if !strings.Contains(err.Error(), tc.errField) {
					t.Fatalf("error %q does not name the field", err)
				}
				if be.Source == "/gone" && !errors.Is(err, errGone) {
					t.Fatalf("error %v does not wrap the resolver's", err)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			if tc.seen != nil && strings.Join(fs.seen, " ") != strings.Join(tc.seen, " ") {
				t.Errorf("resolver saw %q, want %q", fs.seen, tc.seen)
			}
			if tc.want == nil {
				if got != nil {
					t.Fatalf("body changed: %s", got)
				}
				return
			}
			if got == nil {
				t.Fatal("body not rewritten")
			}
			var doc map[string]any
			dec := json.NewDecoder(strings.NewReader(string(got)))
			dec.UseNumber()
			if err := dec.Decode(&doc); err != nil {
				t.Fatal(err)
			}
			for field, want := range tc.want {
				if v := lookupPath(doc, field); !jsonEqual(v, want) {
					t.Errorf("%s = %#v, want %#v (body %s)", field, v, want, got)
				}
			}
			// Resolving again is a fixed point.
			if again, err := ResolveBindSources(got, fs.resolve); err != nil || again != nil {
				t.Errorf("second pass: %s, %v", again, err)
			}
		})
	}
}

func lookupPath(v any, dotted string) any {
	for _, k := range strings.Split(dotted, ".") {
		switch x := v.(type) {
		case map[string]any:
			v = x[k]
		case []any:
			i := int(k[0] - '0')
			if i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// TestResolveThenInspect is the broker's order: resolve, then judge the real
// path. A symlink under an allowed root no longer smuggles /etc or the
// daemon socket past the bind rails.
func TestResolveThenInspect(t *testing.T) {
	pol := runnerTenant(t)
	fs := &fakeFS{t: t, links: map[string]string{
		"/home/runner/_work/etc":  "/etc",
		"/home/runner/_work/sock": "/var/run/docker.sock",
		"/home/runner/_work/ok":   "/home/runner/_work/real",
	}}
	tests := []struct {
		name, bind string
		allow      bool
		wantBind   string // forwarded bind, when allowed
	}{
		{"symlink to /etc", "/home/runner/_work/etc:/e", false, ""},
		{"symlink to the daemon socket is rewritten", "/home/runner/_work/sock:/var/run/docker.sock", true, selfSock + ":/var/run/docker.sock"},
		{"symlink inside the root", "/home/runner/_work/ok:/w", true, "/home/runner/_work/real:/w"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := run(t, nil, map[string]any{"Binds": []any{tc.bind}})
			resolved, err := ResolveBindSources(body, fs.resolve)
			if err != nil {
				t.Fatal(err)
			}
			if resolved != nil {
				body = resolved
			}
			d, nb := pol.InspectBody(createReq, http.Header{}, body)
			if d.Allow != tc.allow {
				t.Fatalf("decision %+v, want allow=%v", d, tc.allow)
			}
			if !tc.allow {
				if d.Code != ReasonBindMount {
					t.Fatalf("code %v, want bind_mount", d.Code)
				}
				return
			}
			if nb != nil {
				body = nb
			}
			var b containerCreateBody
			if err := json.Unmarshal(body, &b); err != nil {
				t.Fatal(err)
			}
			if got := b.HostConfig.Binds[0]; got != tc.wantBind {
				t.Fatalf("forwarded bind %q, want %q", got, tc.wantBind)
			}
		})
	}
}
