package policy

import (
	"slices"
	"strings"
)

// The route generalizer of rule denials. It is the minimal route knowledge
// an allowance needs; once the request's route is classified at
// Canonicalize (policy.Route), it reads that instead.

// objectRoute reports whether first is the first segment of object routes
// (/containers/{id}/...), the second segments that are collection routes
// rather than ids or names, and whether names may contain slashes (images,
// plugins, distribution).
func objectRoute(first string) (collection []string, multi, ok bool) {
	switch first {
	case "containers":
		return []string{"json", "create", "prune"}, false, true
	case "networks", "volumes":
		return []string{"create", "prune"}, false, true
	case "services", "secrets", "configs":
		return []string{"create"}, false, true
	case "exec", "nodes", "tasks":
		return nil, false, true
	case "images":
		return []string{"json", "create", "load", "search", "prune", "get"}, true, true
	case "plugins":
		return []string{"privileges", "pull", "create"}, true, true
	case "distribution":
		return nil, true, true
	}
	return nil, false, false
}

// isObjectAction reports whether last ends an object route whose name may
// hold slashes (/images/{name}/json).
func isObjectAction(last string) bool {
	switch last {
	case "json", "history", "push", "tag", "get", "enable", "disable", "upgrade", "set":
		return true
	}
	return false
}

// ruleGlob turns a canonical path into a glob that replaces only the object
// id or name: /containers/3f2a.../export becomes /containers/*/export,
// DELETE /images/ghcr.io/o/app becomes /images/**. ok is false when a kept
// segment contains '*', which a glob would read as a wildcard.
func ruleGlob(segs []string) (string, bool) {
	if len(segs) == 0 {
		return "/", true
	}
	out := append([]string(nil), segs...)
	if collection, multi, isObj := objectRoute(segs[0]); isObj && len(segs) >= 2 && !slices.Contains(collection, segs[1]) {
		switch {
		case !multi:
			out[1] = "*"
		case len(segs) >= 3 && isObjectAction(segs[len(segs)-1]):
			out = []string{segs[0], "**", segs[len(segs)-1]}
		default:
			out = []string{segs[0], "**"}
		}
	}
	for _, sg := range segs {
		if strings.Contains(sg, "*") {
			return "", false
		}
	}
	g := "/" + strings.Join(out, "/")
	if _, err := compileGlob(g); err != nil {
		return "", false // e.g. a first segment that reads as an API version
	}
	return g, true
}

// RuleGlob is the glob of the allow rule a rule denial of the canonical
// path names (Allowance.PathGlob): only the object id or name is
// generalized. ok is false when no rule glob can name the path.
func RuleGlob(path string) (glob string, ok bool) {
	var buf [32]string
	return ruleGlob(appendSegments(buf[:0], path))
}
