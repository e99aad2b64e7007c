package policy

import (
	"fmt"
	"strings"
)

// glob is a compiled path pattern: "*" is exactly one segment, "**" is zero or
// more segments, anything else is a literal segment.
type glob struct {
	src  string
	segs []string
}

func compileGlob(pat string) (glob, error) {
	if pat == "" || pat[0] != '/' {
		return glob{}, fmt.Errorf("path pattern %q must start with /", pat)
	}
	if pat == "/" {
		return glob{src: pat}, nil
	}
	segs := strings.Split(pat[1:], "/")
	for i, s := range segs {
		switch {
		case s == "*" || s == "**":
		case s == "" || s == "." || s == "..":
			return glob{}, fmt.Errorf("path pattern %q has an empty, . or .. segment (patterns are canonical paths)", pat)
		case strings.Contains(s, "*"):
			return glob{}, fmt.Errorf("path pattern %q: * and ** must be whole segments", pat)
		case i == 0 && looksLikeRouterVersion(s):
			return glob{}, fmt.Errorf("path pattern %q starts with an API version; patterns match the path without it", pat)
		default:
			for i := 0; i < len(s); i++ {
				if c := s[i]; c < 0x20 || c == 0x7f || c == '\\' || c == ';' {
					return glob{}, fmt.Errorf("path pattern %q contains a byte no canonical path has", pat)
				}
			}
		}
	}
	return glob{src: pat, segs: segs}, nil
}

// match reports whether the canonical path segments match. It is the classic
// wildcard algorithm (backtrack to the last "**"), linear in practice.
func (g glob) match(path []string) bool { return g.matchWild(path, -1) }

// matchWild is match where path[wild] stands for any segment: it reports
// whether some value there would make the glob match (wild < 0: none).
func (g glob) matchWild(path []string, wild int) bool {
	pi, si := 0, 0
	starP, starS := -1, 0
	for si < len(path) {
		if pi < len(g.segs) {
			switch g.segs[pi] {
			case "**":
				starP, starS = pi, si
				pi++
				continue
			case "*":
				// Canonical paths have no empty segments, so "*" is one non-empty segment.
				pi++
				si++
				continue
			default:
				if g.segs[pi] == path[si] || si == wild {
					pi++
					si++
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		starS++
		pi, si = starP+1, starS
	}
	for pi < len(g.segs) && g.segs[pi] == "**" {
		pi++
	}
	return pi == len(g.segs)
}
