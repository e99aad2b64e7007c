package broker

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/sockguard/sockguard/policy"
)

// hostSystemPaths are the host's kernel interfaces and the container
// engine's own state: a bind root that contains or lies inside one hands a
// job container the host (/proc/sysrq-trigger, other containers' environ,
// device nodes, containerd's socket, every container's filesystem). They
// are refused whatever an operator asks for; the default data roots are
// listed, a daemon with another --data-root is the operator's to keep out.
var hostSystemPaths = []string{
	"/proc", "/sys", "/dev",
	"/run/containerd", "/run/docker", "/var/run/containerd", "/var/run/docker",
	"/var/lib/docker", "/var/lib/containerd",
}

// pseudoFilesystems are the kernel filesystems a bind root may not be on
// (wherever they are mounted): they are interfaces to the host, not files.
var pseudoFilesystems = map[int64]string{
	unix.PROC_SUPER_MAGIC:    "proc",
	unix.SYSFS_MAGIC:         "sysfs",
	unix.DEVPTS_SUPER_MAGIC:  "devpts",
	unix.CGROUP_SUPER_MAGIC:  "cgroup",
	unix.CGROUP2_SUPER_MAGIC: "cgroup2",
	unix.DEBUGFS_MAGIC:       "debugfs",
	unix.TRACEFS_MAGIC:       "tracefs",
	unix.SECURITYFS_MAGIC:    "securityfs",
	unix.BPF_FS_MAGIC:        "bpf",
	unix.EFIVARFS_MAGIC:      "efivarfs",
	unix.PSTOREFS_MAGIC:      "pstore",
	0x19800202:               "mqueue",  // MQUEUE_MAGIC
	0x65735543:               "fusectl", // FUSE_CTL_SUPER_MAGIC
	unix.NSFS_MAGIC:          "nsfs",
	unix.BINFMTFS_MAGIC:      "binfmt_misc",
	unix.HUGETLBFS_MAGIC:     "hugetlbfs",
}

// checkRootFilesystem refuses a bind root (its real path) that overlaps a
// host system path or sits on a kernel pseudo filesystem. A root that does
// not exist yet is judged by its path alone.
func checkRootFilesystem(real string) error {
	if pp, ok := policy.ProtectedOverlap(real, hostSystemPaths); ok {
		return fmt.Errorf("overlaps the host system path %q", pp)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(real, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("statfs: %w", err)
	}
	if name, ok := pseudoFilesystems[int64(st.Type)]; ok {
		return fmt.Errorf("is on the kernel's %s filesystem, not a directory of files", name)
	}
	return nil
}

// setuidSafe reports whether the filesystem at path ignores setuid bits and
// device nodes (mounted nosuid,nodev): files a container writes there
// cannot raise a host user's privileges. A path that cannot be examined
// is reported unsafe.
func setuidSafe(path string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	const want = unix.ST_NOSUID | unix.ST_NODEV
	return st.Flags&want == want
}
