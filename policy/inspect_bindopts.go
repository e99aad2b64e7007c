package policy

import "strings"

// checkBindOptions judges the options of a host path bind in Binds
// ("src:dst:opts", comma-separated), by allowlist: read-only or
// read-write, SELinux relabeling of the (pinned) source, private or slave
// propagation (as for Mounts[].BindOptions.Propagation), and the
// consistency hints dockerd ignores on Linux. Anything else, shared
// propagation above all, is refused with the option named.
func checkBindOptions(field, opts string) Decision {
	for _, o := range strings.Split(opts, ",") {
		switch o {
		case "ro", "rw", "z", "Z", "consistent", "cached", "delegated":
			continue
		case "private", "rprivate", "slave", "rslave":
			continue
		case "shared", "rshared":
			return checkPropagation(field+" propagation", o)
		}
		return forbid(ReasonBindMount, "bind options", about(field, never()), "%s option %s: not an allowed bind option (allowed: ro, rw, z, Z, private, rprivate, slave, rslave)", field, q(o))
	}
	return allow("bind options")
}
