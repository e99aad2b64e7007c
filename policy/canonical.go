package policy

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// ErrMalformed classifies a request that cannot be canonicalized or whose body
// could be read more than one way. The broker answers it with 400.
var ErrMalformed = errors.New("malformed request")

// Request is the one canonical form of a request. Everything after
// Canonicalize uses it.
type Request struct {
	Method   string     // canonical method: an upper-case HTTP token
	Path     string     // canonical path, API version prefix stripped, e.g. "/containers/create"
	Version  string     // the stripped version without the "v", e.g. "1.41"; "" when none
	Query    url.Values // parsed from RawQuery
	RawQuery string
}

// Canonicalize builds the canonical request. path is r.URL.Path exactly as
// Go's net/http server produced it (already percent-decoded once; it is never
// decoded again). It returns an error wrapping ErrMalformed for anything
// ambiguous. The rules are in the package documentation.
func Canonicalize(method, path, rawQuery string) (Request, error) {
	m, err := canonicalMethod(method)
	if err != nil {
		return Request{}, err
	}
	p, ver, err := canonicalPath(path)
	if err != nil {
		return Request{}, err
	}
	// The query must parse exactly as dockerd's form parsing would; a query
	// Go refuses (';' separators, bad escapes) is refused here too.
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return Request{}, fmt.Errorf("%w: query: %v", ErrMalformed, err)
	}
	return Request{Method: m, Path: p, Version: ver, Query: q, RawQuery: rawQuery}, nil
}

// UpstreamPath is the path the broker forwards upstream: "/v"+Version+Path,
// or Path when the request carried no version.
func (r Request) UpstreamPath() string {
	if r.Version == "" {
		return r.Path
	}
	return "/v" + r.Version + r.Path
}

func canonicalMethod(method string) (string, error) {
	if method == "" {
		return "", fmt.Errorf("%w: empty method", ErrMalformed)
	}
	upper := true
	for i := 0; i < len(method); i++ {
		c := method[i]
		if !isTokenByte(c) {
			return "", fmt.Errorf("%w: method is not an HTTP token", ErrMalformed)
		}
		if 'a' <= c && c <= 'z' {
			upper = false
		}
	}
	if upper {
		return method, nil
	}
	// One method everywhere: the upper-cased form is judged AND forwarded.
	return strings.ToUpper(method), nil
}

// isTokenByte reports whether c is an RFC 7230 tchar.
func isTokenByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func canonicalPath(p string) (clean, version string, err error) {
	if p == "" || p[0] != '/' {
		return "", "", fmt.Errorf("%w: path must start with /", ErrMalformed)
	}
	if !utf8.ValidString(p) {
		return "", "", fmt.Errorf("%w: path is not valid UTF-8", ErrMalformed)
	}
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c < 0x20 || c == 0x7f:
			// Fail closed: control bytes (NUL, CR, LF, tab...) have no place in a route.
			return "", "", fmt.Errorf("%w: path contains a control byte", ErrMalformed)
		case c == '\\':
			return "", "", fmt.Errorf("%w: path contains a backslash", ErrMalformed)
		case c == ';':
			// Fail closed: dockerd ignores ';' but other routers treat it as a parameter separator.
			return "", "", fmt.Errorf("%w: path contains ';'", ErrMalformed)
		}
	}

	segs := make([]string, 0, 8)
	rest := p
	for rest != "" {
		var seg string
		seg, rest, _ = strings.Cut(rest, "/")
		switch seg {
		case "", ".":
		case "..":
			if len(segs) == 0 {
				// Fail closed: ".." above the root is refused, never clamped.
				return "", "", fmt.Errorf("%w: path climbs above the root", ErrMalformed)
			}
			segs = segs[:len(segs)-1]
		default:
			segs = append(segs, seg)
		}
	}

	if len(segs) > 0 && segs[0] != "" && segs[0][0] == 'v' {
		switch {
		case isVersionSegment(segs[0]):
			version = segs[0][1:]
			segs = segs[1:]
		case looksLikeRouterVersion(segs[0]):
			// dockerd's router would read this as a version; we would not.
			return "", "", fmt.Errorf("%w: bad API version segment %q", ErrMalformed, segs[0])
		}
	}
	if len(segs) > 0 && looksLikeRouterVersion(segs[0]) {
		// One version prefix only: "/v1.41/v1.41/x" is two routes depending on who reads it.
		return "", "", fmt.Errorf("%w: more than one API version segment", ErrMalformed)
	}
	return "/" + strings.Join(segs, "/"), version, nil
}

// isVersionSegment reports whether s matches v[0-9]+(\.[0-9]+){0,2}.
func isVersionSegment(s string) bool {
	if len(s) < 2 || s[0] != 'v' {
		return false
	}
	parts := 0
	for _, part := range strings.Split(s[1:], ".") {
		parts++
		if part == "" || parts > 3 {
			return false
		}
		for i := 0; i < len(part); i++ {
			if part[i] < '0' || part[i] > '9' {
				return false
			}
		}
	}
	return true
}

// looksLikeRouterVersion reports whether dockerd's router pattern
// /v{version:[0-9.]+} would match s.
func looksLikeRouterVersion(s string) bool {
	if len(s) < 2 || s[0] != 'v' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if (s[i] < '0' || s[i] > '9') && s[i] != '.' {
			return false
		}
	}
	return true
}

// isCanonical reports whether req could have come out of Canonicalize. Decide
// re-checks it cheaply so a hand-built Request cannot skip canonicalization.
func isCanonical(req Request) bool {
	if req.Method == "" || req.Path == "" || req.Path[0] != '/' {
		return false
	}
	for i := 0; i < len(req.Method); i++ {
		c := req.Method[i]
		if !isTokenByte(c) || ('a' <= c && c <= 'z') {
			return false
		}
	}
	if req.Version != "" && !isVersionSegment("v"+req.Version) {
		return false
	}
	if req.Path == "/" {
		return true
	}
	if !utf8.ValidString(req.Path) {
		return false
	}
	rest := req.Path[1:]
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

// appendSegments appends the segments of a canonical path to dst ("/" has none).
func appendSegments(dst []string, p string) []string {
	if len(p) <= 1 {
		return dst
	}
	rest := p[1:]
	for {
		seg, more, found := strings.Cut(rest, "/")
		dst = append(dst, seg)
		if !found {
			return dst
		}
		rest = more
	}
}
