package broker

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sockguard/sockguard/broker/docker"
	"github.com/sockguard/sockguard/broker/isolation"
)

// Peers inside containers. A job container of the runner talks to the
// tenant socket through the rewritten docker.sock bind, often as root, so
// its uid says nothing about who it is. Its container does: the peer's pid
// (from SO_PEERCRED) leads through /proc/<pid>/cgroup to the container id,
// and the container's owner label (immutable, stamped by the broker at
// create) to the tenant.
//
// Only the cgroup paths dockerd itself creates count, anchored at the
// cgroup root: "/docker/<id>" (cgroupfs driver) and
// "/system.slice/docker-<id>.scope" (systemd driver), in the unified (v2)
// line or any v1 hierarchy. An unprivileged host user may create cgroups
// with any name inside its own delegated subtree (user@UID.service), never
// at these places. A dockerd started with another --cgroup-parent, or a
// broker in its own cgroup or pid namespace, sees no container here and
// falls back to the uid/gid rule.

// peerPlace is where a connecting process runs.
type peerPlace struct {
	container string // full container id; "" for a process outside any container of this daemon
	owner     string // the container's owner label; "" when it has none
}

// containerIDFromCgroup finds the docker container id in the text of
// /proc/<pid>/cgroup. ok is false when the process is in no container
// cgroup; an error means the file names two different containers.
func containerIDFromCgroup(data []byte) (id string, err error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		// hierarchy-id:controllers:path; the path may contain ':'.
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		got, err := anchoredContainerID(parts[2])
		if err != nil {
			return "", err
		}
		switch {
		case got == "":
		case id == "":
			id = got
		case id != got:
			return "", fmt.Errorf("cgroup file names two containers (%.12s and %.12s)", id, got)
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("read cgroup file: %w", err)
	}
	return id, nil
}

// anchoredContainerID returns the id in a cgroup path that starts with
// /docker/<id> or /system.slice/docker-<id>.scope, else "". A container
// cgroup nested below it (a container started with that cgroup as its
// --cgroup-parent, which the presets refuse, or docker-in-docker) is an
// error: its process would otherwise pass for the outer container's.
func anchoredContainerID(p string) (string, error) {
	segs := strings.Split(strings.TrimPrefix(p, "/"), "/")
	if len(segs) < 2 {
		return "", nil
	}
	var id string
	switch {
	case segs[0] == "docker" && isFullID(segs[1]):
		id = segs[1]
	case segs[0] == "system.slice":
		id = scopeID(segs[1])
	}
	if id == "" {
		return "", nil
	}
	for _, s := range segs[2:] {
		if isFullID(s) || scopeID(s) != "" {
			return "", fmt.Errorf("cgroup %s nests a container inside container %.12s", p, id)
		}
	}
	return id, nil
}

// scopeID returns the id of a systemd scope "docker-<id>.scope", else "".
func scopeID(seg string) string {
	if !strings.HasPrefix(seg, "docker-") || !strings.HasSuffix(seg, ".scope") {
		return ""
	}
	if id := strings.TrimSuffix(strings.TrimPrefix(seg, "docker-"), ".scope"); isFullID(id) {
		return id
	}
	return ""
}

// isFullID reports whether s is a full container id: 64 lower-case hex.
func isFullID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// peerLocator maps a peer process to its container and that container's
// owner. Owner labels cannot change after create and ids are never reused,
// so answers are cached by full id (bounded; the cache is cleared when
// full). "No such container" is cached too: an id in a cgroup path that
// this daemon does not know belongs to another engine.
type peerLocator struct {
	up       containerInspector
	procRoot string // "/proc"

	mu     sync.Mutex // guards owners
	owners map[string]ownerEntry
}

type ownerEntry struct {
	owner string
	found bool
}

// maxOwnerCache bounds the owner cache.
const maxOwnerCache = 4096

// ownerLookupTimeout bounds one container inspect for a connecting peer.
const ownerLookupTimeout = 5 * time.Second

// containerInspector is what peer identification asks of the daemon
// (*docker.Client).
type containerInspector interface {
	InspectContainer(ctx context.Context, ref string) (docker.Container, error)
}

func newPeerLocator(up containerInspector) *peerLocator {
	return &peerLocator{up: up, procRoot: "/proc", owners: make(map[string]ownerEntry)}
}

// errPeerGone means the connecting process exited before it was
// identified; its pid may already belong to someone else.
var errPeerGone = errors.New("the connecting process exited before it could be identified")

// locate finds where the peer with this pid runs. pidfd, when >= 0, is a
// pidfd of the peer taken at connect time (SO_PEERPIDFD): it proves the
// pid was not reused while the cgroup file was read. pid 0 (the peer is
// outside the broker's pid namespace) is a process outside any container
// the broker can see.
func (l *peerLocator) locate(ctx context.Context, pid int32, pidfd int) (peerPlace, error) {
	if pid <= 0 {
		return peerPlace{}, nil
	}
	data, err := os.ReadFile(l.procRoot + "/" + strconv.Itoa(int(pid)) + "/cgroup")
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return peerPlace{}, errPeerGone
		}
		return peerPlace{}, fmt.Errorf("read the peer's cgroup: %w", err)
	}
	if pidfd >= 0 {
		// The pid still names the process that connected: a pidfd keeps
		// its pid from being reused, and signal 0 fails once it is reaped.
		if err := unix.PidfdSendSignal(pidfd, 0, nil, 0); errors.Is(err, unix.ESRCH) {
			return peerPlace{}, errPeerGone
		}
	}
	id, err := containerIDFromCgroup(data)
	if err != nil || id == "" {
		return peerPlace{}, err
	}
	owner, found, err := l.owner(ctx, id)
	if err != nil {
		return peerPlace{}, err
	}
	if !found {
		return peerPlace{}, nil // not a container of this daemon
	}
	return peerPlace{container: id, owner: owner}, nil
}

// owner returns the owner label of container id, asking dockerd on a
// cache miss.
func (l *peerLocator) owner(ctx context.Context, id string) (owner string, found bool, err error) {
	l.mu.Lock()
	e, ok := l.owners[id]
	l.mu.Unlock()
	if ok {
		return e.owner, e.found, nil
	}
	ctx, cancel := context.WithTimeout(ctx, ownerLookupTimeout)
	defer cancel()
	c, err := l.up.InspectContainer(ctx, id)
	switch {
	case err == nil:
		if c.ID != id {
			return "", false, fmt.Errorf("inspect the peer's container %.12s: daemon answered for %.12s", id, c.ID)
		}
		e = ownerEntry{owner: c.Labels[isolation.OwnerLabel], found: true}
	case errors.Is(err, docker.ErrNotFound):
		// Only a 404: any other refusal leaves the peer unidentified.
		e = ownerEntry{}
	default:
		return "", false, fmt.Errorf("inspect the peer's container %.12s: %w", id, err)
	}
	l.mu.Lock()
	if len(l.owners) >= maxOwnerCache {
		clear(l.owners)
	}
	l.owners[id] = e
	l.mu.Unlock()
	return e.owner, e.found, nil
}

// peerVerdict decides whether a peer may use tenant t's socket.
//
//   - A process in a container of this daemon that carries an owner label
//     is allowed exactly when the label is this tenant's id, whatever its
//     uid: the tenant's own job containers (often root) get in, another
//     tenant's containers never do, even with an allowed uid.
//   - Any other process (on the host, or in a container without an owner
//     label, such as a runner started by the operator) is judged by
//     --allow-uid/--allow-gid; with neither, the socket file's owner and
//     mode are the only gate.
//   - When the container cannot be determined, the peer is refused.
//
// reason is empty when the peer is allowed.
func peerVerdict(t *Tenant, c peerCred, place peerPlace, locateErr error) (reason string) {
	if locateErr != nil {
		return fmt.Sprintf("connection from uid %d gid %d pid %d refused: cannot tell whether it runs in a container: %v", c.UID, c.GID, c.PID, locateErr)
	}
	if place.container != "" && place.owner != "" {
		if place.owner == t.ID {
			return ""
		}
		return fmt.Sprintf("connection from uid %d gid %d pid %d refused: it runs in container %.12s of another tenant", c.UID, c.GID, c.PID, place.container)
	}
	if len(t.AllowUIDs) == 0 && len(t.AllowGIDs) == 0 {
		return "" // the socket file's owner and mode are the gate
	}
	for _, u := range t.AllowUIDs {
		if u == c.UID {
			return ""
		}
	}
	for _, g := range t.AllowGIDs {
		if g == c.GID {
			return ""
		}
	}
	where := "on the host"
	if place.container != "" {
		where = fmt.Sprintf("in container %.12s, which no tenant owns", place.container)
	}
	return fmt.Sprintf("connection from uid %d gid %d pid %d (%s) is not allowed on this socket: its uid and gid are not in the allowed lists, and it does not run in one of this tenant's containers", c.UID, c.GID, c.PID, where)
}
