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

// Request is the one canonical form of a request, with its Route.
// Everything after Canonicalize uses it.
//
// A Request is a value that only Canonicalize and the With* methods make,
// each of which validates what it changes, so no stage can turn it into a
// form that was not judged or that dockerd would route differently. The
// exported fields are copies for reading: what is judged and forwarded
// (Decide, UpstreamPath, Target) are the request's own unexported values,
// and Decide refuses a request whose copies were changed. The zero
// Request is not canonical: Decide refuses it.
type Request struct {
	Method   string // canonical method: an upper-case HTTP token
	Path     string // canonical path, API version prefix stripped, e.g. "/containers/create"
	Version  string // the stripped version without the "v", e.g. "1.41"; "" when none
	RawQuery string // the query as it is forwarded

	method, path, version, rawQuery string
	query                           url.Values // parsed from rawQuery; never changed after parsing
	route                           Route
}

// newRequest sets the values and their exported copies.
func newRequest(method, path, version, rawQuery string, q url.Values, rt Route) Request {
	return Request{
		Method: method, Path: path, Version: version, RawQuery: rawQuery,
		method: method, path: path, version: version, rawQuery: rawQuery, query: q, route: rt,
	}
}

// Canonicalize builds the canonical request and classifies its route.
// path is r.URL.Path exactly as Go's net/http server produced it (already
// percent-decoded once; it is never decoded again). It returns an error
// wrapping ErrMalformed for anything ambiguous. The rules are in the
// package documentation.
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
	return newRequest(m, p, ver, rawQuery, q, classifyRoute(m, p)), nil
}

// Route is the request's classification.
func (r Request) Route() Route { return r.route }

// Target is what the broker forwards: the method, the upstream path
// (UpstreamPath) and the raw query.
func (r Request) Target() (method, upstreamPath, rawQuery string) {
	return r.method, r.UpstreamPath(), r.rawQuery
}

// intact reports whether r came from Canonicalize or a With* method and
// its exported copies still hold its values.
func (r Request) intact() bool {
	return r.method != "" && r.Method == r.method && r.Path == r.path &&
		r.Version == r.version && r.RawQuery == r.rawQuery
}

// Param is the first value of query parameter key ("" when absent).
func (r Request) Param(key string) string { return r.query.Get(key) }

// Params are the values of query parameter key (a copy).
func (r Request) Params(key string) []string {
	if vs := r.query[key]; len(vs) > 0 {
		return append([]string(nil), vs...)
	}
	return nil
}

// Query is a copy of the parsed query.
func (r Request) Query() url.Values {
	out := make(url.Values, len(r.query))
	for k, vs := range r.query {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// IsZero reports whether r is the zero Request (no canonical request).
func (r Request) IsZero() bool { return r.method == "" }

// Valid reports whether r is a canonical request whose exported copies
// were not changed.
func (r Request) Valid() bool { return r.intact() }

// WithObjectID returns the request with the object reference of its path
// replaced by id, the full id (or, for volumes, the name) the reference
// was resolved to. id must be one path segment in the forms an id or a
// checked name takes (see validObjectID); anything else is an error
// wrapping ErrMalformed, and r is unchanged. The route is kept: its facts
// do not depend on the reference.
func (r Request) WithObjectID(id string) (Request, error) {
	rt := r.route
	if rt.kind == ObjectNone {
		return Request{}, fmt.Errorf("%w: %s %s names no object", ErrMalformed, r.method, r.path)
	}
	if !validObjectID(rt.kind, id) {
		return Request{}, fmt.Errorf("%w: %q is not a %s id", ErrMalformed, id, rt.kind)
	}
	rt.ref = id
	return newRequest(r.method, rt.prefix+id+rt.suffix, r.version, r.rawQuery, r.query, rt), nil
}

// WithQuery returns the request with raw as its query, parsed again as
// Canonicalize parses one (an error wraps ErrMalformed). Isolation uses
// it to narrow lists and to put checked ids in place of references.
func (r Request) WithQuery(raw string) (Request, error) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return Request{}, fmt.Errorf("%w: query: %v", ErrMalformed, err)
	}
	return newRequest(r.method, r.path, r.version, raw, q, r.route), nil
}

// UpstreamPath is the path the broker forwards upstream: "/v"+Version+Path,
// or Path when the request carried no version.
func (r Request) UpstreamPath() string {
	if r.version == "" {
		return r.path
	}
	return "/v" + r.version + r.path
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
