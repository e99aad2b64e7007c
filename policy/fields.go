package policy

import (
	"sort"
	"strings"
	"sync"
)

// The field table: every field dockerd reads in every request body the
// broker forwards, classified. It is an allowlist: the strict decoder
// refuses a field the table does not list (whatever its value), refuses a
// refused field unless its value is zero, and the inspectors judge the
// judged ones. TestFieldTableMatchesDockerTypes holds it against the Docker
// API's Go types, so a new field can never pass unclassified.
//
// Paths are JSON field names joined by "."; "[]" is an array element and
// "*" an entry of an object whose keys are data (labels, options, sysctls).
// Field names match case-insensitively, as dockerd's encoding/json does.

// BodyKind names a request body the field table classifies.
type BodyKind string

// The bodies dockerd reads that the table classifies.
const (
	BodyContainerCreate   BodyKind = "container create"   // POST /containers/create
	BodyContainerUpdate   BodyKind = "container update"   // POST /containers/{id}/update
	BodyExecCreate        BodyKind = "exec create"        // POST /containers/{id}/exec
	BodyExecStart         BodyKind = "exec start"         // POST /exec/{id}/start
	BodyVolumeCreate      BodyKind = "volume create"      // POST /volumes/create
	BodyNetworkCreate     BodyKind = "network create"     // POST /networks/create
	BodyNetworkConnect    BodyKind = "network connect"    // POST /networks/{id}/connect
	BodyNetworkDisconnect BodyKind = "network disconnect" // POST /networks/{id}/disconnect
)

// BodyKinds lists every body the table classifies.
func BodyKinds() []BodyKind {
	return []BodyKind{BodyContainerCreate, BodyContainerUpdate, BodyExecCreate, BodyExecStart,
		BodyVolumeCreate, BodyNetworkCreate, BodyNetworkConnect, BodyNetworkDisconnect}
}

// FieldClass is what the broker does with a field.
type FieldClass int

// Field classes. Every field is exactly one of them.
const (
	// FieldSafe: forwarded as sent; it acts only inside the tenant's own
	// containers and objects.
	FieldSafe FieldClass = iota + 1
	// FieldJudged: a check judges the value (Rule names it).
	FieldJudged
	// FieldReference: the value names another Docker object (Refers says
	// which kind); tenant isolation resolves it.
	FieldReference
	// FieldRefused: any non-zero value is refused (null, false, 0, "", []
	// and, for data maps, {} are zero).
	FieldRefused
)

func (c FieldClass) String() string {
	switch c {
	case FieldSafe:
		return "safe"
	case FieldJudged:
		return "judged"
	case FieldReference:
		return "reference"
	case FieldRefused:
		return "refused"
	}
	return "unclassified"
}

// valueKind is the JSON shape dockerd decodes a field from.
type valueKind int

const (
	kScalar   valueKind = iota + 1 // string, number or bool
	kStrSlice                      // a string or an array of strings (strslice.StrSlice)
	kArray                         // an array; elements are scalars unless "<path>.[]" is listed
	kObject                        // a struct: its members are fields, each listed
	kMap                           // an object whose keys are data; entries are scalars unless "<path>.*" is listed
)

// Field is one row of the table.
type Field struct {
	Body  BodyKind
	Path  string
	Class FieldClass
	// Rule names the check of a judged field (a preset key or a rail).
	Rule string
	// Refers is the kind of object a reference names: container, network,
	// volume or image. Judged fields that may also name objects (Binds names
	// volumes, NetworkMode networks and containers) set it too.
	Refers string
	// Legacy marks a field that dockerd reads for API 1.41 to 1.45 but that
	// the current Docker API types no longer have.
	Legacy bool
	// Newer marks a field of API versions newer than the Docker API types
	// the table is tested against (docker 28.5, API 1.51): newer clients
	// send it.
	Newer bool
	// Why is the reason for the class, in a few words. For a refused
	// field it is the refusal's explanation.
	Why string

	kind valueKind
	code ReasonCode // refused fields: the denial's code
}

// FieldTable returns the whole table, body by body, in a stable order.
func FieldTable() []Field {
	var out []Field
	for _, b := range BodyKinds() {
		out = append(out, fieldsOf(b)...)
	}
	return out
}

// fieldsOf returns the table rows of one body.
func fieldsOf(b BodyKind) []Field {
	t := &tableBuilder{body: b}
	switch b {
	case BodyContainerCreate:
		containerCreateFields(t)
	case BodyContainerUpdate:
		resourcesFields(t, "")
		restartPolicyFields(t, "")
	case BodyExecCreate:
		t.judged("User", kScalar, "exec.require_non_root", "the user the command runs as")
		t.judged("Privileged", kScalar, "exec.allow_privileged", "a privileged exec is root on the host")
		t.safe("Tty", kScalar, "stream setup")
		t.safe("ConsoleSize", kArray, "initial terminal size")
		t.safe("AttachStdin", kScalar, "stream setup")
		t.safe("AttachStderr", kScalar, "stream setup")
		t.safe("AttachStdout", kScalar, "stream setup")
		t.safe("Detach", kScalar, "stream setup")
		t.safe("DetachKeys", kScalar, "client key sequence")
		t.safe("Env", kArray, "the process environment (never logged)")
		t.judged("WorkingDir", kScalar, "working dir", "a working directory under /proc leaks host fds (CVE-2024-21626)")
		t.safe("Cmd", kArray, "the command, run inside the tenant's container (never logged)")
	case BodyExecStart:
		t.safe("Detach", kScalar, "stream setup")
		t.safe("Tty", kScalar, "stream setup")
		t.safe("ConsoleSize", kArray, "initial terminal size")
	case BodyVolumeCreate:
		t.safe("Name", kScalar, "a new name; isolation refuses another tenant's")
		t.judged("Driver", kScalar, "volumes.allowed_drivers", "a volume driver plugin runs on the host")
		t.judged("DriverOpts", kMap, "volume options", "the local driver hands type, device and o to mount(2) on the host")
		t.judged("Labels", kMap, "owner label", "isolation stamps the owner label over the tenant's")
		t.refused("ClusterVolumeSpec", kObject, ReasonBodyDenied, "swarm", "cluster volumes are swarm objects")
	case BodyNetworkCreate:
		t.safe("Name", kScalar, "a new name; isolation refuses another tenant's")
		t.safe("CheckDuplicate", kScalar, "isolation forces it on")
		t.judged("Driver", kScalar, "network.allowed_drivers", "macvlan, ipvlan and plugins reach host interfaces")
		t.judged("Scope", kScalar, "network scope", "only the local scope; swarm scope is a cluster object")
		t.safe("EnableIPv4", kScalar, "addressing inside the tenant's own network")
		t.safe("EnableIPv6", kScalar, "addressing inside the tenant's own network")
		t.obj("IPAM")
		t.judged("IPAM.Driver", kScalar, "network.allow_custom_ipam", "an IPAM plugin runs on the host")
		t.judged("IPAM.Options", kMap, "network.allow_custom_ipam", "IPAM driver options")
		t.judged("IPAM.Config", kArray, "network.allow_custom_ipam", "subnets can shadow host routes")
		t.obj("IPAM.Config.[]")
		t.judged("IPAM.Config.[].Subnet", kScalar, "network.allow_custom_ipam", "subnets can shadow host routes")
		t.judged("IPAM.Config.[].IPRange", kScalar, "network.allow_custom_ipam", "part of IPAM.Config")
		t.judged("IPAM.Config.[].Gateway", kScalar, "network.allow_custom_ipam", "part of IPAM.Config")
		t.judged("IPAM.Config.[].AuxiliaryAddresses", kMap, "network.allow_custom_ipam", "part of IPAM.Config")
		t.safe("Internal", kScalar, "only removes outside connectivity")
		t.safe("Attachable", kScalar, "matters only for swarm-scoped networks, which are refused")
		t.refused("Ingress", kScalar, ReasonBodyDenied, "swarm", "swarm ingress networks are not allowed")
		t.judged("ConfigOnly", kScalar, "network.allow_options", "a configuration placeholder for macvlan-style networks")
		t.obj("ConfigFrom")
		t.ref("ConfigFrom.Network", kScalar, "network", "names a config-only network (also needs network.allow_options)")
		t.judged("Options", kMap, "network.allow_options", "driver options name host interfaces and bridges")
		t.judged("Labels", kMap, "owner label", "isolation stamps the owner label over the tenant's")
	case BodyNetworkConnect:
		t.ref("Container", kScalar, "container", "the container to connect")
		t.obj("EndpointConfig")
		endpointFields(t, "EndpointConfig.")
	case BodyNetworkDisconnect:
		t.ref("Container", kScalar, "container", "the container to disconnect")
		t.safe("Force", kScalar, "forces the disconnect of the tenant's own container")
	}
	return t.out
}

// tableBuilder collects the rows of one body.
type tableBuilder struct {
	body BodyKind
	out  []Field
}

func (t *tableBuilder) add(f Field) {
	f.Body = t.body
	t.out = append(t.out, f)
}

func (t *tableBuilder) safe(path string, k valueKind, why string) {
	t.add(Field{Path: path, Class: FieldSafe, Why: why, kind: k})
}

// obj lists an object whose members are listed one by one.
func (t *tableBuilder) obj(path string) {
	t.add(Field{Path: path, Class: FieldSafe, Why: "an object; each member is classified", kind: kObject})
}

func (t *tableBuilder) judged(path string, k valueKind, rule, why string) {
	t.add(Field{Path: path, Class: FieldJudged, Rule: rule, Why: why, kind: k})
}

// judgedRef is a judged field whose value may also name objects.
func (t *tableBuilder) judgedRef(path string, k valueKind, rule, refers, why string) {
	t.add(Field{Path: path, Class: FieldJudged, Rule: rule, Refers: refers, Why: why, kind: k})
}

func (t *tableBuilder) ref(path string, k valueKind, refers, why string) {
	t.add(Field{Path: path, Class: FieldReference, Refers: refers, Why: why, kind: k})
}

// refused lists a field refused unless zero; rule names the refusal in the
// deny log (and in suggest-policy, which never offers to allow it).
func (t *tableBuilder) refused(path string, k valueKind, code ReasonCode, rule, why string) {
	t.add(Field{Path: path, Class: FieldRefused, Rule: rule, Why: why, kind: k, code: code})
}

func containerCreateFields(t *tableBuilder) {
	// container.Config, embedded at the top of the create body.
	t.safe("Hostname", kScalar, "the container's own UTS namespace")
	t.safe("Domainname", kScalar, "the container's own UTS namespace")
	t.judged("User", kScalar, "container.require_non_root", "the user the container runs as")
	t.safe("AttachStdin", kScalar, "stream setup")
	t.safe("AttachStdout", kScalar, "stream setup")
	t.safe("AttachStderr", kScalar, "stream setup")
	t.safe("ExposedPorts", kMap, "metadata; publishing is HostConfig's")
	t.obj("ExposedPorts.*") // an empty struct per port
	t.safe("Tty", kScalar, "stream setup")
	t.safe("OpenStdin", kScalar, "stream setup")
	t.safe("StdinOnce", kScalar, "stream setup")
	t.safe("Env", kArray, "the process environment (never logged)")
	t.safe("Cmd", kStrSlice, "the command, run inside the container (never logged)")
	t.obj("Healthcheck")
	t.safe("Healthcheck.Test", kArray, "a command dockerd execs inside the container")
	t.judged("Healthcheck.Interval", kScalar, "healthcheck", "0 or at least 100ms: each probe is an exec by dockerd")
	t.safe("Healthcheck.Timeout", kScalar, "bounds one probe")
	t.safe("Healthcheck.StartPeriod", kScalar, "grace period; probes still follow Interval")
	t.judged("Healthcheck.StartInterval", kScalar, "healthcheck", "0 or at least 100ms: each probe is an exec by dockerd")
	t.safe("Healthcheck.Retries", kScalar, "a count")
	t.safe("ArgsEscaped", kScalar, "Windows command-line quoting")
	t.ref("Image", kScalar, "image", "the image to run; image ownership judges it")
	t.safe("Volumes", kMap, "anonymous volumes at these container paths")
	t.obj("Volumes.*") // an empty struct per path
	t.judged("WorkingDir", kScalar, "working dir", "a working directory under /proc leaks host fds (CVE-2024-21626)")
	t.safe("Entrypoint", kStrSlice, "runs inside the container")
	t.safe("NetworkDisabled", kScalar, "only removes networking")
	t.refused("MacAddress", kScalar, ReasonBodyDenied, "container create", "static MAC addresses are not allowed")
	t.safe("OnBuild", kArray, "image metadata for docker commit")
	t.judged("Labels", kMap, "owner label", "isolation stamps the owner label over the tenant's")
	t.safe("StopSignal", kScalar, "a signal to the container's own process")
	t.safe("StopTimeout", kScalar, "how long docker stop waits for the tenant's container")
	t.safe("Shell", kStrSlice, "image metadata for shell-form commands")

	t.obj("HostConfig")
	n := len(t.out)
	hostConfigFields(t, "HostConfig.")
	// dockerd before 27.0 (API 1.45 and older) also reads every HostConfig
	// field at the top level of the body (the wrapper embedded a second
	// HostConfig; it wins whole when the HostConfig member is absent). The
	// same classes apply there.
	for _, f := range append([]Field(nil), t.out[n:]...) {
		f.Path = strings.TrimPrefix(f.Path, "HostConfig.")
		f.Legacy = true
		t.out = append(t.out, f)
	}
	t.add(Field{Path: "Cpuset", Class: FieldSafe, Legacy: true, kind: kScalar,
		Why: "pre-1.18 spelling of CpusetCpus, merged by dockerd before 27.0; CPU placement only"})

	t.obj("NetworkingConfig")
	t.ref("NetworkingConfig.EndpointsConfig", kMap, "network", "the keys name the networks to join")
	t.obj("NetworkingConfig.EndpointsConfig.*")
	endpointFields(t, "NetworkingConfig.EndpointsConfig.*.")
}

func hostConfigFields(t *tableBuilder, p string) {
	t.judgedRef(p+"Binds", kArray, "container.allowed_bind_roots", "volume",
		"host paths must lie under an allowed root, with options from an allowlist (ro, rw, z, Z, private or slave propagation); a name is a named volume")
	t.safe(p+"ContainerIDFile", kScalar, "dockerd ignores it; the CLI writes the file itself")
	t.obj(p + "LogConfig")
	t.judged(p+"LogConfig.Type", kScalar, "container.allowed_log_drivers", "remote drivers make dockerd connect out from the host")
	t.judged(p+"LogConfig.Config", kMap, "container.allowed_log_drivers", "only known options of the chosen driver")
	t.judgedRef(p+"NetworkMode", kScalar, "host namespaces", "network",
		"host and ns: are refused; a name or container: names an object")
	t.safe(p+"PortBindings", kMap, "publishes the tenant's ports; runner service containers use ports:")
	t.safe(p+"PortBindings.*", kArray, "bindings of one container port")
	t.obj(p + "PortBindings.*.[]")
	t.safe(p+"PortBindings.*.[].HostIp", kScalar, "a host address to listen on for the container")
	t.safe(p+"PortBindings.*.[].HostPort", kScalar, "a host port to listen on for the container")
	restartPolicyFields(t, p)
	t.safe(p+"AutoRemove", kScalar, "removes the tenant's own container")
	t.judged(p+"VolumeDriver", kScalar, "volumes.allowed_drivers", "the driver of named volumes in Binds")
	t.ref(p+"VolumesFrom", kArray, "container", "mounts another container's volumes (also container.allow_volumes_from)")
	t.safe(p+"ConsoleSize", kArray, "initial terminal size")
	t.refused(p+"Annotations", kMap, ReasonEscalation, "annotations", "OCI annotations are not allowed: some runtimes act on them (host paths, hypervisor settings)")
	t.judged(p+"CapAdd", kStrSlice, "container.allowed_capabilities", "capabilities from the preset's allowlist only")
	t.safe(p+"CapDrop", kStrSlice, "only removes capabilities")
	t.judged(p+"CgroupnsMode", kScalar, "host namespaces", "host is refused")
	t.safe(p+"Dns", kArray, "the container's own resolv.conf")
	t.safe(p+"DnsOptions", kArray, "the container's own resolv.conf")
	t.safe(p+"DnsSearch", kArray, "the container's own resolv.conf")
	t.safe(p+"ExtraHosts", kArray, "the container's own /etc/hosts")
	t.judged(p+"GroupAdd", kArray, "container.require_non_root", "group 0 is refused when the preset requires a non-root user")
	t.judgedRef(p+"IpcMode", kScalar, "host namespaces", "container", "host is refused; container: names an object")
	t.refused(p+"Cgroup", kScalar, ReasonEscalation, "cgroup", "joining another container's cgroup is not allowed")
	t.ref(p+"Links", kArray, "container", "links name containers (also container.allow_links)")
	t.judged(p+"OomScoreAdj", kScalar, "oom score", "below 0 shields the container from the OOM killer at the host's expense")
	t.judgedRef(p+"PidMode", kScalar, "host namespaces", "container", "host is refused; container: names an object")
	t.judged(p+"Privileged", kScalar, "container.allow_privileged", "a privileged container is root on the host")
	t.safe(p+"PublishAllPorts", kScalar, "publishes exposed ports on random host ports")
	t.judged(p+"ReadonlyRootfs", kScalar, "container.require_read_only_rootfs", "required by some presets")
	t.judged(p+"SecurityOpt", kArray, "security options", "options that turn confinement off are refused")
	t.refused(p+"StorageOpt", kMap, ReasonEscalation, "storage options", "storage driver options are not allowed")
	t.judged(p+"Tmpfs", kMap, "tmpfs options", "known mount options only; tmpfs stays noexec, nosuid and nodev unless asked")
	t.judged(p+"UTSMode", kScalar, "host namespaces", "host is refused")
	t.judged(p+"UsernsMode", kScalar, "host namespaces", "host is refused (it leaves the daemon's user namespace remapping)")
	t.safe(p+"ShmSize", kScalar, "the container's own /dev/shm, charged to its memory cgroup")
	t.refused(p+"Sysctls", kMap, ReasonEscalation, "sysctls", "setting kernel parameters is not allowed")
	t.judged(p+"Runtime", kScalar, "container.allowed_runtimes", "a runtime is a host binary")
	t.judged(p+"Isolation", kScalar, "isolation", "only the default (Hyper-V and process isolation are Windows)")
	resourcesFields(t, p)
	t.judgedRef(p+"Mounts", kArray, "mounts", "volume", "see the members of Mounts[]")
	t.obj(p + "Mounts.[]")
	mountFields(t, p+"Mounts.[].")
	t.judged(p+"MaskedPaths", kArray, "system paths", "may add paths, never drop the essential defaults")
	t.judged(p+"ReadonlyPaths", kArray, "system paths", "may add paths, never drop the essential defaults")
	t.safe(p+"Init", kScalar, "runs the daemon's own init binary as PID 1")
	t.add(Field{Path: p + "Umask", Class: FieldSafe, Newer: true, kind: kScalar,
		Why: "initial umask of the container's process (API 1.52+)"})
}

func restartPolicyFields(t *tableBuilder, p string) {
	t.obj(p + "RestartPolicy")
	t.safe(p+"RestartPolicy.Name", kScalar, "dockerd restarts the tenant's own container (bind sources stay pinned)")
	t.safe(p+"RestartPolicy.MaximumRetryCount", kScalar, "a count")
}

// resourcesFields lists container.Resources: embedded in HostConfig on
// create, and the whole of a container update's body (with RestartPolicy).
func resourcesFields(t *tableBuilder, p string) {
	t.safe(p+"CpuShares", kScalar, "relative CPU weight")
	t.judged(p+"Memory", kScalar, "container.require_memory_limit", "required by some presets")
	t.judged(p+"NanoCpus", kScalar, "container.require_cpu_limit", "required by some presets")
	t.refused(p+"CgroupParent", kScalar, ReasonEscalation, "cgroup parent", "choosing the cgroup parent is not allowed")
	t.safe(p+"BlkioWeight", kScalar, "relative I/O weight, no device named")
	const blkio = "block I/O device settings are not allowed: they name host device paths (dockerd stats them) and throttle host devices"
	t.refused(p+"BlkioWeightDevice", kArray, ReasonEscalation, "block devices", blkio)
	t.refused(p+"BlkioDeviceReadBps", kArray, ReasonEscalation, "block devices", blkio)
	t.refused(p+"BlkioDeviceWriteBps", kArray, ReasonEscalation, "block devices", blkio)
	t.refused(p+"BlkioDeviceReadIOps", kArray, ReasonEscalation, "block devices", blkio)
	t.refused(p+"BlkioDeviceWriteIOps", kArray, ReasonEscalation, "block devices", blkio)
	t.safe(p+"CpuPeriod", kScalar, "CFS period of the container's own cgroup")
	t.judged(p+"CpuQuota", kScalar, "container.require_cpu_limit", "required by some presets")
	const rt = "real-time CPU budgets are not allowed: real-time scheduling can starve the host"
	t.refused(p+"CpuRealtimePeriod", kScalar, ReasonEscalation, "real-time scheduling", rt)
	t.refused(p+"CpuRealtimeRuntime", kScalar, ReasonEscalation, "real-time scheduling", rt)
	t.safe(p+"CpusetCpus", kScalar, "CPU placement")
	t.safe(p+"CpusetMems", kScalar, "memory node placement")
	t.refused(p+"Devices", kArray, ReasonEscalation, "devices", "host devices are not allowed")
	t.refused(p+"DeviceCgroupRules", kArray, ReasonEscalation, "devices", "device cgroup rules are not allowed")
	t.refused(p+"DeviceRequests", kArray, ReasonEscalation, "devices", "device requests (GPUs) are not allowed")
	const kmem = "kernel memory limits are deprecated and not allowed"
	t.refused(p+"KernelMemory", kScalar, ReasonBodyDenied, "kernel memory", kmem)
	t.refused(p+"KernelMemoryTCP", kScalar, ReasonBodyDenied, "kernel memory", kmem)
	t.safe(p+"MemoryReservation", kScalar, "soft limit of the container's own cgroup")
	t.safe(p+"MemorySwap", kScalar, "swap limit of the container's own cgroup")
	t.safe(p+"MemorySwappiness", kScalar, "reclaim tuning of the container's own cgroup")
	t.refused(p+"OomKillDisable", kScalar, ReasonEscalation, "oom killer", "disabling the OOM killer is not allowed: the host runs out of memory instead")
	t.judged(p+"PidsLimit", kScalar, "container.require_pids_limit", "required by some presets")
	t.judged(p+"Ulimits", kArray, "ulimits", "known limits within bounds; nice, rtprio, rttime and a raised memlock are refused")
	t.obj(p + "Ulimits.[]")
	t.judged(p+"Ulimits.[].Name", kScalar, "ulimits", "see Ulimits")
	t.judged(p+"Ulimits.[].Hard", kScalar, "ulimits", "see Ulimits")
	t.judged(p+"Ulimits.[].Soft", kScalar, "ulimits", "see Ulimits")
	const win = "Windows-only resource settings are not allowed"
	t.refused(p+"CpuCount", kScalar, ReasonBodyDenied, "windows resources", win)
	t.refused(p+"CpuPercent", kScalar, ReasonBodyDenied, "windows resources", win)
	t.refused(p+"IOMaximumIOps", kScalar, ReasonBodyDenied, "windows resources", win)
	t.refused(p+"IOMaximumBandwidth", kScalar, ReasonBodyDenied, "windows resources", win)
}

// mountFields lists mount.Mount (HostConfig.Mounts[]).
func mountFields(t *tableBuilder, p string) {
	t.judged(p+"Type", kScalar, "mounts", "bind, volume, tmpfs and image only")
	t.judgedRef(p+"Source", kScalar, "container.allowed_bind_roots", "volume",
		"a bind source must lie under an allowed root; a volume source names a volume; an image source is held to image ownership and forwarded as its id")
	t.safe(p+"Target", kScalar, "a path inside the container (runc refuses targets that escape or shadow /proc)")
	t.judged(p+"ReadOnly", kScalar, "container.allowed_bind_roots", "read-only bind roots need it")
	t.safe(p+"Consistency", kScalar, "ignored on Linux")
	t.obj(p + "BindOptions")
	t.judged(p+"BindOptions.Propagation", kScalar, "bind options", "private or slave only: shared propagation leaks mounts back to the host")
	t.safe(p+"BindOptions.NonRecursive", kScalar, "mounts less (no submounts)")
	t.refused(p+"BindOptions.CreateMountpoint", kScalar, ReasonBindMount, "bind options", "creating missing bind sources on the host is not allowed")
	t.judged(p+"BindOptions.ReadOnlyNonRecursive", kScalar, "container.allowed_bind_roots", "refused under read-only bind roots")
	t.safe(p+"BindOptions.ReadOnlyForceRecursive", kScalar, "only makes the bind more read-only")
	t.obj(p + "VolumeOptions")
	t.safe(p+"VolumeOptions.NoCopy", kScalar, "skips copying image content into the volume")
	t.judged(p+"VolumeOptions.Labels", kMap, "owner label", "the broker's label namespace (io.sockguard.) is refused")
	t.judged(p+"VolumeOptions.Subpath", kScalar, "subpath", "a relative path without .. inside the volume")
	t.obj(p + "VolumeOptions.DriverConfig")
	t.judged(p+"VolumeOptions.DriverConfig.Name", kScalar, "volumes.allowed_drivers", "a volume driver plugin runs on the host")
	t.judged(p+"VolumeOptions.DriverConfig.Options", kMap, "volume options", "the local driver hands type, device and o to mount(2) on the host")
	t.obj(p + "ImageOptions")
	t.judged(p+"ImageOptions.Subpath", kScalar, "subpath", "a relative path without .. inside the image")
	t.obj(p + "TmpfsOptions")
	t.safe(p+"TmpfsOptions.SizeBytes", kScalar, "size of the tenant's tmpfs, charged to its memory cgroup")
	t.safe(p+"TmpfsOptions.Mode", kScalar, "permissions of the tmpfs root")
	t.judged(p+"TmpfsOptions.Options", kArray, "tmpfs options", "known mount options only")
	t.safe(p+"TmpfsOptions.Options.[]", kArray, "one option: [name] or [name, value]")
	t.refused(p+"ClusterOptions", kObject, ReasonBodyDenied, "swarm", "cluster volume mounts are swarm objects")
}

// endpointFields lists network.EndpointSettings (create's EndpointsConfig
// entries and connect's EndpointConfig).
func endpointFields(t *tableBuilder, p string) {
	const static = "static IP addresses are not allowed"
	t.obj(p + "IPAMConfig")
	t.refused(p+"IPAMConfig.IPv4Address", kScalar, ReasonBodyDenied, "static addresses", static)
	t.refused(p+"IPAMConfig.IPv6Address", kScalar, ReasonBodyDenied, "static addresses", static)
	t.refused(p+"IPAMConfig.LinkLocalIPs", kArray, ReasonBodyDenied, "static addresses", static)
	t.safe(p+"Links", kArray, "DNS aliases the network's resolver answers among that network's containers; dockerd looks no object up")
	t.safe(p+"Aliases", kArray, "DNS names on the tenant's own network")
	t.refused(p+"MacAddress", kScalar, ReasonBodyDenied, "static addresses", "static MAC addresses are not allowed")
	t.refused(p+"DriverOpts", kMap, ReasonBodyDenied, "endpoint options", "endpoint driver options are not allowed")
	t.safe(p+"GwPriority", kScalar, "default-gateway preference among the container's own networks")
	t.ref(p+"NetworkID", kScalar, "network", "dockerd prefers it over the network's name")
	const out = "an output field dockerd fills in; a client sets it only to confuse"
	t.refused(p+"EndpointID", kScalar, ReasonBodyDenied, "output fields", out)
	t.refused(p+"Gateway", kScalar, ReasonBodyDenied, "output fields", out)
	t.refused(p+"IPAddress", kScalar, ReasonBodyDenied, "output fields", out)
	t.refused(p+"IPPrefixLen", kScalar, ReasonBodyDenied, "output fields", out)
	t.refused(p+"IPv6Gateway", kScalar, ReasonBodyDenied, "output fields", out)
	t.refused(p+"GlobalIPv6Address", kScalar, ReasonBodyDenied, "output fields", out)
	t.refused(p+"GlobalIPv6PrefixLen", kScalar, ReasonBodyDenied, "output fields", out)
	t.refused(p+"DNSNames", kArray, ReasonBodyDenied, "output fields", out)
}

// fieldNode is the compiled table of one body: a tree the strict decoder
// walks alongside the JSON.
type fieldNode struct {
	f     *Field
	kind  valueKind
	kids  map[string]*fieldNode // object members, by foldKey(name)
	elem  *fieldNode            // array element (kArray, kStrSlice)
	entry *fieldNode            // data-map entry (kMap)
}

// schemas compiles the table once. The compiled trees are never modified
// after this function returns, so they are safe to share.
var schemas = sync.OnceValue(func() map[BodyKind]*fieldNode {
	out := map[BodyKind]*fieldNode{}
	for _, b := range BodyKinds() {
		out[b] = compileFields(fieldsOf(b))
	}
	return out
})

// schemaFor returns the compiled table of a body.
func schemaFor(b BodyKind) *fieldNode { return schemas()[b] }

// scalarNode is the implicit element or entry of arrays and maps whose
// element is not listed. It inherits the container's field (and class).
func scalarNode(f *Field) *fieldNode { return &fieldNode{f: f, kind: kScalar} }

// compileFields builds the tree. Rows are sorted by path so parents come
// before children; a row whose parent is missing is a programming error.
func compileFields(rows []Field) *fieldNode {
	root := &fieldNode{kind: kObject, kids: map[string]*fieldNode{}}
	sorted := append([]Field(nil), rows...)
	sort.SliceStable(sorted, func(i, j int) bool {
		return strings.Count(sorted[i].Path, ".") < strings.Count(sorted[j].Path, ".")
	})
	for i := range sorted {
		f := &sorted[i]
		segs := strings.Split(f.Path, ".")
		parent := root
		for _, s := range segs[:len(segs)-1] {
			parent = parent.child(s)
			if parent == nil {
				panic("policy: field table row " + f.Path + " has no parent row")
			}
		}
		n := &fieldNode{f: f, kind: f.kind}
		switch f.kind {
		case kObject:
			n.kids = map[string]*fieldNode{}
		case kArray, kStrSlice:
			n.elem = scalarNode(f)
		case kMap:
			n.entry = scalarNode(f)
		}
		switch last := segs[len(segs)-1]; {
		case last == "[]" && parent.elem != nil:
			parent.elem = n
		case last == "*" && parent.entry != nil:
			parent.entry = n
		case parent.kids != nil:
			parent.kids[foldKey(last)] = n
		default:
			panic("policy: field table row " + f.Path + " does not fit its parent")
		}
	}
	return root
}

// child follows one path segment of the table's notation.
func (n *fieldNode) child(seg string) *fieldNode {
	switch {
	case seg == "[]":
		return n.elem
	case seg == "*":
		return n.entry
	case n.kids != nil:
		return n.kids[foldKey(seg)]
	}
	return nil
}
