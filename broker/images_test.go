package broker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sockguard/sockguard/broker/docker"
	"github.com/sockguard/sockguard/broker/store"
	"github.com/sockguard/sockguard/policy"
)

func b64url(s string) string { return base64.URLEncoding.EncodeToString([]byte(s)) }

func TestRegistryCredentials(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values []string
		want   bool
	}{
		{"absent", nil, false},
		{"empty", []string{""}, false},
		{"empty object (docker CLI without login)", []string{"e30="}, false},
		{"empty fields", []string{b64url(`{"username":"","password":"","serveraddress":"r.example"}`)}, false},
		{"username and password", []string{b64url(`{"username":"u","password":"p"}`)}, true},
		{"password only", []string{b64url(`{"password":"p"}`)}, true},
		{"identity token", []string{b64url(`{"identitytoken":"tok"}`)}, true},
		{"registry token", []string{b64url(`{"registrytoken":"tok"}`)}, true},
		{"auth field", []string{b64url(`{"auth":"dTpw"}`)}, true},
		{"keys in any case", []string{b64url(`{"Username":"u"}`)}, true},
		{"not a string", []string{b64url(`{"username":1}`)}, true},
		{"not base64url", []string{"%%%"}, true},
		{"not JSON", []string{b64url("user:pass")}, true},
		{"JSON null", []string{b64url("null")}, true},
		{"two headers", []string{"e30=", "e30="}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := registryCredentials(tc.values); got != tc.want {
				t.Fatalf("registryCredentials(%q) = %v, want %v", tc.values, got, tc.want)
			}
		})
	}
}

func TestNormalizeRepo(t *testing.T) {
	for in, want := range map[string]string{
		"busybox":                      "docker.io/library/busybox",
		"library/busybox":              "docker.io/library/busybox",
		"docker.io/busybox":            "docker.io/library/busybox",
		"index.docker.io/library/node": "docker.io/library/node",
		"org/app":                      "docker.io/org/app",
		"ghcr.io/org/app":              "ghcr.io/org/app",
		"127.0.0.1:5000/priv":          "127.0.0.1:5000/priv",
		"localhost/app":                "localhost/app",
	} {
		if got := normalizeRepo(in); got != want {
			t.Errorf("normalizeRepo(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"busybox:local":                    "docker.io/library/busybox",
		"127.0.0.1:5000/priv:v1":           "127.0.0.1:5000/priv",
		"127.0.0.1:5000/priv@sha256:abcd":  "127.0.0.1:5000/priv",
		"127.0.0.1:5000/priv":              "127.0.0.1:5000/priv",
		"ghcr.io/o/a:1@sha256:0123456789a": "ghcr.io/o/a",
	} {
		if got := refRepo(in); got != want {
			t.Errorf("refRepo(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParsePull(t *testing.T) {
	dg := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name, query string
		want        pullTarget
		err         bool
	}{
		{name: "tag param", query: "fromImage=busybox&tag=1.36", want: pullTarget{repo: "docker.io/library/busybox", tag: "1.36"}},
		{name: "tag in name", query: "fromImage=ghcr.io/o/a:v1", want: pullTarget{repo: "ghcr.io/o/a", tag: "v1"}},
		{name: "digest param", query: "fromImage=r.io:5000/p&tag=" + dg, want: pullTarget{repo: "r.io:5000/p", digest: dg}},
		{name: "digest in name", query: "fromImage=r.io/p@" + dg, want: pullTarget{repo: "r.io/p", digest: dg}},
		{name: "tag and digest in name", query: "fromImage=r.io/p:v1@" + dg, want: pullTarget{repo: "r.io/p", digest: dg}},
		{name: "all tags", query: "fromImage=r.io/p", want: pullTarget{repo: "r.io/p", allTags: true}},
		{name: "platform", query: "fromImage=busybox&tag=1&platform=linux/arm64", want: pullTarget{repo: "docker.io/library/busybox", tag: "1", platform: true}},
		{name: "tag twice", query: "fromImage=busybox:1&tag=2", err: true},
		{name: "bad digest", query: "fromImage=busybox&tag=sha256:zz", err: true},
		{name: "md5 digest", query: "fromImage=busybox&tag=md5:" + strings.Repeat("a", 32), err: true},
		{name: "empty name", query: "fromImage=:1", err: true},
		{name: "space", query: "fromImage=a+b", err: true},
		{name: "leading slash", query: "fromImage=/a", err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, _ := url.ParseQuery(tc.query)
			got, err := parsePull(q)
			if tc.err {
				if err == nil {
					t.Fatalf("parsePull(%s) = %+v, want an error", tc.query, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("parsePull(%s) = %+v, %v, want %+v", tc.query, got, err, tc.want)
			}
		})
	}
}

func TestImageObjectRoute(t *testing.T) {
	for _, tc := range []struct {
		method, path, ref, suffix string
		rewrite, ok               bool
	}{
		{"GET", "/images/busybox:local/json", "busybox:local", "/json", true, true},
		{"GET", "/images/127.0.0.1:5000/o/p:v1/json", "127.0.0.1:5000/o/p:v1", "/json", true, true},
		{"GET", "/images/sha256:abc/history", "sha256:abc", "/history", true, true},
		{"GET", "/images/x/get", "x", "/get", false, true},
		{"POST", "/images/x/tag", "x", "/tag", false, true},
		{"POST", "/images/r/x/push", "r/x", "/push", false, true},
		{"DELETE", "/images/r/x:1", "r/x:1", "", false, true},
		{"GET", "/images/json", "", "", false, false},
		{"GET", "/images/get", "", "", false, false},
		{"GET", "/images/search", "", "", false, false},
		{"POST", "/images/create", "", "", false, false},
		{"POST", "/images/load", "", "", false, false},
		{"POST", "/images/prune", "", "", false, false},
		{"GET", "/containers/x/json", "", "", false, false},
		{"POST", "/images/x/json", "", "", false, false},
	} {
		rt := mustReq(t, tc.method, tc.path).Route()
		ok := rt.Object() == policy.ObjectImage
		ref, suffix, rewrite := rt.Ref(), rt.Suffix(), ok && rt.ForwardsResolvedID()
		if !ok {
			ref, suffix = "", ""
		}
		if ref != tc.ref || suffix != tc.suffix || rewrite != tc.rewrite || ok != tc.ok {
			t.Errorf("imageObjectRoute(%s %s) = %q %q %v %v, want %q %q %v %v", tc.method, tc.path,
				ref, suffix, rewrite, ok, tc.ref, tc.suffix, tc.rewrite, tc.ok)
		}
	}
}

func TestPullStreamScan(t *testing.T) {
	dg := "sha256:" + strings.Repeat("0f", 32)
	fresh := `{"status":"Pulling from priv/app","id":"v1"}` + "\r\n" +
		`{"status":"Already exists","progressDetail":{},"id":"d015eaa76049"}` + "\r\n" +
		`{"status":"Digest: ` + dg + `"}` + "\r\n" +
		`{"status":"Status: Downloaded newer image for r/priv/app:v1"}` + "\r\n"
	upToDate := `{"status":"Pulling from priv/app","id":"v1"}` + "\r\n" +
		`{"status":"Digest: ` + dg + `"}` + "\r\n" +
		`{"status":"Status: Image is up to date for r/priv/app:v1"}` + "\r\n"
	for _, tc := range []struct {
		name, stream   string
		chunk          int
		layers, failed bool
		digest         string
	}{
		{name: "fresh", stream: fresh, layers: true, digest: dg},
		{name: "fresh, byte by byte", stream: fresh, chunk: 1, layers: true, digest: dg},
		{name: "up to date", stream: upToDate, digest: dg},
		{name: "no final newline", stream: strings.TrimSuffix(upToDate, "\r\n"), digest: dg},
		{name: "error", stream: upToDate + `{"errorDetail":{"message":"boom"},"error":"boom"}` + "\n", digest: dg, failed: true},
		{name: "error detail only", stream: `{"errorDetail":{"message":"x"}}` + "\n", failed: true},
		{name: "not JSON", stream: "garbage\n", failed: true},
		{name: "bad digest", stream: `{"status":"Digest: sha256:zz"}` + "\n", failed: true},
		{name: "oversized line", stream: `{"status":"` + strings.Repeat("a", maxProgressLine) + `"}` + "\n" + upToDate, digest: dg, failed: true},
		{name: "status without id is not a layer", stream: `{"status":"Pull complete"}` + "\n", layers: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &pullPlan{}
			body := &pullBody{ReadCloser: io.NopCloser(strings.NewReader(tc.stream)), ctx: context.Background(), p: p}
			// finish needs a guard only when it settles: the stream is
			// marked all-tags so that it returns before any upstream call.
			p.target.allTags = true
			chunk := tc.chunk
			if chunk == 0 {
				chunk = 4096
			}
			buf := make([]byte, chunk)
			for {
				if _, err := body.Read(buf); err != nil {
					break
				}
			}
			if p.layers != tc.layers || p.failed != tc.failed || p.digest != tc.digest || !p.finished {
				t.Fatalf("layers %v failed %v digest %q finished %v, want %v %v %q true",
					p.layers, p.failed, p.digest, p.finished, tc.layers, tc.failed, tc.digest)
			}
		})
	}
}

func grantFor(s *store.Store, id, tenant, repo string, at time.Time) error {
	return s.UpdateImageRecord(id, at, func(r *store.ImageRecord) *store.ImageRecord {
		if r == nil {
			r = &store.ImageRecord{}
		}
		if r.Tenants == nil {
			r.Tenants = map[string]int64{}
		}
		r.Tenants[tenant] = at.Unix()
		r.AddSource(repo)
		return r
	})
}

// fakeImageDaemon answers the upstream calls the guard makes.
type fakeImageDaemon struct {
	images       map[string]imageInfo // by reference
	distribution atomic.Int32         // status of GET /distribution
	distAuth     atomic.Value         // last X-Registry-Auth seen there
}

func (f *fakeImageDaemon) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case p == "/images/json":
		w.Write([]byte(`[]`))
	case strings.HasPrefix(p, "/distribution/"):
		f.distAuth.Store(r.Header.Get("X-Registry-Auth"))
		w.WriteHeader(int(f.distribution.Load()))
		w.Write([]byte(`{}`))
	case strings.HasPrefix(p, "/images/") && strings.HasSuffix(p, "/json"):
		ref := strings.TrimSuffix(strings.TrimPrefix(p, "/images/"), "/json")
		img, ok := f.images[ref]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"message":"no such image: ` + ref + `: No such image: ` + familiarTagged(ref) + `"}`))
			return
		}
		writeImageJSON(w, img)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func writeImageJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	buf, _ := json.Marshal(v)
	w.Write(buf)
}

func newTestGuard(t *testing.T, fd *fakeImageDaemon) (*imageGuard, *store.Store) {
	t.Helper()
	srv := httptest.NewServer(fd)
	t.Cleanup(srv.Close)
	up, err := docker.New("tcp://"+strings.TrimPrefix(srv.URL, "http://"), nil)
	if err != nil {
		t.Fatal(err)
	}
	s := openTestStore(t)
	return newImageGuard(up, s, slog.New(slog.NewTextHandler(io.Discard, nil))), s
}

func TestSettlePull(t *testing.T) {
	const (
		id    = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
		repo  = "r.io/priv"
		other = "r.io/mirror"
	)
	dg := "sha256:" + strings.Repeat("2", 64)
	creds := []string{b64url(`{"username":"u","password":"p"}`)}
	private := func(tenants ...string) *store.ImageRecord {
		r := &store.ImageRecord{Sources: []string{repo}, Tenants: map[string]int64{}}
		for _, t := range tenants {
			r.Tenants[t] = 1
		}
		return r
	}
	type want struct {
		public  bool
		tenants []string // nil with record false: no record at all
		record  bool
	}
	for _, tc := range []struct {
		name     string
		rec      *store.ImageRecord
		creds    bool
		layers   bool
		before   bool
		pullRepo string
		byDigest bool
		dist     int
		want     want
	}{
		{name: "fresh credential pull makes it private", creds: true, layers: true,
			want: want{record: true, tenants: []string{"tb"}}},
		{name: "credential pull of an image already there stays public", creds: true, layers: true, before: true},
		{name: "credential pull without a download stays public", creds: true},
		{name: "fresh anonymous pull stays public", layers: true},
		{name: "tag pull from its source grants it", rec: private("ta"), creds: true,
			want: want{record: true, tenants: []string{"ta", "tb"}}},
		{name: "tag pull from another repository grants nothing", rec: private("ta"), creds: true, pullRepo: other,
			want: want{record: true, tenants: []string{"ta"}}},
		{name: "fresh pull from another repository grants nothing", rec: private("ta"), creds: true, layers: true, pullRepo: other,
			want: want{record: true, tenants: []string{"ta"}}},
		{name: "digest pull the registry refuses grants nothing", rec: private("ta"), creds: true, byDigest: true, dist: 401,
			want: want{record: true, tenants: []string{"ta"}}},
		{name: "digest pull the registry confirms grants it", rec: private("ta"), creds: true, byDigest: true, dist: 200,
			want: want{record: true, tenants: []string{"ta", "tb"}}},
		{name: "anonymous tag pull from its source makes it public", rec: private("ta"),
			want: want{record: true, public: true}},
		{name: "anonymous digest pull the registry refuses changes nothing", rec: private("ta"), byDigest: true, dist: 500,
			want: want{record: true, tenants: []string{"ta"}}},
		{name: "anonymous digest pull the registry confirms makes it public", rec: private("ta"), byDigest: true, dist: 200,
			want: want{record: true, public: true}},
		{name: "private to nobody stays so without proof", rec: private(), pullRepo: other,
			want: want{record: true, tenants: []string{}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pullRepo := tc.pullRepo
			if pullRepo == "" {
				pullRepo = repo
			}
			fd := &fakeImageDaemon{images: map[string]imageInfo{pullRepo + "@" + dg: {ID: id}}}
			fd.distribution.Store(int32(max(tc.dist, 200)))
			if tc.dist != 0 {
				fd.distribution.Store(int32(tc.dist))
			}
			g, s := newTestGuard(t, fd)
			if tc.rec != nil {
				must(t, s.UpdateImageRecord(id, time.Unix(1, 0), func(*store.ImageRecord) *store.ImageRecord { return tc.rec }))
			}
			p := &pullPlan{g: g, tenant: "tb", creds: tc.creds, layers: tc.layers, digest: dg,
				target: pullTarget{repo: pullRepo, tag: "v1"}, before: map[string]bool{}}
			if tc.byDigest {
				p.target.tag, p.target.digest = "", dg
			}
			if tc.creds {
				p.auth = creds
			}
			if tc.before {
				p.before[id] = true
			}
			if err := g.settle(context.Background(), p); err != nil {
				t.Fatal(err)
			}
			recs, _ := s.ImageRecords([]string{id})
			rec := recs[id]
			if (rec != nil) != tc.want.record {
				t.Fatalf("record %+v, want one: %v", rec, tc.want.record)
			}
			if rec == nil {
				return
			}
			if rec.Public != tc.want.public || (!rec.Public && len(rec.Tenants) != len(tc.want.tenants)) {
				t.Fatalf("record %+v, want public %v tenants %v", rec, tc.want.public, tc.want.tenants)
			}
			for _, tn := range tc.want.tenants {
				if _, ok := rec.Tenants[tn]; !ok {
					t.Fatalf("record %+v lacks %s", rec, tn)
				}
			}
			if tc.byDigest && tc.rec != nil && tc.pullRepo == "" {
				got, _ := fd.distAuth.Load().(string)
				if want := strings.Join(p.auth, ""); got != want {
					t.Fatalf("distribution check sent X-Registry-Auth %q, want the tenant's %q", got, want)
				}
			}
		})
	}
}

func TestImageVisibility(t *testing.T) {
	fd := &fakeImageDaemon{}
	g, s := newTestGuard(t, fd)
	now := time.Unix(1, 0)
	must(t, grantFor(s, "sha256:priv", "ta", "r.io/priv", now))
	must(t, s.UpdateImageRecord("sha256:pub", now, func(*store.ImageRecord) *store.ImageRecord { return &store.ImageRecord{Public: true} }))
	imgs := []imageInfo{
		{ID: "sha256:priv", RepoTags: []string{"r.io/priv:v1"}},
		{ID: "sha256:pub"},
		{ID: "sha256:op", RepoTags: []string{"busybox:local"}},
		{ID: "sha256:new", RepoTags: []string{"r.io/fresh:v1"}},
		{ID: "sha256:untagged", RepoTags: []string{"<none>:<none>"}},
	}
	check := func(tenant string, want ...bool) {
		t.Helper()
		got, err := g.visible(tenant, imgs)
		if err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("%s: %s visible %v, want %v", tenant, imgs[i].ID, got[i], want[i])
			}
		}
	}
	check("ta", true, true, true, true, true)
	check("tb", false, true, true, true, true)

	// While a credential pull of r.io/fresh runs, an unrecorded image new
	// since it began and named by it (or by nothing yet) may be its
	// result: hidden from everyone until the grant is written.
	p := &pullPlan{target: pullTarget{repo: "r.io/fresh"}, before: map[string]bool{"sha256:op": true}}
	g.mu.Lock()
	g.inflight[p] = struct{}{}
	g.mu.Unlock()
	check("tb", false, true, true, false, false)
	check("ta", true, true, true, false, false)
	g.mu.Lock()
	delete(g.inflight, p)
	g.mu.Unlock()
	check("tb", false, true, true, true, true)
}

func TestCheckCreate(t *testing.T) {
	fd := &fakeImageDaemon{images: map[string]imageInfo{
		"r.io/priv:v1":  {ID: "sha256:priv", RepoTags: []string{"r.io/priv:v1"}},
		"busybox:local": {ID: "sha256:op", RepoTags: []string{"busybox:local"}},
	}}
	g, s := newTestGuard(t, fd)
	must(t, grantFor(s, "sha256:priv", "ta", "r.io/priv", time.Unix(1, 0)))
	ctx := context.Background()
	for _, tc := range []struct {
		name, tenant, body, want string
		hidden                   bool
		missing                  string
	}{
		{name: "own private image: the id is forwarded", tenant: "ta", body: `{"Image":"r.io/priv:v1","Cmd":["true"]}`, want: `"Image":"sha256:priv"`},
		{name: "operator image: the id is forwarded", tenant: "tb", body: `{"image":"busybox:local"}`, want: `"Image":"sha256:op"`},
		{name: "another tenant's image", tenant: "tb", body: `{"Image":"r.io/priv:v1"}`, hidden: true},
		{name: "missing image: dockerd's 404, nothing forwarded", tenant: "tb", body: `{"Image":"nope:1"}`, missing: "No such image: nope:1"},
		{name: "no image", tenant: "tb", body: `{}`, want: `{}`},
		// An image mount (API 1.48) exposes the image's files: the same rule.
		{name: "another tenant's image as an image mount", tenant: "tb", hidden: true,
			body: `{"Image":"busybox:local","HostConfig":{"Mounts":[{"Type":"image","Source":"r.io/priv:v1","Target":"/x"}]}}`},
		{name: "image mount, keys in another case", tenant: "tb", hidden: true,
			body: `{"Image":"busybox:local","hostconfig":{"mounts":[{"type":"Image","source":"r.io/priv:v1","target":"/x"}]}}`},
		{name: "image mount without Image", tenant: "tb", hidden: true,
			body: `{"HostConfig":{"Mounts":[{"Type":"tmpfs","Target":"/t"},{"Type":"image","Source":"r.io/priv:v1","Target":"/x"}]}}`},
		{name: "own image mount: the id is forwarded", tenant: "ta",
			body: `{"Image":"busybox:local","HostConfig":{"Mounts":[{"Type":"image","Source":"r.io/priv:v1","Target":"/x"}]}}`, want: `"Source":"sha256:priv"`},
		{name: "missing image mount: dockerd's 404", tenant: "tb", missing: "No such image: nope:1",
			body: `{"Image":"busybox:local","HostConfig":{"Mounts":[{"Type":"image","Source":"nope:1","Target":"/x"}]}}`},
		{name: "top-level image mount (deprecated host config fields)", tenant: "tb", hidden: true,
			body: `{"Image":"busybox:local","Mounts":[{"Type":"image","Source":"r.io/priv:v1","Target":"/x"}]}`},
		{name: "own top-level image mount: the id is forwarded", tenant: "ta",
			body: `{"Image":"busybox:local","Mounts":[{"Type":"image","Source":"r.io/priv:v1","Target":"/x"}]}`, want: `"Source":"sha256:priv"`},
		{name: "volume mount untouched", tenant: "tb",
			body: `{"Image":"busybox:local","HostConfig":{"Mounts":[{"Type":"volume","Source":"r.io/priv:v1","Target":"/x"}]}}`, want: `"Source":"r.io/priv:v1"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := g.checkCreate(ctx, tc.tenant, []byte(tc.body))
			var h *errImageHidden
			var m *errImageMissing
			if tc.missing != "" {
				if !errors.As(err, &m) || m.status != http.StatusNotFound || m.msg != tc.missing {
					t.Fatalf("got %s, %v; want 404 %s", out, err, tc.missing)
				}
				return
			}
			if tc.hidden {
				if !errors.As(err, &h) || h.Error() != "No such image: r.io/priv:v1" {
					t.Fatalf("got %s, %v; want No such image", out, err)
				}
				return
			}
			if err != nil || !strings.Contains(string(out), tc.want) {
				t.Fatalf("got %s, %v; want %s", out, err, tc.want)
			}
			if strings.Count(strings.ToLower(string(out)), `"image":`) > 1 {
				t.Fatalf("two Image keys in %s", out)
			}
		})
	}
	if _, err := g.checkCreate(ctx, "ta", []byte(`[`)); err == nil {
		t.Fatal("malformed body accepted")
	}
}

func TestFilterList(t *testing.T) {
	g, s := newTestGuard(t, &fakeImageDaemon{})
	must(t, grantFor(s, "sha256:priv", "ta", "r.io/priv", time.Unix(1, 0)))
	in := `[{"Id":"sha256:priv","RepoTags":["r.io/priv:v1"],"Size":1},{"Id":"sha256:op","RepoTags":["busybox:local"],"Extra":{"k":1}}]`
	out, err := g.filterList("tb", []byte(in))
	if err != nil || string(out) != `[{"Id":"sha256:op","RepoTags":["busybox:local"],"Extra":{"k":1}}]` {
		t.Fatalf("tb: %s %v", out, err)
	}
	out, err = g.filterList("ta", []byte(in))
	if err != nil || string(out) != in {
		t.Fatalf("ta: %s %v", out, err)
	}
	if _, err := g.filterList("ta", []byte(`{"message":"x"}`)); err == nil {
		t.Fatal("a non-list answer was passed through")
	}
}

func TestRepoGate(t *testing.T) {
	g, _ := newTestGuard(t, &fakeImageDaemon{})
	g.gateWait = 50 * time.Millisecond
	ctx := context.Background()
	r1, err := g.acquire(ctx, "r/x", false)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := g.acquire(ctx, "r/x", false)
	if err != nil {
		t.Fatal("two shared pulls of one repository must run together:", err)
	}
	if _, err := g.acquire(ctx, "r/x", true); !errors.Is(err, errPullBusy) {
		t.Fatalf("exclusive pull beside shared ones: %v, want errPullBusy", err)
	}
	other, err := g.acquire(ctx, "r/y", true)
	if err != nil {
		t.Fatal("another repository is not gated:", err)
	}
	other()
	r1()
	r1() // releasing twice is harmless
	done := make(chan error, 1)
	g.gateWait = 5 * time.Second
	go func() {
		rel, err := g.acquire(ctx, "r/x", true)
		if err == nil {
			rel()
		}
		done <- err
	}()
	r2()
	if err := <-done; err != nil {
		t.Fatalf("exclusive pull after the shared ones ended: %v", err)
	}
	g.mu.Lock()
	n := len(g.gates)
	g.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d gates left after every pull ended", n)
	}
	cctx, cancel := context.WithCancel(ctx)
	hold, _ := g.acquire(ctx, "r/z", true)
	cancel()
	if _, err := g.acquire(cctx, "r/z", false); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", err)
	}
	hold()
}

func TestNoSuchImageMessages(t *testing.T) {
	// What dockerd 20.10 answers for missing references, by route.
	hex := strings.Repeat("b", 64)
	dg := "sha256:" + strings.Repeat("0", 64)
	for _, tc := range []struct{ ref, inspect, other string }{
		{"nope", "no such image: nope: No such image: nope:latest", "No such image: nope:latest"},
		{"nope:1", "no such image: nope:1: No such image: nope:1", "No such image: nope:1"},
		{"docker.io/library/nope", "no such image: docker.io/library/nope: No such image: nope:latest", "No such image: nope:latest"},
		{"docker.io/org/x:1", "no such image: docker.io/org/x:1: No such image: org/x:1", "No such image: org/x:1"},
		{"localhost/x", "no such image: localhost/x: No such image: localhost/x:latest", "No such image: localhost/x:latest"},
		{"sha256:abcdef", "no such image: sha256:abcdef: No such image: sha256:abcdef", "No such image: sha256:abcdef"},
		{"abc", "no such image: abc: No such image: abc:latest", "No such image: abc:latest"},
		{hex, "no such image: " + hex + ": No such image: sha256:" + hex, "No such image: sha256:" + hex},
		{"ghcr.io/o/a:t@" + dg, "no such image: ghcr.io/o/a:t@" + dg + ": No such image: ghcr.io/o/a:t@" + dg, "No such image: ghcr.io/o/a:t@" + dg},
		{"127.0.0.1:5000/x/y@" + dg, "no such image: 127.0.0.1:5000/x/y@" + dg + ": No such image: 127.0.0.1:5000/x/y@" + dg, "No such image: 127.0.0.1:5000/x/y@" + dg},
	} {
		if got := hiddenMessage(opInspect, tc.ref); got != tc.inspect {
			t.Errorf("inspect %s: %q, want %q", tc.ref, got, tc.inspect)
		}
		if got := hiddenMessage(opOther, tc.ref); got != tc.other {
			t.Errorf("other %s: %q, want %q", tc.ref, got, tc.other)
		}
	}
}

// A stream cut after the "Digest:" line (the client went away) still
// settles: the image is stored by then and must not stay public.
func TestPullBodyCutShortSettles(t *testing.T) {
	const id = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
	dg := "sha256:" + strings.Repeat("4", 64)
	fd := &fakeImageDaemon{images: map[string]imageInfo{"r.io/p@" + dg: {ID: id}}}
	g, s := newTestGuard(t, fd)
	for _, tc := range []struct {
		name, stream string
		private      bool
	}{
		{"cut after the digest", `{"status":"Pull complete","id":"abc"}` + "\n" + `{"status":"Digest: ` + dg + `"}` + "\n", true},
		{"cut before the digest", `{"status":"Pull complete","id":"abc"}` + "\n", false},
		{"error after the digest", `{"status":"Pull complete","id":"abc"}` + "\n" + `{"status":"Digest: ` + dg + `"}` + "\n" + `{"error":"x"}` + "\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.SweepImageRecords(map[string]bool{})
			must(t, err)
			p := &pullPlan{g: g, tenant: "ta", creds: true, target: pullTarget{repo: "r.io/p", tag: "v1"}, before: map[string]bool{}}
			body := &pullBody{ReadCloser: io.NopCloser(strings.NewReader(tc.stream)), ctx: context.Background(), p: p}
			buf := make([]byte, len(tc.stream))
			_, err = io.ReadFull(body, buf) // every byte, but no EOF seen yet
			must(t, err)
			body.Close()
			recs, _ := s.ImageRecords([]string{id})
			if got := recs[id] != nil; got != tc.private {
				t.Fatalf("private record %v, want %v", got, tc.private)
			}
		})
	}
}
