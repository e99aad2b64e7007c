package broker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockguard/sockguard/broker/docker"
	"github.com/sockguard/sockguard/broker/isolation"
	"github.com/sockguard/sockguard/policy"
)

// pinMode says how the broker keeps a judged bind source from being
// swapped (a directory replaced by a symlink) before dockerd mounts it.
type pinMode string

const (
	// PinAuto picks PinMount where the broker can mount in dockerd's mount
	// namespace, else PinRootOwned where it sees the host's filesystem,
	// else PinRefuse.
	PinAuto pinMode = "auto"
	// PinMount opens each judged source without following any symlink,
	// bind-mounts it (by file descriptor) under <state-dir>/pins, and
	// forwards that path to dockerd: later changes under the tenant's bind
	// roots cannot change what a start or restart mounts.
	PinMount pinMode = "mount"
	// PinRootOwned forwards a source only if it is bound read-only and every
	// path component from / down to and including it is a root-owned
	// directory or file that neither group nor others may write: no tenant
	// can swap it. The runner's own (runner-owned) work directories are
	// refused in this mode.
	PinRootOwned pinMode = "root-owned"
	// PinRefuse refuses every host bind (the rewritten docker.sock bind
	// excepted): the broker cannot see the filesystem dockerd mounts from.
	PinRefuse pinMode = "refuse"
)

// ParsePinMode checks a --bind-pins value.
func ParsePinMode(s string) (pinMode, error) {
	switch m := pinMode(s); m {
	case PinAuto, PinMount, PinRootOwned, PinRefuse:
		return m, nil
	case "":
		return PinAuto, nil
	}
	return "", fmt.Errorf("%w: bind pin mode %q: use auto, mount, root-owned or refuse", ErrInvalidArgument, s)
}

// pinLabel is stamped on every container created through a tenant socket
// with the ids of the pin directories it mounts, comma-separated: its own
// and those of the containers it takes VolumesFrom (empty when none, never
// absent: dockerd gives a container the labels of its image where the
// create sets none, and an image may carry this label with another
// tenant's pin ids, read from the host's mountinfo). The sweep keeps
// exactly the pins an existing container names.
const pinLabel = "io.sockguard.pin"

// pinRefused is a bind source the broker will not forward; the handler
// refuses it in every policy mode (it guards the boundary, not a preference).
type pinRefused struct {
	status int
	msg    string
}

func (e *pinRefused) Error() string { return e.msg }

func refusedf(format string, args ...any) error {
	return &pinRefused{status: http.StatusForbidden, msg: fmt.Sprintf(format, args...)}
}

// pinner pins the bind sources of container creates and removes pins whose
// container is gone.
//
// Layout: dir/<tenant-id>/<pin-id>/<n>, every directory 0700 root; entry n
// is a bind mount (a directory, or an empty file for a file source) of the
// n-th pinned source of one create. Pins are never removed recursively: an
// entry is unmounted, then rmdir'd or unlinked, so a failed unmount can
// never delete the tenant's files through the mount.
type pinner struct {
	mode pinMode
	dir  string // <state-dir>/pins
	// guarded: the broker's own paths and the daemon sockets, as written
	// and resolved. No pinned source may name, contain or lie inside one.
	guarded       []string
	hostSocketDir string
	up            pinDaemon
	log           *slog.Logger
	kick          chan struct{} // a sweep is wanted soon (buffer 1)

	// limit bounds each tenant's pin entries (mounts): the host's mount
	// table is shared, and a tenant creating containers without end must
	// not fill it (fs.mount-max) for everyone.
	limit int

	mu       sync.Mutex          // guards inflight, counts and the creation and removal of pin directories
	inflight map[string]struct{} // pin ids whose create has not been answered yet
	counts   map[string]int      // tenant id -> pin entries on disk
}

// DefaultPinLimit is the default bound on one tenant's pinned bind sources.
const DefaultPinLimit = 4096

// pinDaemon is what pinning asks of the daemon (*docker.Client): where its
// socket is, the pins a container carries, and which containers carry
// pins.
type pinDaemon interface {
	SocketPath() string
	InspectContainer(ctx context.Context, ref string) (docker.Container, error)
	ListContainers(ctx context.Context, all bool, filters string) ([]docker.ContainerSummary, error)
}

func newPinner(mode pinMode, dir, hostSocketDir string, guarded []string, up pinDaemon, log *slog.Logger) *pinner {
	return &pinner{
		mode: mode, dir: dir, guarded: guarded, hostSocketDir: hostSocketDir, up: up, log: log,
		kick: make(chan struct{}, 1), inflight: make(map[string]struct{}), counts: make(map[string]int),
		limit: DefaultPinLimit,
	}
}

// setup decides the mode (auto) and prepares the pin directory. reason says
// why auto fell back; it is empty when the wanted mode was taken.
// hostFS: the broker sees the filesystem dockerd mounts from.
func (pn *pinner) setup(want pinMode, hostFS bool) (reason string, err error) {
	if want != PinAuto && want != PinMount {
		pn.mode = want
		return "", nil
	}
	fallback := func(why string) (string, error) {
		if want == PinMount {
			return "", fmt.Errorf("--bind-pins=mount: %s", why)
		}
		pn.mode = PinRootOwned
		if !hostFS {
			pn.mode = PinRefuse
		}
		return why, nil
	}
	if !hostFS {
		return fallback("the broker does not share dockerd's filesystem (--host-socket-dir is set, or the upstream is not a unix socket)")
	}
	if why := sameMountNamespace(pn.up.SocketPath()); why != "" {
		return fallback(why)
	}
	if err := pn.prepareDir(); err != nil {
		return fallback(err.Error())
	}
	pn.mode = PinMount
	if b, err := os.ReadFile("/proc/sys/fs/protected_hardlinks"); err == nil && strings.TrimSpace(string(b)) == "0" {
		// A pin holds what was judged, but a tenant may hard-link a file
		// it does not own into its bind root where the kernel allows it.
		pn.log.Warn("protected_hardlinks_off", "hint", "set fs.protected_hardlinks=1: otherwise a tenant can hard-link files it does not own into its bind roots")
	}
	return "", pn.countExisting()
}

// countExisting counts the pin entries a previous run left, per tenant.
func (pn *pinner) countExisting() error {
	tenants, err := os.ReadDir(pn.dir)
	if err != nil {
		return fmt.Errorf("pin directory: %w", err)
	}
	pn.mu.Lock()
	defer pn.mu.Unlock()
	for _, t := range tenants {
		pins, _ := os.ReadDir(filepath.Join(pn.dir, t.Name()))
		for _, p := range pins {
			ents, _ := os.ReadDir(filepath.Join(pn.dir, t.Name(), p.Name()))
			pn.counts[t.Name()] += len(ents)
		}
	}
	return nil
}

// reserve counts one more pin entry for a tenant, or refuses past the limit.
func (pn *pinner) reserve(tenantID string) error {
	pn.mu.Lock()
	defer pn.mu.Unlock()
	if pn.counts[tenantID] >= pn.limit {
		return &pinRefused{status: http.StatusTooManyRequests, msg: fmt.Sprintf(
			"this socket already has %d pinned bind sources (the broker's --pin-limit): remove containers that are no longer needed", pn.limit)}
	}
	pn.counts[tenantID]++
	return nil
}

// uncount forgets n pin entries of a tenant.
func (pn *pinner) uncount(tenantID string, n int) {
	if n == 0 {
		return
	}
	pn.mu.Lock()
	defer pn.mu.Unlock()
	if pn.counts[tenantID] -= n; pn.counts[tenantID] <= 0 {
		delete(pn.counts, tenantID)
	}
}

// prepareDir creates the pin directory (0700 root, never a symlink) and
// makes it a private mount, so that pins neither propagate out of the
// broker's mount namespace nor receive mounts from elsewhere.
func (pn *pinner) prepareDir() error {
	if err := ensureDir(pn.dir, 0o700); err != nil {
		return fmt.Errorf("pin directory: %w", err)
	}
	if err := os.Chmod(pn.dir, 0o700); err != nil {
		return fmt.Errorf("pin directory: %w", err)
	}
	root, err := isMountRoot(pn.dir)
	if err != nil {
		return fmt.Errorf("pin directory: %w", err)
	}
	if !root {
		if err := unix.Mount(pn.dir, pn.dir, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("cannot bind-mount the pin directory %s: %w", pn.dir, err)
		}
	}
	if err := unix.Mount("", pn.dir, "", unix.MS_PRIVATE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("cannot make the pin directory %s private: %w", pn.dir, err)
	}
	return nil
}

func isMountRoot(p string) (bool, error) {
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, p, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_BASIC_STATS, &stx); err != nil {
		return false, err
	}
	if stx.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT == 0 {
		return false, errors.New("the kernel does not report mount roots (statx)")
	}
	return stx.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0, nil
}

// sameMountNamespace says why pins made here would not be seen by dockerd
// ("" when they would): dockerd (the process serving sock) must share the
// broker's mount namespace.
func sameMountNamespace(sock string) string {
	if sock == "" {
		return "the upstream is not a unix socket"
	}
	c, err := net.DialTimeout("unix", sock, 2*time.Second)
	if err != nil {
		// dockerd is not up yet: a boot-order race must not downgrade the
		// mode for good. Pins in another namespace would only show dockerd
		// empty directories, never the host's.
		return ""
	}
	defer c.Close()
	cred, err := readPeerCred(c)
	if err != nil || cred.PID <= 0 {
		return "cannot learn dockerd's pid to compare mount namespaces"
	}
	theirs, err1 := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", cred.PID))
	ours, err2 := os.Readlink("/proc/self/ns/mnt")
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Sprintf("cannot compare mount namespaces with dockerd: %v", err)
	}
	if theirs != ours {
		return "dockerd runs in another mount namespace"
	}
	return ""
}

// selfSocket is the tenant's own socket as dockerd sees it: the target of
// the docker.sock rewrite, the one bind source never pinned (its directory
// is the broker's, so nobody else can swap it).
func (pn *pinner) selfSocket(name string) string {
	if pn.hostSocketDir == "" {
		return ""
	}
	return path.Join(pn.hostSocketDir, name, "sockguard.sock")
}

// judgeSource is the judgment of one cleaned bind source that needs no
// pin (the dry run shares it): the tenant's own socket self passes as
// written (exempt); the broker's own paths are refused.
func (pn *pinner) judgeSource(self, src string) (exempt bool, err error) {
	if self != "" && src == self {
		return true, nil
	}
	// Invariant: the broker's own files are never bound, whatever the
	// policy mode; only the docker.sock rewrite (self) reaches them.
	if pp, ok := policy.ProtectedOverlap(src, pn.guarded); ok {
		if src == "/" || strings.HasPrefix(pp, src+"/") {
			// Above the broker's path: not named (see checkBindSource).
			return false, refusedf("the bind would contain one of the broker's own paths")
		}
		return false, refusedf("the bind would expose the broker's own path %s", pp)
	}
	return false, nil
}

// errNoPins refuses a host bind where the broker cannot pin.
func errNoPins() error {
	return refusedf("host binds are refused: the broker cannot pin bind sources on this host (see broker --bind-pins)")
}

// prepare judges and, in mount mode, pins every host bind source of a
// container-create body that policy and isolation already passed. It
// returns the body to forward (sources replaced by their pins, the pin
// label stamped) and the pin id ("" when nothing was pinned). The caller
// must call finish with that id once dockerd has answered.
func (pn *pinner) prepare(ctx context.Context, tenantID, tenantName string, body []byte) (out []byte, pinID string, err error) {
	self := pn.selfSocket(tenantName)
	var pinDir string
	n := 0
	if !policy.MayBindHostPaths(body) {
		// No Binds or Mounts to pin: the body has passed policy's decoding,
		// so the rewrite would call back for nothing and change nothing.
		out, err := pn.labelPins(ctx, body, "")
		if err != nil {
			return nil, "", err
		}
		return out, "", nil
	}
	rb, err := policy.RewriteBindSources(body, func(s policy.BindSource) (string, error) {
		src := path.Clean(s.Source)
		if exempt, err := pn.judgeSource(self, src); exempt || err != nil {
			return s.Source, err
		}
		switch pn.mode {
		case PinMount:
			if pinDir == "" {
				var err error
				if pinID, pinDir, err = pn.begin(tenantID); err != nil {
					return "", err
				}
			}
			target := filepath.Join(pinDir, strconv.Itoa(n))
			n++
			if err := pn.reserve(tenantID); err != nil {
				return "", err
			}
			if err := pinSource(src, target, !s.Mount || s.CreateMountpoint, !s.NonRecursive); err != nil {
				// Counted while its entry exists; release removes and uncounts it.
				if _, lerr := os.Lstat(target); errors.Is(lerr, os.ErrNotExist) {
					pn.uncount(tenantID, 1)
				}
				return "", err
			}
			return target, nil
		case PinRootOwned:
			return s.Source, checkRootOwned(src, s.ReadOnly)
		default:
			return "", errNoPins()
		}
	})
	if err == nil {
		if rb != nil {
			body = rb
		}
		out, err = pn.labelPins(ctx, body, pinID)
	}
	if err != nil {
		if pinID != "" {
			pn.finish(tenantID, pinID, false)
		}
		return nil, "", err
	}
	return out, pinID, nil
}

// labelPins sets the pin label of a create body: its own pin id and those
// of the containers it mounts the volumes of. The body is decoded and
// encoded once for both.
func (pn *pinner) labelPins(ctx context.Context, body []byte, pinID string) ([]byte, error) {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, errAmbiguous("request body is not a JSON object")
	}
	if top == nil {
		top = map[string]json.RawMessage{}
	}
	ids, err := pn.inherited(ctx, top)
	if err != nil {
		return nil, err
	}
	if pinID != "" {
		ids = append(ids, pinID)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if len(ids) > maxPinRefs {
		return nil, refusedf("the container would hold %d pins through VolumesFrom (at most %d)", len(ids), maxPinRefs)
	}
	if err := isolation.SetLabelTop(top, pinLabel, strings.Join(ids, ",")); err != nil {
		return nil, err
	}
	return json.Marshal(top)
}

// maxPinRefs bounds the pin ids one container's label carries (its own and
// those it inherits through VolumesFrom).
const maxPinRefs = 64

// inherited returns the pin ids of the containers a create body mounts the
// volumes of (VolumesFrom, both levels): the new container binds their
// pins too, so it must keep them from being swept. Isolation has already
// replaced each reference by the full id of one of the tenant's containers.
// top is the body's top level; keys match without case, as dockerd reads
// them (the strict pass left one key per name).
func (pn *pinner) inherited(ctx context.Context, top map[string]json.RawMessage) ([]string, error) {
	var refs []string
	if k := foldKey(top, "VolumesFrom"); k != "" {
		if err := json.Unmarshal(top[k], &refs); err != nil {
			return nil, errAmbiguous("VolumesFrom: " + err.Error())
		}
	}
	if k := foldKey(top, "HostConfig"); k != "" {
		var hc struct{ VolumesFrom []string }
		if err := json.Unmarshal(top[k], &hc); err != nil {
			return nil, errAmbiguous("VolumesFrom: " + err.Error())
		}
		refs = append(refs, hc.VolumesFrom...)
	}
	if len(refs) == 0 {
		return nil, nil
	}
	if len(refs) > maxPinRefs {
		return nil, refusedf("VolumesFrom names %d containers (at most %d)", len(refs), maxPinRefs)
	}
	var ids []string
	for _, r := range refs {
		ref, _, _ := strings.Cut(r, ":")
		c, err := pn.up.InspectContainer(ctx, ref)
		if errors.Is(err, docker.ErrRejected) {
			continue // missing or ambiguous: dockerd refuses the create itself
		}
		if err != nil {
			return nil, fmt.Errorf("VolumesFrom %q: %w", ref, err)
		}
		if v := c.Labels[pinLabel]; v != "" {
			ids = append(ids, strings.Split(v, ",")...)
		}
	}
	return ids, nil
}

// begin makes a new pin directory for one create and marks it in flight,
// so that no sweep removes it before the create is answered.
func (pn *pinner) begin(tenantID string) (id, dir string, err error) {
	if tenantID == "" || strings.ContainsAny(tenantID, "/\x00") || tenantID == "." || tenantID == ".." {
		return "", "", fmt.Errorf("tenant id %q cannot name a pin directory", tenantID)
	}
	var b [8]byte
	rand.Read(b[:])
	id = hex.EncodeToString(b[:])
	pn.mu.Lock()
	defer pn.mu.Unlock()
	tdir := filepath.Join(pn.dir, tenantID)
	if err := unix.Mkdir(tdir, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
		return "", "", fmt.Errorf("creating the pin directory: %w", err)
	}
	dir = filepath.Join(tdir, id)
	if err := unix.Mkdir(dir, 0o700); err != nil {
		return "", "", fmt.Errorf("creating the pin directory: %w", err)
	}
	pn.inflight[id] = struct{}{}
	return id, dir, nil
}

// finish ends a create's pins: kept when dockerd created the container,
// removed at once otherwise.
func (pn *pinner) finish(tenantID, pinID string, created bool) {
	if pinID == "" {
		return
	}
	pn.mu.Lock()
	delete(pn.inflight, pinID)
	pn.mu.Unlock()
	if !created {
		if err := pn.release(tenantID, pinID); err != nil {
			pn.log.Warn("pin_release_failed", "tenant_id", tenantID, "pin", pinID, "err", err)
		}
	}
}

// openNoFollow opens the clean absolute path p with O_PATH, one component
// at a time, refusing any symlink on the way: what is opened is exactly the
// path that was judged. With create, missing directories are made (root,
// 0755) the way dockerd makes a missing Binds source.
func openNoFollow(p string, create bool) (int, error) {
	fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if p == "/" {
		return fd, nil
	}
	comps := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i, c := range comps {
		nfd, err := unix.Openat(fd, c, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) && create {
			nfd, err = mkdirOpen(fd, c)
		}
		unix.Close(fd)
		if errors.Is(err, unix.ENOENT) {
			return -1, &pinRefused{status: http.StatusBadRequest, msg: fmt.Sprintf("bind source path does not exist: %s", "/"+path.Join(comps[:i+1]...))}
		}
		if err != nil {
			return -1, fmt.Errorf("opening %s: %w", "/"+path.Join(comps[:i+1]...), err)
		}
		fd = nfd
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return -1, err
		}
		switch {
		case st.Mode&unix.S_IFMT == unix.S_IFLNK:
			unix.Close(fd)
			return -1, refusedf("%s is a symlink now: the path changed after it was judged", "/"+path.Join(comps[:i+1]...))
		case i < len(comps)-1 && st.Mode&unix.S_IFMT != unix.S_IFDIR:
			unix.Close(fd)
			return -1, refusedf("%s is not a directory", "/"+path.Join(comps[:i+1]...))
		}
	}
	return fd, nil
}

// mkdirOpen makes directory name in dirfd and opens it, mode 0755 whatever
// the umask (the mode dockerd gives a Binds source it creates).
func mkdirOpen(dirfd int, name string) (int, error) {
	if err := unix.Mkdirat(dirfd, name, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, fmt.Errorf("creating %s: %w", name, err)
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if st.Uid == 0 && st.Mode&0o7777 != 0o755 {
		if err := unix.Fchmod(fd, 0o755); err != nil {
			unix.Close(fd)
			return -1, err
		}
	}
	return fd, nil
}

// pinSource bind-mounts the source at p (opened without following links)
// onto target, a new entry in a pin directory. recursive keeps dockerd's
// rbind semantics; the pin is made private so that no later mount on
// either side reaches the other.
func pinSource(p, target string, create, recursive bool) error {
	fd, err := openNoFollow(p, create)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		err = unix.Mkdir(target, 0o700)
	} else {
		var tfd int
		if tfd, err = unix.Open(target, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600); err == nil {
			unix.Close(tfd)
		}
	}
	if err != nil {
		return fmt.Errorf("creating the pin %s: %w", target, err)
	}
	flags := uintptr(unix.MS_BIND)
	if recursive {
		flags |= unix.MS_REC
	}
	if err := unix.Mount("/proc/self/fd/"+strconv.Itoa(fd), target, "", flags, ""); err != nil {
		return fmt.Errorf("pinning %s: %w", p, err)
	}
	if err := unix.Mount("", target, "", unix.MS_PRIVATE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("pinning %s: %w", p, err)
	}
	return nil
}

// checkRootOwned is the rule where nothing can be pinned: a read-only bind
// of a path whose every component, from / down to and including it, is
// owned by root and writable by neither group nor others. Nobody but root
// can swap such a path; read-only keeps the tenant's own containers (root
// inside, root on the host) from doing it through the bind.
func checkRootOwned(p string, readOnly bool) error {
	if !readOnly {
		return refusedf("bind it read-only: without bind pins (see broker --bind-pins) only read-only binds of root-owned paths are allowed")
	}
	cur := "/"
	comps := []string{""}
	if p != "/" {
		comps = append(comps, strings.Split(strings.TrimPrefix(p, "/"), "/")...)
	}
	for _, c := range comps {
		cur = path.Join(cur, c)
		var st unix.Stat_t
		if err := unix.Lstat(cur, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return &pinRefused{status: http.StatusBadRequest, msg: "bind source path does not exist: " + cur}
			}
			return fmt.Errorf("checking %s: %w", cur, err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return refusedf("%s is a symlink now: the path changed after it was judged", cur)
		}
		if st.Uid != 0 || st.Mode&0o022 != 0 {
			return refusedf("%s is not owned by root or is writable by group or others: without bind pins (see broker --bind-pins) only root-owned paths can be bound", cur)
		}
	}
	return nil
}

// release removes one pin directory: each entry unmounted, then removed
// without recursion (rmdir or unlink), then the directory itself.
func (pn *pinner) release(tenantID, pinID string) error {
	dir := filepath.Join(pn.dir, tenantID, pinID)
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	var errs []error
	gone := 0
	defer func() { pn.uncount(tenantID, gone) }()
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		// Unmount until the entry is no mount point any more (EINVAL).
		for range 8 {
			err := unix.Unmount(p, unix.UMOUNT_NOFOLLOW)
			if errors.Is(err, unix.EBUSY) {
				err = unix.Unmount(p, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
			}
			if err != nil {
				break
			}
		}
		// Never recursive: on a mount point these fail with EBUSY.
		err := unix.Rmdir(p)
		if errors.Is(err, unix.ENOTDIR) {
			err = unix.Unlink(p)
		}
		if err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("removing %s: %w", p, err))
			continue
		}
		gone++
	}
	if err := unix.Rmdir(dir); err != nil && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, fmt.Errorf("removing %s: %w", dir, err))
	}
	return errors.Join(errs...)
}

// pinRef names one pin directory.
type pinRef struct{ tenant, pin string }

// candidates lists the pin directories not in flight. A create that begins
// later gets a fresh id, so it can never be among them.
func (pn *pinner) candidates() ([]pinRef, error) {
	pn.mu.Lock()
	defer pn.mu.Unlock()
	tenants, err := os.ReadDir(pn.dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var out []pinRef
	for _, t := range tenants {
		if !t.IsDir() {
			continue
		}
		pins, err := os.ReadDir(filepath.Join(pn.dir, t.Name()))
		if err != nil {
			return nil, err
		}
		for _, p := range pins {
			if _, busy := pn.inflight[p.Name()]; !busy {
				out = append(out, pinRef{t.Name(), p.Name()})
			}
		}
	}
	return out, nil
}

// referenced asks dockerd which pin ids its containers (running or not)
// name. The label was stamped by the broker at create; dockerd offers no
// way to change a container's labels later.
func (pn *pinner) referenced(ctx context.Context) (map[string]bool, error) {
	f, _ := json.Marshal(map[string][]string{"label": {pinLabel}})
	cs, err := pn.up.ListContainers(ctx, true, string(f))
	if errors.Is(err, docker.ErrRejected) {
		// Fail safe: without a list, every pin would look unreferenced.
		return nil, errors.New("dockerd refused the container list")
	}
	if err != nil {
		return nil, err
	}
	refs := make(map[string]bool, len(cs))
	for _, c := range cs {
		for _, id := range strings.Split(c.Labels[pinLabel], ",") {
			if id != "" {
				refs[id] = true
			}
		}
	}
	return refs, nil
}

// sweep removes every pin no existing container names. It removes
// nothing when dockerd cannot be asked.
func (pn *pinner) sweep(ctx context.Context) (removed int, err error) {
	cands, err := pn.candidates()
	if err != nil || len(cands) == 0 {
		return 0, err
	}
	refs, err := pn.referenced(ctx)
	if err != nil {
		return 0, fmt.Errorf("listing containers: %w", err)
	}
	var errs []error
	for _, c := range cands {
		if refs[c.pin] {
			continue
		}
		if err := pn.release(c.tenant, c.pin); err != nil {
			errs = append(errs, err)
			continue
		}
		removed++
	}
	pn.mu.Lock()
	for _, c := range cands {
		// Empty tenant directories go; a non-empty one fails harmlessly.
		_ = unix.Rmdir(filepath.Join(pn.dir, c.tenant))
	}
	pn.mu.Unlock()
	return removed, errors.Join(errs...)
}

// kickSweep asks for a sweep soon (a container may just have gone).
func (pn *pinner) kickSweep() {
	select {
	case pn.kick <- struct{}{}:
	default:
	}
}

// run sweeps at start, every interval, and when kicked, until ctx ends.
// dockerd removes containers itself (--rm, restart policies never pass
// through the broker), so the timer is what bounds a pin's life after
// its container is gone.
func (pn *pinner) run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = time.Minute
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	failing := false
	for {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		n, err := pn.sweep(sctx)
		cancel()
		switch {
		case err != nil && !failing:
			// Logged once per failure streak: a down daemon must not flood the log.
			pn.log.Warn("pin_sweep_failed", "err", err)
			failing = true
		case err == nil:
			failing = false
		}
		if n > 0 {
			pn.log.Debug("pins_removed", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-pn.kick:
		}
	}
}
