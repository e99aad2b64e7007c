package policy

import (
	"fmt"
	"path"
	"strings"
)

// BindSourceError is a resolve failure for one bind source; Field names it
// the way a Decision's Reason does (e.g. "HostConfig.Binds[0]",
// "Mounts[1].Source").
type BindSourceError struct {
	Field, Source string
	Err           error
}

func (e *BindSourceError) Error() string {
	return fmt.Sprintf("%s %s: resolving the bind source: %v", e.Field, q(e.Source), e.Err)
}

func (e *BindSourceError) Unwrap() error { return e.Err }

// BindSource is one host bind source of a container-create body, as
// RewriteBindSources hands it to its callback.
type BindSource struct {
	Field  string // e.g. "HostConfig.Binds[0]", "Mounts[1].Source"
	Source string // the host path as the body names it
	// Mount is true for a HostConfig.Mounts entry: dockerd refuses a missing
	// source there (unless CreateMountpoint), where for Binds it creates the
	// directory.
	Mount bool
	// CreateMountpoint is BindOptions.CreateMountpoint of a Mounts entry.
	CreateMountpoint bool
	// ReadOnly: the bind is read-only, sub-mounts included (":ro" in Binds;
	// ReadOnly without BindOptions.ReadOnlyNonRecursive in Mounts).
	ReadOnly bool
	// NonRecursive is BindOptions.NonRecursive of a Mounts entry: dockerd
	// binds the source without its sub-mounts.
	NonRecursive bool
}

// ResolveBindSources rewrites every host bind source in a container-create body (HostConfig.Binds host paths,
// HostConfig.Mounts of type bind, and the top-level HostConfig-style fields dockerd 20.10 also reads) through
// resolve (the broker passes a function doing filepath.EvalSymlinks when the path exists). It returns nil when
// nothing changed, else the re-encoded body (same re-encoding approach as the daemon-socket rewrite).
// Errors from resolve are returned wrapped (the broker turns them into a denial naming the field).
//
// The broker calls it before InspectBody and inspects the rewritten body, so
// the real path is what is judged and forwarded: a symlink under an allowed
// root that points at /etc or at the daemon socket is judged as /etc or the
// socket. It visits exactly the sources InspectBody judges as host paths;
// anything InspectBody refuses as malformed is left alone for it to refuse.
//
// Errors: a body that is not strict JSON wraps ErrMalformed (answer 400); a
// resolve failure, or a resolved path that is not absolute or cannot be
// written back into the bind syntax, is a *BindSourceError.
func ResolveBindSources(body []byte, resolve func(field, src string) (string, error)) ([]byte, error) {
	if resolve == nil {
		return nil, fmt.Errorf("nil resolver")
	}
	return RewriteBindSources(body, func(s BindSource) (string, error) { return resolve(s.Field, s.Source) })
}

// RewriteBindSources is ResolveBindSources with the whole BindSource handed
// to fn. The broker uses it twice on a container create: to resolve
// symlinks before judging, and to replace each judged source by its pin.
func RewriteBindSources(body []byte, fn func(BindSource) (string, error)) ([]byte, error) {
	if fn == nil {
		return nil, fmt.Errorf("nil resolver")
	}
	var b containerCreateBody
	if err := checkStrictJSON(body, containerCreateDataMaps()); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := decodeTyped(body, &b); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	// The bind options the policy types may not model, read on their own
	// (encoding/json matches keys case-insensitively, as dockerd does).
	var opts struct {
		Mounts     []mountBindOptions
		HostConfig *struct{ Mounts []mountBindOptions }
	}
	// Only Mounts entries read opts. With none at either level the decode
	// cannot fail where the one above did not (it reads a subset of the
	// same members with the same types, a Mounts that is null or []
	// included), so it is skipped.
	if len(b.Mounts) > 0 || (b.HostConfig != nil && len(b.HostConfig.Mounts) > 0) {
		if err := decodeTyped(body, &opts); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
	}
	var rw rewrites
	var hostMounts []mountBindOptions
	if opts.HostConfig != nil {
		hostMounts = opts.HostConfig.Mounts
	}
	for _, hc := range []struct {
		prefix      string
		h           *hostConfigBody
		opts        []mountBindOptions
		binds, mnts *map[int]string
	}{
		{"", &b.hostConfigBody, opts.Mounts, &rw.topBinds, &rw.topMounts},
		{"HostConfig.", b.HostConfig, hostMounts, &rw.binds, &rw.mounts},
	} {
		if hc.h == nil {
			continue
		}
		if err := resolveHostConfig(hc.prefix, hc.h, hc.opts, hc.binds, hc.mnts, fn); err != nil {
			return nil, err
		}
	}
	if rw.empty() {
		return nil, nil
	}
	out, err := rw.apply(body)
	if err != nil {
		return nil, fmt.Errorf("%w: re-encoding the resolved bind sources: %v", ErrMalformed, err)
	}
	return out, nil
}

// mountBindOptions is the part of a Mounts entry that says how dockerd
// binds its source.
type mountBindOptions struct {
	BindOptions *struct {
		NonRecursive     bool
		CreateMountpoint bool
	}
}

// resolveHostConfig mirrors checkHostConfig's reading of Binds and Mounts:
// the same entries are host paths here and there.
func resolveHostConfig(prefix string, h *hostConfigBody, opts []mountBindOptions, binds, mounts *map[int]string, fn func(BindSource) (string, error)) error {
	for i, bind := range h.Binds {
		parts := strings.Split(bind, ":")
		if len(parts) > 3 || parts[0] == "" || len(parts) == 1 || !strings.HasPrefix(parts[0], "/") {
			continue // malformed (InspectBody refuses it) or a volume, not a host path
		}
		field := fmt.Sprintf("%sBinds[%d]", prefix, i)
		ro := false
		if len(parts) == 3 {
			r, ok := bindReadOnly(parts[2])
			ro = r && ok
		}
		real, err := resolveOne(BindSource{Field: field, Source: parts[0], ReadOnly: ro}, fn)
		if err != nil {
			return err
		}
		if strings.ContainsRune(real, ':') {
			// The bind syntax splits on ':': the resolved path cannot be written back as one.
			return &BindSourceError{Field: field, Source: parts[0], Err: fmt.Errorf("resolved path %s contains ':'", q(real))}
		}
		if real != parts[0] {
			setRewrite(binds, i, real+bind[len(parts[0]):])
		}
	}
	for i, m := range h.Mounts {
		if !strings.EqualFold(m.Type, "bind") || !strings.HasPrefix(m.Source, "/") {
			continue // not a host path (a relative bind source is refused by InspectBody)
		}
		s := BindSource{Field: fmt.Sprintf("%sMounts[%d].Source", prefix, i), Source: m.Source, Mount: true,
			ReadOnly: m.ReadOnly && (m.BindOptions == nil || !m.BindOptions.ReadOnlyNonRecursive)}
		if i < len(opts) && opts[i].BindOptions != nil {
			s.NonRecursive = opts[i].BindOptions.NonRecursive
			s.CreateMountpoint = opts[i].BindOptions.CreateMountpoint
		}
		real, err := resolveOne(s, fn)
		if err != nil {
			return err
		}
		if real != m.Source {
			setRewrite(mounts, i, real)
		}
	}
	return nil
}

func resolveOne(s BindSource, fn func(BindSource) (string, error)) (string, error) {
	real, err := fn(s)
	if err != nil {
		return "", &BindSourceError{Field: s.Field, Source: s.Source, Err: err}
	}
	// Fail closed: only an absolute path without NUL may replace a bind source.
	if !path.IsAbs(real) || strings.ContainsRune(real, 0) {
		return "", &BindSourceError{Field: s.Field, Source: s.Source, Err: fmt.Errorf("resolved path %s is not an absolute path", q(real))}
	}
	return real, nil
}

// protectedOverlap reports the first of protected that p names, contains or
// lies inside (whole path segments; all paths clean and absolute).
func protectedOverlap(p string, protected []string) (string, bool) {
	for _, s := range protected {
		if p == s || isUnder(s, p) || isUnder(p, s) {
			return s, true
		}
	}
	return "", false
}

// ProtectedOverlap is protectedOverlap for the broker: it reports which of
// protected the clean absolute path p names, contains or lies inside.
func ProtectedOverlap(p string, protected []string) (string, bool) {
	return protectedOverlap(path.Clean(p), protected)
}
