package policy

import (
	"errors"
	"net/url"
	"strings"
	"testing"
)

// goPath decodes a request target once, the way net/http's server fills
// r.URL.Path.
func goPath(t testing.TB, target string) (string, string) {
	t.Helper()
	u, err := url.ParseRequestURI(target)
	if err != nil {
		t.Fatalf("ParseRequestURI(%q): %v", target, err)
	}
	return u.Path, u.RawQuery
}

func TestCanonicalize(t *testing.T) {
	tests := []struct {
		name    string
		method  string
		target  string // as on the wire; decoded once like net/http
		rawPath string // used instead of target when set (bytes Go would refuse on the wire)
		want    string // canonical Path; "" means ErrMalformed
		version string
	}{
		{name: "plain", method: "GET", target: "/containers/json", want: "/containers/json"},
		{name: "versioned", method: "GET", target: "/v1.41/containers/json", want: "/containers/json", version: "1.41"},
		{name: "major only version", method: "GET", target: "/v1/containers/json", want: "/containers/json", version: "1"},
		{name: "three part version", method: "GET", target: "/v1.2.3/containers/json", want: "/containers/json", version: "1.2.3"},
		{name: "four part version", method: "GET", target: "/v1.2.3.4/containers/json"},
		{name: "router version not ours", method: "GET", target: "/v1..41/containers/json"},
		{name: "version trailing dot", method: "GET", target: "/v1./containers/json"},
		{name: "double version", method: "GET", target: "/v1.41/v1.41/containers/json"},
		{name: "double version after clean", method: "GET", target: "/v1.41//./v1.40/containers/json"},
		{name: "version only", method: "GET", target: "/v1.41", want: "/", version: "1.41"},
		{name: "version with slash", method: "GET", target: "/v1.41/", want: "/", version: "1.41"},
		{name: "capital V is a path", method: "GET", target: "/V1.41/containers/json", want: "/V1.41/containers/json"},
		{name: "root", method: "GET", target: "/", want: "/"},
		{name: "double slash", method: "GET", target: "//containers//json", want: "/containers/json"},
		{name: "dot segment", method: "GET", target: "/containers/./json", want: "/containers/json"},
		{name: "dotdot segment", method: "POST", target: "/containers/x/../create", want: "/containers/create"},
		{name: "dotdot above root", method: "GET", target: "/../containers/json"},
		{name: "dotdot above root after version", method: "GET", target: "/v1.41/../../containers/json"},
		{name: "dotdot removes version", method: "GET", target: "/v1.41/../containers/json", want: "/containers/json"},
		{name: "encoded dots decode to dotdot", method: "GET", target: "/containers/x/%2e%2e/json", want: "/containers/json"},
		{name: "encoded slash decodes", method: "GET", target: "/containers%2Fjson", want: "/containers/json"},
		{name: "double encoded dot stays literal", method: "GET", target: "/containers/%252e%252e/json", want: "/containers/%2e%2e/json"},
		{name: "trailing slash", method: "GET", target: "/containers/json/", want: "/containers/json"},
		{name: "case preserved", method: "GET", target: "/CONTAINERS/json", want: "/CONTAINERS/json"},
		{name: "lower method", method: "get", target: "/_ping", want: "/_ping"},
		{name: "mixed method", method: "PoSt", target: "/build", want: "/build"},
		{name: "empty method", method: "", target: "/_ping"},
		{name: "method with space", method: "GE T", target: "/_ping"},
		{name: "method with slash", method: "GET/", target: "/_ping"},
		{name: "semicolon", method: "GET", target: "/containers/json;x=1"},
		{name: "encoded semicolon", method: "GET", target: "/containers/json%3Bx"},
		{name: "backslash", method: "GET", target: "/containers%5Cjson"},
		{name: "NUL", method: "GET", target: "/containers/json%00"},
		{name: "CR", method: "GET", target: "/containers/json%0d"},
		{name: "LF", method: "GET", target: "/containers/json%0a"},
		{name: "tab", method: "GET", target: "/containers/%09json"},
		{name: "DEL", method: "GET", target: "/containers/%7fjson"},
		{name: "invalid UTF-8", method: "GET", target: "/containers/%ff/json"},
		{name: "valid UTF-8", method: "GET", target: "/volumes/%C3%A9t%C3%A9", want: "/volumes/été"},
		{name: "query not in path", method: "GET", target: "/containers/json?all=1&x=/../", want: "/containers/json"},
		{name: "encoded question mark is path", method: "GET", target: "/containers/json%3Fall=1", want: "/containers/json?all=1"},
		{name: "empty path", method: "GET", rawPath: "-"},
		{name: "relative path", method: "GET", rawPath: "containers/json"},
		{name: "bad query escape", method: "GET", target: "/containers/json?all=%zz"},
		{name: "query semicolon", method: "GET", target: "/containers/json?all=1;x=2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var p, rq string
			switch {
			case tc.rawPath == "-":
			case tc.rawPath != "":
				p = tc.rawPath
			default:
				if strings.Contains(tc.target, "%zz") {
					p, rq, _ = strings.Cut(tc.target, "?")
				} else {
					p, rq = goPath(t, tc.target)
				}
			}
			req, err := Canonicalize(tc.method, p, rq)
			if tc.want == "" {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("Canonicalize(%q, %q) = %+v, %v; want ErrMalformed", tc.method, p, req, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Canonicalize(%q, %q): %v", tc.method, p, err)
			}
			if req.Path != tc.want || req.Version != tc.version {
				t.Fatalf("got path %q version %q; want %q %q", req.Path, req.Version, tc.want, tc.version)
			}
			if req.Method != strings.ToUpper(tc.method) {
				t.Fatalf("method %q, want upper-case", req.Method)
			}
			again, err := Canonicalize(req.Method, req.UpstreamPath(), req.RawQuery)
			if err != nil || again.Path != req.Path || again.Version != req.Version {
				t.Fatalf("not a fixed point: %q -> %+v, %v", req.UpstreamPath(), again, err)
			}
		})
	}
}

func TestUpstreamPath(t *testing.T) {
	tests := []struct {
		name string
		req  Request
		want string
	}{
		{"no version", mustReq("GET", "/containers/json"), "/containers/json"},
		{"version", mustReq("GET", "/v1.41/containers/json"), "/v1.41/containers/json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.req.UpstreamPath(); got != tc.want {
				t.Fatalf("got %q want %q", got, tc.want)
			}
		})
	}
}

func FuzzCanonicalize(f *testing.F) {
	for _, s := range []string{
		"/containers/json", "/v1.41/containers/create", "//a/./b/../c/", "/v1.41/v1.41/x",
		"/containers/%2e%2e/json", "/..", "/v1..2/x", "/a;b", "/\x00", "/é/ü", "/v1.41/../v1.40/x",
	} {
		f.Add("GET", s, "all=1")
	}
	f.Add("post", "/containers/create", "name=x&name=y")
	f.Fuzz(func(t *testing.T, method, p, rawQuery string) {
		req, err := Canonicalize(method, p, rawQuery)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if !isCanonical(req) {
			t.Fatalf("Canonicalize(%q, %q) = %+v is not canonical", method, p, req)
		}
		if strings.Contains(req.Path, "//") || strings.Contains(req.Path, "/./") || strings.Contains(req.Path, "/../") ||
			strings.HasSuffix(req.Path, "/..") || strings.HasSuffix(req.Path, "/.") || (req.Path != "/" && strings.HasSuffix(req.Path, "/")) {
			t.Fatalf("path %q is not clean", req.Path)
		}
		again, err := Canonicalize(req.Method, req.UpstreamPath(), req.RawQuery)
		if err != nil {
			t.Fatalf("UpstreamPath %q does not canonicalize: %v", req.UpstreamPath(), err)
		}
		if again.Path != req.Path || again.Version != req.Version || again.Method != req.Method {
			t.Fatalf("not a fixed point: %+v then %+v", req, again)
		}
		// What the broker forwards must decode (once, by dockerd) to the same path.
		u := url.URL{Path: req.UpstreamPath()}
		back, err := url.ParseRequestURI(u.EscapedPath())
		if err != nil || back.Path != req.UpstreamPath() {
			t.Fatalf("forwarded path %q decodes to %q (%v)", u.EscapedPath(), back.Path, err)
		}
	})
}
