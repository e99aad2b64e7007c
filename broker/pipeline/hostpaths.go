package pipeline

import (
	"path"
	"strings"

	"github.com/sockguard/sockguard/policy"
)

// hostPaths resolves the host bind sources of one container create on the
// broker's host, telling the tenant nothing about that host:
//   - in enforce mode a source that no bind root may allow as written
//     (policy.MayBindAsWritten) is not looked at: it is refused as written
//     whatever is there, so a file, a link, an unreadable and a missing
//     path answer alike (resolving "/etc/hostname/x" failed where
//     "/etc/nothere/x" did not);
//   - a real path that differs from the source as written (a link, which
//     may lead into /proc/self and so to the broker's working directory or
//     open files) is never named in a refusal: scrub puts the source as
//     written in its place.
//
// In audit mode every source is resolved as before: the request is
// forwarded anyway, and its real paths are what is forwarded.
type hostPaths struct {
	pol     *policy.Policy
	audit   bool
	resolve func(field, src string) (string, error)
	real    map[string]string // real path -> source as written (bounded)
}

func (h *hostPaths) resolveSource(field, src string) (string, error) {
	if !h.audit && !h.pol.MayBindAsWritten(src) {
		return src, nil
	}
	real, err := h.resolve(field, src)
	if err == nil && real != path.Clean(src) {
		if h.real == nil {
			h.real = make(map[string]string)
		}
		if len(h.real) < policy.MaxBodyRefs {
			h.real[real] = src
		}
	}
	return real, err
}

// scrub returns a bind refusal with each real path replaced by its source
// as written; a refusal that named one says that the real path was judged.
func (h *hostPaths) scrub(d policy.Decision) policy.Decision {
	if len(h.real) == 0 || d.Code != policy.ReasonBindMount {
		return d
	}
	hid := false
	for real, src := range h.real {
		if strings.Contains(d.Reason, real) {
			d.Reason, hid = strings.ReplaceAll(d.Reason, real, src), true
		}
		if d.Subject.Value == real || d.Subject.Allow.Value == real {
			// The allowance would name the real path as a bind root.
			d.Subject.Value, d.Subject.Allow.Value, hid = src, "", true
		}
	}
	if hid {
		d.Reason += " (judged by the real path it leads to, which is not shown)"
	}
	return d
}
