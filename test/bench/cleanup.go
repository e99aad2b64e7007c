package main

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// removeTemp removes a run's temporary directory. The broker bind-mounts
// its pin directory (<state-dir>/pins) onto itself when it runs as root,
// and leaves it mounted at exit (pins outlive a restart), so every mount
// point under dir is detached first, deepest first; otherwise the
// directory could not be removed and each run would leave a mount behind.
func removeTemp(dir string) error {
	for _, m := range mountsUnder(dir) {
		if err := unix.Unmount(m, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil {
			logf("unmounting %s: %v", m, err)
		}
	}
	// Never remove through a mount: a pin is a read-write bind of a host
	// path, and a recursive removal would delete the host's files.
	if left := mountsUnder(dir); len(left) > 0 {
		return fmt.Errorf("not removing %s: still mounted under it: %v", dir, left)
	}
	return os.RemoveAll(dir)
}

// mountsUnder lists the mount points at or below dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// Field 5 is the mount point (octal escapes for spaces and such;
		// the bench's own paths have none).
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		if mp := fields[4]; mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out
}
