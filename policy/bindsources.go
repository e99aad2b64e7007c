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
	var b containerCreateBody
	if err := checkStrictJSON(body, containerCreateDataMaps()); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := decodeTyped(body, &b); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	var rw rewrites
	for _, hc := range []struct {
		prefix      string
		h           *hostConfigBody
		binds, mnts *map[int]string
	}{
		{"", &b.hostConfigBody, &rw.topBinds, &rw.topMounts},
		{"HostConfig.", b.HostConfig, &rw.binds, &rw.mounts},
	} {
		if hc.h == nil {
			continue
		}
		if err := resolveHostConfig(hc.prefix, hc.h, hc.binds, hc.mnts, resolve); err != nil {
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

// resolveHostConfig mirrors checkHostConfig's reading of Binds and Mounts:
// the same entries are host paths here and there.
func resolveHostConfig(prefix string, h *hostConfigBody, binds, mounts *map[int]string, resolve func(field, src string) (string, error)) error {
	for i, bind := range h.Binds {
		parts := strings.Split(bind, ":")
		if len(parts) > 3 || parts[0] == "" || len(parts) == 1 || !strings.HasPrefix(parts[0], "/") {
			continue // malformed (InspectBody refuses it) or a volume, not a host path
		}
		field := fmt.Sprintf("%sBinds[%d]", prefix, i)
		real, err := resolveOne(field, parts[0], resolve)
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
		field := fmt.Sprintf("%sMounts[%d].Source", prefix, i)
		real, err := resolveOne(field, m.Source, resolve)
		if err != nil {
			return err
		}
		if real != m.Source {
			setRewrite(mounts, i, real)
		}
	}
	return nil
}

func resolveOne(field, src string, resolve func(field, src string) (string, error)) (string, error) {
	real, err := resolve(field, src)
	if err != nil {
		return "", &BindSourceError{Field: field, Source: src, Err: err}
	}
	// Fail closed: only an absolute path without NUL may replace a bind source.
	if !path.IsAbs(real) || strings.ContainsRune(real, 0) {
		return "", &BindSourceError{Field: field, Source: src, Err: fmt.Errorf("resolved path %s is not an absolute path", q(real))}
	}
	return real, nil
}
