package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
)

// containerCreateBody is the part of dockerd's container-create body
// (ContainerConfigWrapper) that the rails judge. Field names and JSON types
// follow the Docker API; unknown fields are ignored, as dockerd ignores them.
type containerCreateBody struct {
	User       string
	WorkingDir string
	MacAddress string // deprecated top-level form (API < 1.44)

	Healthcheck *healthcheckBody

	HostConfig       *hostConfigBody
	NetworkingConfig *networkingConfigBody

	// dockerd's wrapper (20.10 and later for years) also embeds a HostConfig,
	// so HostConfig fields at the top level are read too (deprecated, but
	// live). The rails judge both; a zero value passes every rail.
	hostConfigBody
}

type hostConfigBody struct {
	Binds        []string
	NetworkMode  string
	PidMode      string
	IpcMode      string
	UTSMode      string
	UsernsMode   string
	CgroupnsMode string
	Privileged   bool
	CapAdd       strSlice
	SecurityOpt  []string
	// MaskedPaths and ReadonlyPaths: nil (absent or null) means dockerd's
	// defaults; an explicit list replaces them.
	MaskedPaths    []string
	ReadonlyPaths  []string
	Sysctls        map[string]string
	Runtime        string
	Links          []string
	VolumesFrom    []string
	VolumeDriver   string
	Tmpfs          map[string]string
	Mounts         []mountBody
	ReadonlyRootfs bool
	Annotations    map[string]string
	LogConfig      logConfigBody
	OomScoreAdj    int
	GroupAdd       []string
	Isolation      string

	resourcesBody // embedded in dockerd's HostConfig, as here
}

// resourcesBody is the part of dockerd's Resources the rails judge: inside
// HostConfig on create, and the whole body of a container update.
type resourcesBody struct {
	CgroupParent      string
	Devices           []deviceMapping
	DeviceRequests    []deviceRequest
	DeviceCgroupRules []string
	Memory            int64
	NanoCPUs          int64 `json:"NanoCpus"`
	CPUQuota          int64 `json:"CpuQuota"`
	PidsLimit         *int64
	Ulimits           []*ulimitBody
}

// checkResources refuses host devices and a chosen cgroup parent, on create
// and on update alike.
func checkResources(prefix string, r *resourcesBody) Decision {
	switch {
	case len(r.Devices) > 0:
		return forbid(ReasonEscalation, "devices", about(prefix+"Devices", never()), "%sDevices: host devices (%s) are not allowed", prefix, q(r.Devices[0].PathOnHost))
	case len(r.DeviceRequests) > 0:
		return forbid(ReasonEscalation, "devices", about(prefix+"DeviceRequests", never()), "%sDeviceRequests: device requests (GPUs) are not allowed", prefix)
	case len(r.DeviceCgroupRules) > 0:
		return forbid(ReasonEscalation, "devices", about(prefix+"DeviceCgroupRules", never()), "%sDeviceCgroupRules %s: device cgroup rules are not allowed", prefix, q(r.DeviceCgroupRules[0]))
	case r.CgroupParent != "":
		return forbid(ReasonEscalation, "cgroup parent", about(prefix+"CgroupParent", never()), "%sCgroupParent %s: choosing the cgroup parent is not allowed", prefix, q(r.CgroupParent))
	}
	return checkUlimits(prefix, r.Ulimits)
}

type deviceMapping struct {
	PathOnHost        string
	PathInContainer   string
	CgroupPermissions string
}

type deviceRequest struct {
	Driver       string
	Count        int
	DeviceIDs    []string
	Capabilities [][]string
	Options      map[string]string
}

type mountBody struct {
	Type        string
	Source      string
	Target      string
	ReadOnly    bool
	BindOptions *struct {
		Propagation          string
		ReadOnlyNonRecursive bool
	}
	VolumeOptions *struct {
		Labels       map[string]string
		Subpath      string
		DriverConfig *struct {
			Name    string
			Options map[string]string
		}
	}
	ImageOptions *struct {
		Subpath string
	}
	TmpfsOptions *struct {
		Options [][]string
	}
}

type networkingConfigBody struct {
	EndpointsConfig map[string]*endpointSettingsBody
}

type endpointSettingsBody struct {
	IPAMConfig *struct {
		IPv4Address  string
		IPv6Address  string
		LinkLocalIPs []string
	}
	Links      []string
	MacAddress string
}

// containerCreateDataMaps returns the compiled field table of a
// container-create body (which also says where the data maps are, at both
// levels dockerd reads HostConfig).
func containerCreateDataMaps() *fieldNode { return schemaFor(BodyContainerCreate) }

const ruleContainer = "container create"

func (p *Policy) inspectContainerCreate(body []byte) (Decision, []byte) {
	var b containerCreateBody
	if d, ok := readBody(body, containerCreateDataMaps(), &b, ruleContainer); !ok {
		return d, nil
	}
	c := &p.preset.ctr

	if c.requireNonRoot {
		if d := requireNonRootUser("User", b.User, "container.require_non_root"); !d.Allow {
			return d, nil
		}
	}
	if d := checkWorkingDir("WorkingDir", b.WorkingDir); !d.Allow {
		return d, nil
	}
	if b.MacAddress != "" {
		return forbid(ReasonBodyDenied, "container create", about("MacAddress", never()), "MacAddress %s: static MAC addresses are not allowed", q(b.MacAddress)), nil
	}
	if d := checkHealthcheck(b.Healthcheck); !d.Allow {
		return d, nil
	}

	var rw rewrites
	// Both host configs are judged: the HostConfig member and the deprecated
	// top-level fields dockerd still merges.
	for _, hc := range []struct {
		prefix string
		h      *hostConfigBody
		rw     *map[int]string
		rwm    *map[int]string
	}{
		{"", &b.hostConfigBody, &rw.topBinds, &rw.topMounts},
		{"HostConfig.", b.HostConfig, &rw.binds, &rw.mounts},
	} {
		if hc.h == nil {
			continue
		}
		if d := p.checkHostConfig(hc.prefix, hc.h, hc.rw, hc.rwm); !d.Allow {
			return d, nil
		}
	}
	if c.requireNoNewPrivileges || c.requireReadOnlyRootfs || c.requireMemoryLimit || c.requireCPULimit || c.requirePidsLimit {
		if d := p.checkRequiredRails(&b); !d.Allow {
			return d, nil
		}
	}
	if b.NetworkingConfig != nil {
		names := make([]string, 0, len(b.NetworkingConfig.EndpointsConfig))
		for n := range b.NetworkingConfig.EndpointsConfig {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			field := "NetworkingConfig.EndpointsConfig[" + strconv.Quote(n) + "]"
			if d := checkEndpoint(field, b.NetworkingConfig.EndpointsConfig[n]); !d.Allow {
				return d, nil
			}
		}
	}

	if rw.empty() {
		return allow(ruleContainer), nil
	}
	newBody, err := rw.apply(body)
	if err != nil {
		return malformed(ruleContainer, "rewriting the daemon socket bind: %v", err), nil
	}
	d := allow("container.daemon_socket_bind: rewrite")
	d.Reason = "daemon socket bind rewritten to the tenant's own socket " + q(p.selfSocket)
	return d, newBody
}

// checkHostConfig applies every HostConfig rail. prefix is "HostConfig." or
// "" (the top-level form). Daemon-socket binds to rewrite are recorded in
// binds/mounts by index.
func (p *Policy) checkHostConfig(prefix string, h *hostConfigBody, binds, mounts *map[int]string) Decision {
	c := &p.preset.ctr
	if h.Privileged && !c.allowPrivileged {
		return forbid(ReasonPrivileged, "container.allow_privileged", about(prefix+"Privileged", setting("container", "allow_privileged", "true")),
			"%sPrivileged is true: privileged containers are not allowed", prefix)
	}
	for _, ns := range []struct {
		field, value, what string
		joinable           bool
	}{
		{"NetworkMode", h.NetworkMode, "network", true},
		{"PidMode", h.PidMode, "PID", true},
		{"IpcMode", h.IpcMode, "IPC", true},
		{"UTSMode", h.UTSMode, "UTS", false},
		{"UsernsMode", h.UsernsMode, "user", false},
		{"CgroupnsMode", h.CgroupnsMode, "cgroup", false},
	} {
		// dockerd compares exactly "host"; case variants are refused too (fail closed).
		if strings.EqualFold(ns.value, "host") {
			return forbid(ReasonHostNamespace, "host namespaces", about(prefix+ns.field, never()),
				"%s%s %s: sharing the host %s namespace is not allowed", prefix, ns.field, q(ns.value), ns.what)
		}
		if hasPrefixFold(ns.value, "ns:") {
			return forbid(ReasonHostNamespace, "host namespaces", about(prefix+ns.field, never()),
				"%s%s %s: joining a namespace by path is not allowed", prefix, ns.field, q(ns.value))
		}
		if !ns.joinable && hasPrefixFold(ns.value, "container:") {
			return forbid(ReasonHostNamespace, "host namespaces", about(prefix+ns.field, never()),
				"%s%s %s: joining another container's %s namespace is not allowed", prefix, ns.field, q(ns.value), ns.what)
		}
	}

	for i, bind := range h.Binds {
		field := fmt.Sprintf("%sBinds[%d]", prefix, i)
		parts := strings.Split(bind, ":")
		if len(parts) > 3 || parts[0] == "" {
			return malformed(ruleContainer, "%s %s: not a src:dst[:options] bind", field, q(bind))
		}
		if len(parts) == 1 || !strings.HasPrefix(parts[0], "/") {
			continue // an anonymous or named volume, not a host path
		}
		ro := false
		if len(parts) == 3 {
			var ok bool
			if ro, ok = bindReadOnly(parts[2]); !ok {
				return malformed(ruleContainer, "%s %s: both ro and rw given", field, q(bind))
			}
			if d := checkBindOptions(field, parts[2]); !d.Allow {
				return d
			}
		}
		rewrite, d := p.checkBindSource(field, parts[0], ro, false)
		if !d.Allow {
			return d
		}
		if rewrite {
			setRewrite(binds, i, p.selfSocket+bind[len(parts[0]):])
		}
	}

	if h.VolumeDriver != "" {
		// Named volumes in Binds are created with this driver.
		if d := p.checkVolumeDriver(prefix+"VolumeDriver", h.VolumeDriver); !d.Allow {
			return d
		}
	}
	for i, m := range h.Mounts {
		field := fmt.Sprintf("%sMounts[%d]", prefix, i)
		switch strings.ToLower(m.Type) {
		case "bind":
			if !strings.HasPrefix(m.Source, "/") {
				return forbid(ReasonBindMount, "container.allowed_bind_roots", about(field+".Source", never()), "%s.Source %s: a bind source must be an absolute host path", field, q(m.Source))
			}
			nonRec := m.BindOptions != nil && m.BindOptions.ReadOnlyNonRecursive
			rewrite, d := p.checkBindSource(field+".Source", m.Source, m.ReadOnly, nonRec)
			if !d.Allow {
				return d
			}
			if rewrite {
				setRewrite(mounts, i, p.selfSocket)
			}
		case "volume", "tmpfs", "image":
			// Their options are judged below, whatever the type says.
		default:
			return forbid(ReasonBindMount, "mounts", about(field+".Type", never()), "%s.Type %s: only bind, volume, tmpfs and image mounts are allowed", field, q(m.Type))
		}
		// Every option group is judged even where dockerd would refuse it
		// for this type: fail closed if a daemon version reads it anyway.
		if bo := m.BindOptions; bo != nil {
			if d := checkPropagation(field+".BindOptions.Propagation", bo.Propagation); !d.Allow {
				return d
			}
		}
		if vo := m.VolumeOptions; vo != nil {
			if d := checkOwnerLabels(field+".VolumeOptions.Labels", vo.Labels); !d.Allow {
				return d
			}
			if d := checkSubpath(field+".VolumeOptions.Subpath", vo.Subpath); !d.Allow {
				return d
			}
			if dc := vo.DriverConfig; dc != nil {
				if d := p.checkVolumeDriver(field+".VolumeOptions.DriverConfig.Name", dc.Name); !d.Allow {
					return d
				}
				if isLocalVolumeDriver(dc.Name) {
					if d := checkLocalVolumeOptions(field+".VolumeOptions.DriverConfig.Options", dc.Options); !d.Allow {
						return d
					}
				}
			}
		}
		if io := m.ImageOptions; io != nil {
			if d := checkSubpath(field+".ImageOptions.Subpath", io.Subpath); !d.Allow {
				return d
			}
		}
		if to := m.TmpfsOptions; to != nil {
			for j, opt := range to.Options {
				if len(opt) == 0 {
					continue
				}
				if d := checkTmpfsOption(fmt.Sprintf("%s.TmpfsOptions.Options[%d]", field, j), opt[0]); !d.Allow {
					return d
				}
			}
		}
	}

	for _, dst := range sortedKeys(h.Tmpfs) {
		for _, opt := range strings.Split(h.Tmpfs[dst], ",") {
			if d := checkTmpfsOption(prefix+"Tmpfs["+strconv.Quote(dst)+"]", opt); !d.Allow {
				return d
			}
		}
	}

	if len(h.VolumesFrom) > 0 && !c.allowVolumesFrom {
		return forbid(ReasonBodyDenied, "container.allow_volumes_from", about(prefix+"VolumesFrom", setting("container", "allow_volumes_from", "true")), "%sVolumesFrom: mounting another container's volumes is not allowed", prefix)
	}
	if len(h.Links) > 0 && !c.allowLinks {
		return forbid(ReasonBodyDenied, "container.allow_links", about(prefix+"Links", setting("container", "allow_links", "true")), "%sLinks: container links are not allowed", prefix)
	}
	if d := checkResources(prefix, &h.resourcesBody); !d.Allow {
		return d
	}
	for _, cp := range h.CapAdd {
		n := normalizeCap(cp)
		if n == "ALL" {
			return forbid(ReasonEscalation, "container.allowed_capabilities", about(prefix+"CapAdd", never()), "%sCapAdd %s: adding all capabilities is not allowed", prefix, q(cp))
		}
		if !c.allowedCaps[n] {
			a := never() // a preset can list Linux capabilities only
			if isLinuxCapability(n) {
				a = setting("container", "allowed_capabilities", n)
			}
			return forbid(ReasonEscalation, "container.allowed_capabilities", aboutValue(prefix+"CapAdd", n, a), "%sCapAdd %s: capability %s is not in this preset's allowlist", prefix, q(cp), n)
		}
	}
	for _, so := range h.SecurityOpt {
		if d := checkSecurityOpt(prefix+"SecurityOpt", so); !d.Allow {
			return d
		}
	}
	if d := checkSystemPaths(prefix+"MaskedPaths", h.MaskedPaths, "/proc/kcore", "/proc/keys", "/sys/firmware"); !d.Allow {
		return d
	}
	if d := checkSystemPaths(prefix+"ReadonlyPaths", h.ReadonlyPaths, "/proc/sys", "/proc/sysrq-trigger"); !d.Allow {
		return d
	}
	if len(h.Sysctls) > 0 {
		return forbid(ReasonEscalation, "sysctls", about(prefix+"Sysctls", never()), "%sSysctls %s: setting kernel parameters is not allowed", prefix, q(sortedKeys(h.Sysctls)[0]))
	}
	if h.Runtime != "" && !c.allowedRuntimes[h.Runtime] {
		return forbid(ReasonEscalation, "container.allowed_runtimes", aboutValue(prefix+"Runtime", h.Runtime, setting("container", "allowed_runtimes", h.Runtime)), "%sRuntime %s: runtime is not in this preset's allowlist", prefix, q(h.Runtime))
	}
	if len(h.Annotations) > 0 {
		// Some runtimes act on OCI annotations (host paths, hypervisor settings).
		return forbid(ReasonEscalation, "annotations", about(prefix+"Annotations", never()), "%sAnnotations %s: OCI annotations are not allowed", prefix, q(sortedKeys(h.Annotations)[0]))
	}
	if d := p.checkLogConfig(prefix, &h.LogConfig); !d.Allow {
		return d
	}
	if d := checkOomScoreAdj(prefix, h.OomScoreAdj); !d.Allow {
		return d
	}
	if d := p.checkGroupAdd(prefix, h.GroupAdd); !d.Allow {
		return d
	}
	if d := checkIsolation(prefix, h.Isolation); !d.Allow {
		return d
	}
	return allow(ruleContainer)
}

// checkRequiredRails applies the optional require_* rails on the effective
// host config (the HostConfig member, else the deprecated top-level one).
func (p *Policy) checkRequiredRails(b *containerCreateBody) Decision {
	c := &p.preset.ctr
	h, prefix := b.HostConfig, "HostConfig."
	if h == nil {
		h, prefix = &b.hostConfigBody, ""
	}
	if c.requireReadOnlyRootfs && !h.ReadonlyRootfs {
		return forbid(ReasonBodyDenied, "container.require_read_only_rootfs", about(prefix+"ReadonlyRootfs", setting("container", "require_read_only_rootfs", "false")), "%sReadonlyRootfs is false: this preset requires a read-only root filesystem (--read-only)", prefix)
	}
	if c.requireNoNewPrivileges && !hasNoNewPrivileges(h.SecurityOpt) {
		return forbid(ReasonEscalation, "container.require_no_new_privileges", about(prefix+"SecurityOpt", setting("container", "require_no_new_privileges", "false")), "%sSecurityOpt: this preset requires no-new-privileges", prefix)
	}
	if c.requireMemoryLimit && h.Memory <= 0 {
		return forbid(ReasonBodyDenied, "container.require_memory_limit", about(prefix+"Memory", setting("container", "require_memory_limit", "false")), "%sMemory is not set: this preset requires a memory limit (--memory)", prefix)
	}
	if c.requireCPULimit && h.NanoCPUs <= 0 && h.CPUQuota <= 0 {
		return forbid(ReasonBodyDenied, "container.require_cpu_limit", about(prefix+"NanoCpus", setting("container", "require_cpu_limit", "false")), "%sNanoCpus and CpuQuota are not set: this preset requires a CPU limit (--cpus)", prefix)
	}
	if c.requirePidsLimit && (h.PidsLimit == nil || *h.PidsLimit <= 0) {
		return forbid(ReasonBodyDenied, "container.require_pids_limit", about(prefix+"PidsLimit", setting("container", "require_pids_limit", "false")), "%sPidsLimit is not set: this preset requires a PIDs limit (--pids-limit)", prefix)
	}
	return allow(ruleContainer)
}

// bindReadOnly parses a bind's options; ok is false when they are ambiguous.
func bindReadOnly(opts string) (ro, ok bool) {
	rw := false
	for _, o := range strings.Split(opts, ",") {
		switch o {
		case "ro":
			ro = true
		case "rw":
			rw = true
		}
	}
	return ro, !(ro && rw)
}

// checkBindSource judges one host path bind. It reports rewrite=true when the
// source is the daemon socket and the preset rewrites it to the tenant socket.
func (p *Policy) checkBindSource(field, src string, readOnly, nonRecursiveRO bool) (rewrite bool, d Decision) {
	const rule = "container.allowed_bind_roots"
	clean := path.Clean(src)
	for _, s := range p.daemonSockets {
		if clean == s {
			// The daemon socket is root on the host: never forwarded as is.
			if p.preset.ctr.rewriteDaemonSocket && p.selfSocket != "" {
				return true, allow(rule)
			}
			return false, forbid(ReasonBindMount, "container.daemon_socket_bind", aboutValue(field, src, setting("container", "daemon_socket_bind", "rewrite")), "%s %s: binding the Docker daemon socket is not allowed", field, q(src))
		}
	}
	if p.selfSocket != "" && clean == p.selfSocket {
		return false, allow(rule) // the tenant's own, policy-filtered socket
	}
	for _, s := range p.daemonSockets {
		if isUnder(s, clean) {
			// The socket is not named: a source above it ("/", "/tmp")
			// would otherwise tell the tenant where the daemon listens.
			return false, forbid(ReasonBindMount, rule, aboutValue(field, src, never()), "%s %s: the bind would expose the Docker daemon socket", field, q(src))
		}
	}
	if p.selfSocket != "" && isUnder(p.selfSocket, clean) {
		return false, forbid(ReasonBindMount, rule, aboutValue(field, src, never()), "%s %s: the bind would expose the broker's sockets", field, q(src))
	}
	if pp, ok := protectedOverlap(clean, p.protected); ok {
		if isUnder(pp, clean) {
			// A source above the broker's path: naming it would tell the
			// tenant where the broker keeps its state and sockets.
			return false, forbid(ReasonBindMount, rule, aboutValue(field, src, never()), "%s %s: the bind would contain one of the broker's own paths", field, q(src))
		}
		return false, forbid(ReasonBindMount, rule, aboutValue(field, src, never()), "%s %s: the bind would expose the broker's own path %s", field, q(src), pp)
	}
	underRO := false
	for _, r := range p.bindRoots {
		if clean != r.path && !isUnder(clean, r.path) {
			continue // roots match on whole segments: /a/b allows /a/b/c, not /a/bc
		}
		if !r.readOnly {
			return false, allow(rule)
		}
		underRO = true
	}
	if underRO {
		if readOnly && !nonRecursiveRO {
			return false, allow(rule)
		}
		return false, forbid(ReasonBindMount, rule, bindRootSubject(field, src, clean), "%s %s: this bind root is read-only; mount it read-only (:ro)", field, q(src))
	}
	return false, forbid(ReasonBindMount, rule, bindRootSubject(field, src, clean), "%s %s: host path is not under an allowed bind root", field, q(src))
}

// checkTmpfsOption allows the known tmpfs mount options; exec, suid and
// dev are refused with their own reason.
func checkTmpfsOption(field, opt string) Decision {
	o := strings.TrimSpace(opt)
	for _, bad := range []string{"exec", "suid", "dev"} {
		if strings.EqualFold(o, bad) {
			return forbid(ReasonEscalation, "tmpfs options", about(field, never()), "%s option %s: tmpfs mounts must stay noexec, nosuid and nodev", field, q(o))
		}
	}
	name, _, _ := strings.Cut(o, "=")
	if o != "" && !tmpfsOptionAllowed(name) {
		return forbid(ReasonEscalation, "tmpfs options", about(field, never()), "%s option %s: unknown tmpfs option", field, q(truncate(o)))
	}
	return allow("tmpfs options")
}

// normalizeCap upper-cases a capability and drops the CAP_ prefix, as dockerd does.
func normalizeCap(c string) string {
	n := strings.ToUpper(strings.TrimSpace(c))
	return strings.TrimPrefix(n, "CAP_")
}

// checkSecurityOpt refuses the options that turn a confinement off.
func checkSecurityOpt(field, opt string) Decision {
	const rule = "security options"
	if opt == "no-new-privileges" {
		return allow(rule)
	}
	key, val, found := strings.Cut(opt, "=")
	if !found {
		key, val, found = strings.Cut(opt, ":") // the legacy "label:disable" form
	}
	if !found {
		return forbid(ReasonEscalation, rule, about(field, never()), "%s %s: unrecognized security option", field, q(opt))
	}
	switch {
	case strings.EqualFold(key, "seccomp"):
		if !strings.EqualFold(val, "builtin") && !strings.EqualFold(val, "default") {
			return forbid(ReasonEscalation, rule, about(field, never()), "%s %s: disabling seccomp or replacing its profile is not allowed", field, q(truncate(opt)))
		}
	case strings.EqualFold(key, "apparmor"):
		if strings.EqualFold(val, "unconfined") {
			return forbid(ReasonEscalation, rule, about(field, never()), "%s %s: disabling AppArmor is not allowed", field, q(opt))
		}
	case strings.EqualFold(key, "label"):
		if strings.EqualFold(val, "disable") || hasPrefixFold(val, "type:") {
			return forbid(ReasonEscalation, rule, about(field, never()), "%s %s: disabling SELinux labels or choosing the process type is not allowed", field, q(opt))
		}
	case strings.EqualFold(key, "systempaths"):
		if strings.EqualFold(val, "unconfined") {
			return forbid(ReasonEscalation, rule, about(field, never()), "%s %s: unmasking /proc and /sys is not allowed", field, q(opt))
		}
	case strings.EqualFold(key, "no-new-privileges"):
		if b, err := strconv.ParseBool(val); err != nil || !b {
			return forbid(ReasonEscalation, rule, about(field, never()), "%s %s: turning no-new-privileges off is not allowed", field, q(opt))
		}
	case strings.EqualFold(key, "writable-cgroups"):
		if b, err := strconv.ParseBool(val); err != nil || b {
			return forbid(ReasonEscalation, rule, about(field, never()), "%s %s: writable cgroups are not allowed", field, q(opt))
		}
	default:
		return forbid(ReasonEscalation, rule, about(field, never()), "%s %s: unrecognized security option", field, q(truncate(opt)))
	}
	return allow(rule)
}

func hasNoNewPrivileges(opts []string) bool {
	for _, o := range opts {
		if o == "no-new-privileges" {
			return true
		}
		k, v, found := strings.Cut(o, "=")
		if !found {
			k, v, found = strings.Cut(o, ":")
		}
		if found && k == "no-new-privileges" {
			if b, err := strconv.ParseBool(v); err == nil && b {
				return true
			}
		}
	}
	return false
}

// checkSystemPaths refuses an explicit MaskedPaths/ReadonlyPaths list that
// is empty or drops one of the essential defaults (nil keeps the defaults).
func checkSystemPaths(field string, paths []string, essential ...string) Decision {
	const rule = "system paths"
	if paths == nil {
		return allow(rule)
	}
	if len(paths) == 0 {
		return forbid(ReasonEscalation, rule, about(field, never()), "%s is empty: unmasking /proc and /sys is not allowed", field)
	}
	for _, e := range essential {
		found := false
		for _, p := range paths {
			if path.Clean(p) == e {
				found = true
				break
			}
		}
		if !found {
			return forbid(ReasonEscalation, rule, about(field, never()), "%s omits %s: replacing the default list is not allowed", field, e)
		}
	}
	return allow(rule)
}

// checkWorkingDir refuses working directories under /proc (CVE-2024-21626:
// /proc/self/fd/N leaks a host directory into the container).
func checkWorkingDir(field, wd string) Decision {
	if wd == "" {
		return allow("working dir")
	}
	c := path.Clean("/" + wd)
	if c == "/proc" || isUnder(c, "/proc") {
		return forbid(ReasonEscalation, "working dir", about(field, never()), "%s %s: a working directory under /proc is not allowed", field, q(wd))
	}
	return allow("working dir")
}

// requireNonRootUser accepts only a numeric, non-zero UID: a user name can
// map to UID 0 inside a crafted image, so names are refused under this rail.
func requireNonRootUser(field, user, rule string) Decision {
	section, key, _ := strings.Cut(rule, ".")
	subj := about(field, setting(section, key, "false")) // the user is not stored
	name, _, _ := strings.Cut(user, ":")
	if name == "" || strings.EqualFold(name, "root") {
		return forbid(ReasonBodyDenied, rule, subj, "%s %s: this preset requires a non-root user", field, q(user))
	}
	uid, err := strconv.ParseInt(name, 10, 64)
	switch {
	case err != nil:
		return forbid(ReasonBodyDenied, rule, subj, "%s %s: this preset requires a numeric non-root UID (a name may map to root inside the image)", field, q(user))
	case uid <= 0:
		// "0", "00", "+0", "-0" all parse to UID 0 in the runtime.
		return forbid(ReasonBodyDenied, rule, subj, "%s %s: this preset requires a non-root user", field, q(user))
	}
	return allow(rule)
}

func checkEndpoint(field string, ep *endpointSettingsBody) Decision {
	const rule = "static addresses"
	if ep == nil {
		return allow(rule)
	}
	if ep.IPAMConfig != nil {
		if ep.IPAMConfig.IPv4Address != "" || ep.IPAMConfig.IPv6Address != "" || len(ep.IPAMConfig.LinkLocalIPs) > 0 {
			return forbid(ReasonBodyDenied, rule, about(field+".IPAMConfig", never()), "%s.IPAMConfig: static IP addresses are not allowed", field)
		}
	}
	if ep.MacAddress != "" {
		return forbid(ReasonBodyDenied, rule, about(field+".MacAddress", never()), "%s.MacAddress %s: static MAC addresses are not allowed", field, q(ep.MacAddress))
	}
	return allow(rule)
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// rewrites records daemon-socket binds to replace, by index, in the
// HostConfig member and in the deprecated top-level host config.
type rewrites struct {
	binds, mounts, topBinds, topMounts map[int]string
}

func setRewrite(m *map[int]string, i int, v string) {
	if *m == nil {
		*m = map[int]string{}
	}
	(*m)[i] = v
}

func (r *rewrites) empty() bool {
	return len(r.binds)+len(r.mounts)+len(r.topBinds)+len(r.topMounts) == 0
}

// apply re-encodes body with the rewrites: the whole body is decoded into
// generic values (numbers kept exact), the fields are replaced, and it is
// marshalled again. The strict pre-pass guarantees one key per field.
func (r *rewrites) apply(body []byte) ([]byte, error) {
	var doc map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	if err := rewriteHostConfig(doc, r.topBinds, r.topMounts); err != nil {
		return nil, err
	}
	if len(r.binds)+len(r.mounts) > 0 {
		hc, ok := lookupFold(doc, "HostConfig").(map[string]any)
		if !ok {
			return nil, fmt.Errorf("HostConfig is not an object")
		}
		if err := rewriteHostConfig(hc, r.binds, r.mounts); err != nil {
			return nil, err
		}
	}
	return json.Marshal(doc)
}

func rewriteHostConfig(hc map[string]any, binds, mounts map[int]string) error {
	if len(binds) > 0 {
		arr, ok := lookupFold(hc, "Binds").([]any)
		if !ok {
			return fmt.Errorf("Binds is not an array")
		}
		for i, v := range binds {
			if i >= len(arr) {
				return fmt.Errorf("Binds[%d] is missing", i)
			}
			arr[i] = v
		}
	}
	if len(mounts) > 0 {
		arr, ok := lookupFold(hc, "Mounts").([]any)
		if !ok {
			return fmt.Errorf("Mounts is not an array")
		}
		for i, v := range mounts {
			if i >= len(arr) {
				return fmt.Errorf("Mounts[%d] is missing", i)
			}
			m, ok := arr[i].(map[string]any)
			if !ok {
				return fmt.Errorf("Mounts[%d] is not an object", i)
			}
			key := "Source"
			for k := range m {
				if strings.EqualFold(k, "Source") {
					key = k
				}
			}
			m[key] = v
		}
	}
	return nil
}

// lookupFold returns the member whose key matches name under case folding
// (the strict pre-pass guarantees at most one).
func lookupFold(m map[string]any, name string) any {
	if v, ok := m[name]; ok {
		return v
	}
	for k, v := range m {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return nil
}

// inspectContainerStart refuses a body on container start: before API 1.24
// dockerd applied a HostConfig sent there, after every create-time rail.
func inspectContainerStart(body []byte) Decision {
	switch string(bytes.TrimSpace(body)) {
	case "", "{}", "null":
		return allow("container start")
	}
	return forbid(ReasonBodyDenied, "container start", about("body", never()), "a request body on container start is not allowed (it could carry a HostConfig)")
}

func (p *Policy) inspectContainerUpdate(body []byte) Decision {
	const rule = "container update"
	var b resourcesBody // dockerd's UpdateConfig embeds Resources
	if d, ok := readBody(body, schemaFor(BodyContainerUpdate), &b, rule); !ok {
		return d
	}
	if d := checkResources("", &b); !d.Allow {
		return d
	}
	c := &p.preset.ctr
	switch {
	case c.requireMemoryLimit && b.Memory < 0:
		return forbid(ReasonBodyDenied, "container.require_memory_limit", about("Memory", setting("container", "require_memory_limit", "false")), "Memory %d: removing the memory limit is not allowed", b.Memory)
	case c.requireCPULimit && (b.NanoCPUs < 0 || b.CPUQuota < 0):
		return forbid(ReasonBodyDenied, "container.require_cpu_limit", about("NanoCpus", setting("container", "require_cpu_limit", "false")), "NanoCpus/CpuQuota: removing the CPU limit is not allowed")
	case c.requirePidsLimit && b.PidsLimit != nil && *b.PidsLimit <= 0:
		return forbid(ReasonBodyDenied, "container.require_pids_limit", about("PidsLimit", setting("container", "require_pids_limit", "false")), "PidsLimit %d: removing the PIDs limit is not allowed", *b.PidsLimit)
	}
	return allow(rule)
}
