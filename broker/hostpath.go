package broker

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// resolveHostPath returns the real path of a bind source as the Docker
// daemon on this host will see it: every symlink resolved. For a path that
// does not exist yet (dockerd creates a missing Binds source directory,
// following links on the way), the longest existing prefix is resolved and
// the rest appended, so a link anywhere along the path is seen.
//
// Only meaningful when the broker shares the host's filesystem; a broker in
// a container sees its own (Registry.resolveBinds says which).
func resolveHostPath(_, src string) (string, error) {
	p := filepath.Clean(src)
	rest := ""
	for {
		real, err := filepath.EvalSymlinks(p)
		if err == nil {
			return filepath.Join(real, rest), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		// A dangling link is not "missing": dockerd would follow it.
		if fi, lerr := os.Lstat(p); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return "", errors.New("dangling symlink")
		}
		parent := filepath.Dir(p)
		if parent == p {
			return filepath.Join(p, rest), nil
		}
		rest = filepath.Join(filepath.Base(p), rest)
		p = parent
	}
}
