package policy

import "strings"

// ruleGlob is the glob of the allow rule a rule denial of req names
// (Allowance.PathGlob): the canonical path with only the object reference
// its route names generalized. /containers/3f2a.../export becomes
// /containers/*/export; an image reference, whose name may hold slashes,
// becomes ** (DELETE /images/ghcr.io/o/app: /images/**). A path without an
// object (the route classifies none) is its own glob. ok is false when a
// segment would not read as itself in a glob ('*', or a first segment that
// reads as an API version).
//
// Without a generalization the glob is the path itself, so a refused route
// with no object costs no allocation (a refusal flood on /build stays cheap).
func ruleGlob(req Request) (string, bool) {
	p := req.Path
	var buf [32]string
	for i, sg := range appendSegments(buf[:0], p) {
		if !literalGlobSegment(i, sg) {
			return "", false
		}
	}
	rt := req.Route()
	if rt.Object() == ObjectNone || rt.Ref() == "" {
		return p, true
	}
	// Invariant of Route: p == rt.prefix + rt.Ref() + rt.Suffix().
	wild, rest := "*", ""
	if rt.Object() == ObjectImage {
		wild = "**"
	} else if i := strings.IndexByte(rt.Ref(), '/'); i >= 0 {
		rest = rt.Ref()[i:] // only the reference's own segment is an id or name
	}
	return rt.prefix + wild + rest + rt.Suffix(), true
}

// literalGlobSegment reports whether segment i of a canonical path reads
// as itself in a rule glob (compileGlob's rules for a literal segment).
func literalGlobSegment(i int, s string) bool {
	switch {
	case s == "" || s == "." || s == "..", strings.Contains(s, "*"):
		return false
	case i == 0 && looksLikeRouterVersion(s):
		return false
	}
	for j := 0; j < len(s); j++ {
		if c := s[j]; c < 0x20 || c == 0x7f || c == '\\' || c == ';' {
			return false
		}
	}
	return true
}

// RuleGlob is the glob of the allow rule that a rule denial of req names
// (see Allowance.PathGlob); ok is false when no rule glob can name it.
func RuleGlob(req Request) (glob string, ok bool) { return ruleGlob(req) }
