package broker

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// errSocketInUse means a live process is already serving a socket path.
var errSocketInUse = errors.New("socket is in use")

// ensureDir makes sure path is a directory the broker can trust: created by
// the broker if missing, never a symlink (it is not followed), owned by the
// broker's own uid and not writable by group or others. An existing path
// that fails any check is refused, never repaired.
func ensureDir(path string, perm fs.FileMode) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.Mkdir(path, perm); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create directory %s: %w", path, err)
		}
		// Mkdir honours the umask; set the mode we mean.
		if err := os.Chmod(path, perm); err != nil {
			return fmt.Errorf("chmod %s: %w", path, err)
		}
		fi, err = os.Lstat(path)
	}
	if err != nil {
		return fmt.Errorf("inspect %s: %w", path, err)
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%w: %s is a symlink; refusing to follow it", ErrInvalidArgument, path)
	case !fi.IsDir():
		return fmt.Errorf("%w: %s exists and is not a directory", ErrInvalidArgument, path)
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("%w: directory %s is writable by group or others (mode %#o); refusing to use it", ErrInvalidArgument, path, fi.Mode().Perm())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%w: directory %s is owned by uid %d, not the broker's uid %d; refusing to use it", ErrInvalidArgument, path, st.Uid, os.Geteuid())
	}
	return nil
}

// ensureSocketDir is ensureDir(path, 0755) for the socket directory; with
// allowShared, a directory that exists may be owned by another uid or be
// group/world-writable (it must still be a real directory, not a symlink).
func ensureSocketDir(path string, allowShared bool) error {
	err := ensureDir(path, 0o755)
	if err == nil || !allowShared {
		if err != nil {
			err = fmt.Errorf("%w (pass --allow-shared-dirs if this is deliberate)", err)
		}
		return err
	}
	fi, lerr := os.Lstat(path)
	if lerr != nil || !fi.IsDir() {
		return err
	}
	return nil
}

// unixListener is a listener whose socket file is removed on Close.
type unixListener struct {
	*net.UnixListener
	path string
}

func (l *unixListener) Close() error {
	err := l.UnixListener.Close()
	os.Remove(l.path)
	return err
}

// listenUnix listens on path. A stale socket file (nobody answers a dial) is
// replaced; a live one fails with ErrSocketInUse; any other kind of file at
// path is refused. The socket is bound under a temporary name, given owner
// uid:gid and mode perm, and only then renamed into place, so nobody can
// connect to it before its permissions are final.
func listenUnix(path string, uid, gid int, perm fs.FileMode) (*unixListener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&fs.ModeSocket == 0 {
			return nil, fmt.Errorf("%w: %s exists and is not a socket; refusing to replace it", ErrInvalidArgument, path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("%w: another process is serving %s", errSocketInUse, path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("inspect %s: %w", path, err)
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+"~")
	os.Remove(tmp) // left by a crash between listen and rename
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (*unixListener, error) {
		ln.Close()
		os.Remove(tmp)
		return nil, err
	}
	if err := os.Chown(tmp, uid, gid); err != nil {
		return fail(fmt.Errorf("chown %s: %w", path, err))
	}
	if err := os.Chmod(tmp, perm); err != nil {
		return fail(fmt.Errorf("chmod %s: %w", path, err))
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(fmt.Errorf("rename into %s: %w", path, err))
	}
	return &unixListener{UnixListener: ln, path: path}, nil
}

// checkSocketParent refuses to serve a socket (the admin or the health
// socket) in a directory that another user could change under the broker:
// owned by another uid than root or the broker's, or writable by group or
// others without the sticky bit. listenUnix binds under a temporary name
// and chowns and chmods that name before renaming it into place; whoever
// can rename files in the directory could swap the name for a symlink in
// between and have the broker chmod another file (0666 for the health
// socket). A sticky directory such as /tmp keeps others from renaming the
// broker's files. allowShared (--allow-shared-dirs) takes the risk.
func checkSocketParent(flag, path string, allowShared bool) error {
	if allowShared {
		return nil
	}
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("%s: %w", flag, err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case ok && st.Uid != 0 && int(st.Uid) != os.Geteuid():
		return fmt.Errorf("%w: %s: directory %s is owned by uid %d, not root or the broker's uid (pass --allow-shared-dirs if this is deliberate)",
			ErrInvalidArgument, flag, dir, st.Uid)
	case fi.Mode().Perm()&0o022 != 0 && fi.Mode()&fs.ModeSticky == 0:
		return fmt.Errorf("%w: %s: directory %s is writable by group or others (mode %#o) without the sticky bit (pass --allow-shared-dirs if this is deliberate)",
			ErrInvalidArgument, flag, dir, fi.Mode().Perm())
	}
	return nil
}
