package broker

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sockguard/sockguard/policy"
)

// LogFile is an append-only log file that a reload reopens at the same
// path, so logrotate can move the old one away (mv, then SIGHUP) without
// copytruncate. Writes and Reopen are serialized; a write never reaches a
// closed file.
type LogFile struct {
	path string
	mu   sync.Mutex // guards f
	f    *os.File
}

// OpenLogFile opens (or creates, mode 0600) path for appending.
func OpenLogFile(path string) (*LogFile, error) {
	f, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	return &LogFile{path: path, f: f}, nil
}

// openAppend opens path for appending, never through a symlink: whoever
// could swap the log path for a link between rotations must not get the
// broker appending to a file of their choosing.
func openAppend(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
}

// checkPresetDir refuses a preset dir, or a preset file in it, that
// someone besides root and the broker's own uid could write (unless
// allowShared): whoever writes a preset widens every socket using it at the
// next reload or restart.
func checkPresetDir(dir string, allowShared bool) error {
	if dir == "" || allowShared {
		return nil
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return fmt.Errorf("--preset-dir: %w", err)
	}
	for _, p := range append([]string{dir}, files...) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("--preset-dir: %w", err)
		}
		uid := -1
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			uid = int(st.Uid)
		}
		switch {
		case fi.Mode().Perm()&0o022 != 0:
			return fmt.Errorf("%w: --preset-dir: %s is writable by group or others (mode %#o) (pass --allow-shared-dirs if this is deliberate)",
				ErrInvalidArgument, p, fi.Mode().Perm())
		case uid != 0 && uid != os.Geteuid():
			return fmt.Errorf("%w: --preset-dir: %s is owned by uid %d, not root or the broker's uid (pass --allow-shared-dirs if this is deliberate)",
				ErrInvalidArgument, p, uid)
		}
	}
	return nil
}

func (l *LogFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Write(p)
}

// Reopen opens the path afresh and closes the old file. When the path
// cannot be opened, the old file stays in use and the error is returned.
func (l *LogFile) Reopen() error {
	f, err := openAppend(l.path)
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	return old.Close()
}

// Close closes the file.
func (l *LogFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}

// reloadResult says what a preset reload changed.
type reloadResult struct {
	Added, Removed, Changed []string // preset names
	Updated                 []string // sockets whose policy was recompiled
	Started                 []string // failed sockets that now serve
	StillFailed             []string // failed sockets that still do not
}

// errPresetInUse: a reload would remove a preset that sockets use.
var errPresetInUse = errors.New("preset removed but still in use")

// reload re-reads the preset dir and the access log; it runs on SIGHUP.
// A preset dir that fails (a file that does not parse or validate, a
// removed preset still used by a socket, a changed preset that no longer
// compiles for one of its sockets) changes nothing: the old presets and
// policies stay.
func (b *Broker) reload() {
	start := time.Now()
	// Advisory: a broken notify socket was logged at the first READY=1.
	_ = b.notify.Notify("RELOADING=1", "MONOTONIC_USEC="+monotonicUsec(), "STATUS=reloading")
	defer func() { _ = b.notify.Notify("READY=1", b.statusLine()) }()
	if f := b.cfg.AccessLogFile; f != nil {
		if err := f.Reopen(); err != nil {
			b.log.Error("access_log_reopen_failed", "path", b.cfg.AccessLog, "err", err)
		} else {
			b.log.Info("access_log_reopened")
		}
	}
	err := checkPresetDir(b.cfg.PresetDir, b.cfg.AllowSharedDirs)
	var cat *policy.Catalog
	if err == nil {
		cat, err = LoadCatalog(b.cfg.PresetDir)
	}
	if err == nil {
		var res reloadResult
		before := b.reg.catalog.Load()
		res, err = b.reg.applyCatalog(cat)
		if err == nil {
			b.auditReload(before, cat, res, nil)
			b.log.Info("presets_reloaded", "dir", b.cfg.PresetDir, "added", clipNames(res.Added), "removed", clipNames(res.Removed),
				"changed", clipNames(res.Changed), "sockets_updated", clipNames(res.Updated), "sockets_started", clipNames(res.Started),
				"sockets_still_failed", clipNames(res.StillFailed), "duration", time.Since(start))
			return
		}
	}
	b.log.Error("presets_reload_failed", "dir", b.cfg.PresetDir, "err", err, "kept", "the previous presets and policies")
	b.auditReload(nil, nil, reloadResult{}, err)
}

// maxLoggedNames bounds the names one reload log line lists.
const maxLoggedNames = 32

// clipNames is names for a log line: at most maxLoggedNames, then how
// many more there were.
func clipNames(names []string) string {
	if len(names) <= maxLoggedNames {
		return "[" + strings.Join(names, " ") + "]"
	}
	return fmt.Sprintf("[%s ...] (%d in all)", strings.Join(names[:maxLoggedNames], " "), len(names))
}

// applyCatalog swaps in cat when every socket still compiles under it,
// all or nothing. Sockets using a changed preset get their new policy the
// way update-socket applies one (requests in flight finish under the old
// one); failed sockets whose preset was added or changed are started.
func (r *Registry) applyCatalog(cat *policy.Catalog) (reloadResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.catalog.Load()
	var res reloadResult
	oldBy := map[string]*policy.Preset{}
	for _, p := range old.List() {
		oldBy[p.Name] = p
	}
	for _, p := range cat.List() {
		o, ok := oldBy[p.Name]
		switch {
		case !ok:
			res.Added = append(res.Added, p.Name)
		case !bytes.Equal(o.Source, p.Source):
			res.Changed = append(res.Changed, p.Name)
		}
		delete(oldBy, p.Name)
	}
	for name := range oldBy {
		res.Removed = append(res.Removed, name)
	}
	slices.Sort(res.Added)
	slices.Sort(res.Changed)
	slices.Sort(res.Removed)

	// Compile first against the new catalog, swap only when all compile.
	type swap struct {
		s  *tenantServer
		st *tenantState
	}
	var swaps []swap
	var retry []*tenantServer
	inUse := map[string][]string{}
	var compileErr error
	for name, s := range r.tenants {
		if s.invalid || s.purging || s.state.Load().t.Deleting {
			// Being deleted: never served again, whatever its preset.
			continue
		}
		st := s.state.Load()
		preset := st.t.Preset
		switch {
		case s.srv == nil:
			if slices.Contains(res.Added, preset) || slices.Contains(res.Changed, preset) {
				retry = append(retry, s)
			} else {
				res.StillFailed = append(res.StillFailed, name)
			}
		case slices.Contains(res.Removed, preset):
			inUse[preset] = append(inUse[preset], name)
		case slices.Contains(res.Changed, preset):
			pol, err := r.compileWith(cat, st.t)
			if err != nil && compileErr == nil {
				compileErr = fmt.Errorf("socket %s: %w", name, err)
			}
			swaps = append(swaps, swap{s, &tenantState{t: st.t, pol: pol}})
		}
	}
	if len(inUse) > 0 || compileErr != nil {
		if compileErr != nil {
			return reloadResult{}, compileErr
		}
		var msgs []string
		for _, p := range slices.Sorted(maps.Keys(inUse)) {
			names := inUse[p]
			slices.Sort(names)
			msgs = append(msgs, fmt.Sprintf("%s (sockets %s)", p, strings.Join(names, ", ")))
		}
		return reloadResult{}, fmt.Errorf("%w: %s: move those sockets to another preset with update-socket first",
			errPresetInUse, strings.Join(msgs, "; "))
	}
	r.catalog.Store(cat)
	for _, sw := range swaps {
		sw.s.state.Store(sw.st)
		res.Updated = append(res.Updated, sw.st.t.Name)
	}
	// A socket that failed at start (its preset file was missing or did
	// not compile) gets a new server now that its preset is there.
	for _, s := range retry {
		t := s.state.Load().t
		ns, err := r.startLocked(t)
		if err != nil {
			r.log.Warn("socket_start_failed", "socket", t.Name, "err", err)
			res.StillFailed = append(res.StillFailed, t.Name)
			continue
		}
		r.tenants[t.Name] = ns
		res.Started = append(res.Started, t.Name)
	}
	slices.Sort(res.Updated)
	slices.Sort(res.Started)
	slices.Sort(res.StillFailed)
	return res, nil
}
