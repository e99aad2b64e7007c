package policy

import (
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The checks of judged fields the field table (fields.go) names by rule.
// Each is an allowlist: what it does not know is refused, with the field
// named.

// logDriverOptions lists, per log driver, the options the broker lets
// through. A driver that is allowed but not listed takes no options.
// Options that name templates (tag) or remote endpoints are absent on
// purpose.
func logDriverOptions(driver string) map[string]func(string) bool {
	size := func(v string) bool { return sizeValue.MatchString(v) }
	count := func(v string) bool { n, err := strconv.Atoi(v); return err == nil && n >= 1 && n <= 1000 }
	boolean := func(v string) bool { _, err := strconv.ParseBool(v); return err == nil }
	keys := func(v string) bool { return len(v) <= 1024 }
	re := func(v string) bool { _, err := regexp.Compile(v); return len(v) <= 1024 && err == nil }
	switch driver {
	case "":
		// The daemon's default driver (json-file or local unless the
		// operator chose otherwise): the rotation options both know.
		return map[string]func(string) bool{"max-size": size, "max-file": count, "compress": boolean}
	case "json-file":
		return map[string]func(string) bool{"max-size": size, "max-file": count, "compress": boolean,
			"labels": keys, "labels-regex": re, "env": keys, "env-regex": re}
	case "local":
		return map[string]func(string) bool{"max-size": size, "max-file": count, "compress": boolean}
	case "journald":
		return map[string]func(string) bool{"labels": keys, "labels-regex": re, "env": keys, "env-regex": re}
	}
	return nil
}

// sizeValue is a byte size as dockerd's units parser reads it (10m, 1.5g, 512k, 100).
var sizeValue = regexp.MustCompile(`^[0-9]{1,15}(\.[0-9]{1,6})?\s?([kKmMgGtTpP][iI]?)?[bB]?$`)

type logConfigBody struct {
	Type   string
	Config map[string]string
}

// checkLogConfig allows the daemon default or a preset-allowed driver, with
// that driver's known options only. Remote drivers (syslog, gelf, fluentd,
// splunk, awslogs...) make dockerd connect out from the host's network
// namespace, so they pass only where a preset lists them, without options.
func (p *Policy) checkLogConfig(prefix string, lc *logConfigBody) Decision {
	const rule = "container.allowed_log_drivers"
	if lc.Type != "" && !p.preset.ctr.allowedLogDrivers[lc.Type] {
		return forbid(ReasonBodyDenied, rule, aboutValue(prefix+"LogConfig.Type", lc.Type, setting("container", "allowed_log_drivers", lc.Type)), "%sLogConfig.Type %s: log driver is not in this preset's allowlist", prefix, q(lc.Type))
	}
	known := logDriverOptions(lc.Type)
	for _, k := range sortedKeys(lc.Config) {
		valid, ok := known[k]
		if !ok {
			return forbid(ReasonBodyDenied, rule, about(prefix+"LogConfig.Config", never()), "%sLogConfig.Config[%s]: option is not allowed for log driver %s", prefix, q(k), q(lc.Type))
		}
		if !valid(lc.Config[k]) {
			return forbid(ReasonBodyDenied, rule, about(prefix+"LogConfig.Config", never()), "%sLogConfig.Config[%s] %s: not a valid value", prefix, q(k), q(lc.Config[k]))
		}
	}
	return allow(rule)
}

type ulimitBody struct {
	Name       string
	Hard, Soft int64
}

// ulimitMax is the allowlist of ulimits with the highest soft and hard value
// each may take; -1 (unlimited) only where the bound is -1. Limits that
// only constrain the container, or that Docker's defaults already grant,
// are open; memlock may not be raised past the kernel default; nice, rtprio
// and rttime (scheduling priority) and anything unlisted are refused.
func ulimitMax(name string) (max int64, ok bool) {
	switch name {
	case "nofile":
		return 1 << 20, true // dockerd's usual default hard limit
	case "nproc", "core", "cpu", "fsize", "data", "as", "rss", "locks":
		return -1, true
	case "stack":
		return 1 << 30, true // finite: an unlimited stack changes the mmap layout
	case "memlock":
		return 8 << 20, true // the kernel default since 5.16; raising it pins host memory
	}
	return 0, false
}

func checkUlimits(prefix string, us []*ulimitBody) Decision {
	const rule = "ulimits"
	for i, u := range us {
		field := fmt.Sprintf("%sUlimits[%d]", prefix, i)
		if u == nil {
			// dockerd dereferences every element (strictjson refuses it first).
			return malformed(rule, "%s is null", field)
		}
		max, ok := ulimitMax(u.Name)
		if !ok {
			return forbid(ReasonEscalation, rule, about(field+".Name", never()), "%s.Name %s: this ulimit is not allowed (allowed: nofile, nproc, core, stack, memlock up to 8 MiB, cpu, fsize, data, as, rss, locks)", field, q(u.Name))
		}
		for _, v := range []struct {
			name string
			n    int64
		}{{"Soft", u.Soft}, {"Hard", u.Hard}} {
			switch {
			case v.n < -1:
				return forbid(ReasonBodyDenied, rule, about(field+"."+v.name, never()), "%s.%s %d: not a limit", field, v.name, v.n)
			case max == -1:
			case v.n == -1 || v.n > max:
				return forbid(ReasonEscalation, rule, about(field+"."+v.name, never()), "%s.%s %d: %s may not exceed %d", field, v.name, v.n, u.Name, max)
			}
		}
	}
	return allow(rule)
}

// checkOomScoreAdj refuses a negative OOM score adjustment: it shields the
// container from the OOM killer, which then kills host processes instead.
func checkOomScoreAdj(prefix string, adj int) Decision {
	if adj < 0 {
		return forbid(ReasonEscalation, "oom score", about(prefix+"OomScoreAdj", never()), "%sOomScoreAdj %d: a negative OOM score adjustment is not allowed", prefix, adj)
	}
	return allow("oom score")
}

// checkIsolation allows only the default isolation (the others are Windows).
func checkIsolation(prefix, iso string) Decision {
	if iso != "" && !strings.EqualFold(iso, "default") {
		return forbid(ReasonBodyDenied, "isolation", about(prefix+"Isolation", never()), "%sIsolation %s: only the default isolation is allowed", prefix, q(iso))
	}
	return allow("isolation")
}

// checkGroupAdd refuses supplementary groups that may be root's when the
// preset requires a non-root user (as for User, a name may map to GID 0).
func (p *Policy) checkGroupAdd(prefix string, groups []string) Decision {
	const rule = "container.require_non_root"
	if !p.preset.ctr.requireNonRoot {
		return allow(rule)
	}
	for i, g := range groups {
		if gid, err := strconv.ParseInt(g, 10, 64); err != nil || gid <= 0 {
			return forbid(ReasonBodyDenied, rule, about(fmt.Sprintf("%sGroupAdd[%d]", prefix, i), setting("container", "require_non_root", "false")), "%sGroupAdd[%d] %s: this preset requires numeric non-root groups", prefix, i, q(g))
		}
	}
	return allow(rule)
}

type healthcheckBody struct {
	Interval, StartInterval int64 // nanoseconds
}

// minHealthInterval bounds how often dockerd execs a probe in a container.
const minHealthInterval = int64(100 * time.Millisecond)

func checkHealthcheck(h *healthcheckBody) Decision {
	const rule = "healthcheck"
	if h == nil {
		return allow(rule)
	}
	for _, v := range []struct {
		name string
		n    int64
	}{{"Interval", h.Interval}, {"StartInterval", h.StartInterval}} {
		if v.n != 0 && v.n < minHealthInterval {
			return forbid(ReasonBodyDenied, rule, about("Healthcheck."+v.name, never()), "Healthcheck.%s %s: probes more often than every 100ms are not allowed (each probe is an exec by dockerd)", v.name, time.Duration(v.n))
		}
	}
	return allow(rule)
}

// checkSubpath allows a relative path inside a volume or image: no leading
// "/", no ".." segment.
func checkSubpath(field, sub string) Decision {
	const rule = "subpath"
	if sub == "" {
		return allow(rule)
	}
	if strings.HasPrefix(sub, "/") || strings.ContainsRune(sub, 0) {
		return forbid(ReasonBindMount, rule, about(field, never()), "%s %s: a subpath must be relative", field, q(sub))
	}
	for _, seg := range strings.Split(sub, "/") {
		if seg == ".." {
			return forbid(ReasonBindMount, rule, about(field, never()), "%s %s: a subpath may not contain \"..\"", field, q(sub))
		}
	}
	if path.Clean(sub) == ".." {
		return forbid(ReasonBindMount, rule, about(field, never()), "%s %s: a subpath may not leave the volume", field, q(sub))
	}
	return allow(rule)
}

// checkPropagation allows private and slave propagation only: a shared bind
// would carry mounts made in the container back to the host.
func checkPropagation(field, prop string) Decision {
	switch prop {
	case "", "private", "rprivate", "slave", "rslave":
		return allow("bind options")
	}
	return forbid(ReasonBindMount, "bind options", about(field, never()), "%s %s: only private or slave propagation is allowed", field, q(prop))
}

// ownerLabelNamespace is the label prefix the broker stamps (owner labels).
const ownerLabelNamespace = "io.sockguard."

// checkOwnerLabels refuses labels in the broker's namespace where the
// broker does not stamp them itself (volumes a mount creates).
func checkOwnerLabels(field string, labels map[string]string) Decision {
	for _, k := range sortedKeys(labels) {
		if strings.HasPrefix(strings.ToLower(k), ownerLabelNamespace) {
			return forbid(ReasonBodyDenied, "owner label", about(field, never()), "%s[%s]: labels under %s are the broker's", field, q(k), ownerLabelNamespace)
		}
	}
	return allow("owner label")
}

// tmpfsOptionAllowed lists the tmpfs mount options the broker lets through
// (exec, suid and dev are refused by checkTmpfsOption with their own reason).
func tmpfsOptionAllowed(name string) bool {
	switch name {
	case "rw", "ro", "noexec", "nosuid", "nodev", "size", "mode", "uid", "gid", "nr_inodes", "nr_blocks",
		"noatime", "nodiratime", "relatime", "strictatime", "tmpcopyup":
		return true
	}
	return false
}

// checkLocalVolumeOptions is the allowlist of the local volume driver's
// options, which it hands to mount(2) in the host's mount namespace: no
// options at all (a plain directory), or exactly a tmpfs (type=tmpfs,
// device=tmpfs) whose o= carries only size, mode, uid, gid, nr_inodes and
// nr_blocks values and the noexec, nosuid, nodev, ro and rw flags. Any
// other type (a host filesystem, nfs, overlay, a block device), device or
// key is refused with the option named.
func checkLocalVolumeOptions(field string, opts map[string]string) Decision {
	const rule = "local volume options"
	if len(opts) == 0 {
		return allow(rule)
	}
	for _, k := range sortedKeys(opts) {
		v := opts[k]
		switch k {
		case "type", "device":
			if v != "tmpfs" {
				return forbid(ReasonBindMount, rule, about(field, never()), "%s[%s] %s: the local driver allows only tmpfs volumes (type=tmpfs, device=tmpfs); host filesystems, devices and binds are not allowed", field, q(k), q(v))
			}
		case "o":
			for _, o := range strings.Split(v, ",") {
				if d := checkTmpfsVolumeOption(field, o); !d.Allow {
					return d
				}
			}
		default:
			return forbid(ReasonBindMount, rule, about(field, never()), "%s[%s]: option is not allowed for the local driver (allowed: type, device, o of a tmpfs volume)", field, q(k))
		}
	}
	if opts["type"] != "tmpfs" || opts["device"] != "tmpfs" {
		return forbid(ReasonBindMount, rule, about(field, never()), "%s: a local volume with options must be a tmpfs (type=tmpfs and device=tmpfs)", field)
	}
	return allow(rule)
}

var (
	tmpfsSizeValue  = regexp.MustCompile(`^[0-9]{1,15}[kKmMgG%]?$`)
	tmpfsModeValue  = regexp.MustCompile(`^[0-7]{1,4}$`)
	tmpfsIDValue    = regexp.MustCompile(`^[0-9]{1,10}$`)
	tmpfsCountValue = regexp.MustCompile(`^[0-9]{1,15}[kKmMgG]?$`)
)

func checkTmpfsVolumeOption(field, o string) Decision {
	const rule = "local volume options"
	name, val, hasVal := strings.Cut(o, "=")
	var ok bool
	switch name {
	case "noexec", "nosuid", "nodev", "ro", "rw":
		ok = !hasVal
	case "size":
		ok = tmpfsSizeValue.MatchString(val)
	case "mode":
		ok = tmpfsModeValue.MatchString(val)
	case "uid", "gid":
		ok = tmpfsIDValue.MatchString(val)
	case "nr_inodes", "nr_blocks":
		ok = tmpfsCountValue.MatchString(val)
	default:
		// Only the option's name: its value can be a credential
		// (cifs: o=username=...,password=...).
		return forbid(ReasonBindMount, rule, about(field+`["o"]`, never()), "%s[\"o\"] option %s: mount option is not allowed (allowed: size, mode, uid, gid, nr_inodes, nr_blocks, noexec, nosuid, nodev, ro, rw)", field, q(name))
	}
	if !ok {
		return forbid(ReasonBindMount, rule, about(field+`["o"]`, never()), "%s[\"o\"] option %s: not a valid value", field, q(truncate(o)))
	}
	return allow(rule)
}
