package policy

import (
	"bytes"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// dockerRunBody is what `docker run alpine` (docker CLI 24) sends to
// POST /containers/create.
const dockerRunBody = `{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":true,"AttachStderr":true,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":null,"Image":"alpine","Volumes":{},"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":{},"HostConfig":{"Binds":null,"ContainerIDFile":"","LogConfig":{"Type":"","Config":{}},"NetworkMode":"default","PortBindings":{},"RestartPolicy":{"Name":"no","MaximumRetryCount":0},"AutoRemove":false,"VolumeDriver":"","VolumesFrom":null,"ConsoleSize":[0,0],"CapAdd":null,"CapDrop":null,"CgroupnsMode":"","Dns":[],"DnsOptions":[],"DnsSearch":[],"ExtraHosts":null,"GroupAdd":null,"IpcMode":"","Cgroup":"","Links":null,"OomScoreAdj":0,"PidMode":"","Privileged":false,"PublishAllPorts":false,"ReadonlyRootfs":false,"SecurityOpt":null,"UTSMode":"","UsernsMode":"","ShmSize":0,"Isolation":"","CpuShares":0,"Memory":0,"NanoCpus":0,"CgroupParent":"","BlkioWeight":0,"BlkioWeightDevice":[],"BlkioDeviceReadBps":[],"BlkioDeviceWriteBps":[],"BlkioDeviceReadIOps":[],"BlkioDeviceWriteIOps":[],"CpuPeriod":0,"CpuQuota":0,"CpuRealtimePeriod":0,"CpuRealtimeRuntime":0,"CpusetCpus":"","CpusetMems":"","Devices":[],"DeviceCgroupRules":null,"DeviceRequests":null,"MemoryReservation":0,"MemorySwap":0,"MemorySwappiness":null,"OomKillDisable":null,"PidsLimit":null,"Ulimits":[],"CpuCount":0,"CpuPercent":0,"IOMaximumIOps":0,"IOMaximumBandwidth":0,"MaskedPaths":null,"ReadonlyPaths":null},"NetworkingConfig":{"EndpointsConfig":{}}}`

// run returns dockerRunBody with top-level and HostConfig fields replaced,
// the way the docker CLI would send them for the matching flags.
func run(t testing.TB, top map[string]any, hc map[string]any) []byte {
	t.Helper()
	var doc map[string]any
	dec := json.NewDecoder(strings.NewReader(dockerRunBody))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	for k, v := range top {
		doc[k] = v
	}
	h := doc["HostConfig"].(map[string]any)
	for k, v := range hc {
		h[k] = v
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const selfSock = "/run/sockguard/r1/sockguard.sock"

func runnerTenant(t testing.TB) *Policy {
	return mustPolicy(t, "github-actions-runner", Overrides{
		AllowBinds: []BindRoot{
			{Path: "/home/runner/_work"},
			{Path: "/home/runner/externals", ReadOnly: true},
		},
		SelfSocket:    selfSock,
		DaemonSockets: []string{"/srv/docker/docker.sock"},
	})
}

var createReq = mustReq("POST", "/v1.41"+"/containers/create")

type bodyCase struct {
	name    string
	body    []byte
	allow   bool
	status  int        // when denied
	code    ReasonCode // when denied
	reason  string     // substring of Reason
	rewrite bool       // a new body is expected
}

func runBodyCases(t *testing.T, pol *Policy, req Request, header http.Header, tests []bodyCase) {
	t.Helper()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, nb := pol.InspectBody(req, header, tc.body)
			checkSubject(t, d)
			if d.Allow != tc.allow {
				t.Fatalf("Allow=%v want %v: %+v", d.Allow, tc.allow, d)
			}
			if !d.Allow {
				if d.Status != tc.status || d.Code != tc.code {
					t.Fatalf("status %d code %v, want %d %v (%s)", d.Status, d.Code, tc.status, tc.code, d.Reason)
				}
				if nb != nil {
					t.Fatal("denial returned a body")
				}
			}
			if !strings.Contains(d.Reason, tc.reason) {
				t.Fatalf("reason %q does not contain %q", d.Reason, tc.reason)
			}
			if (nb != nil) != tc.rewrite {
				t.Fatalf("new body %q, want rewrite=%v", nb, tc.rewrite)
			}
		})
	}
}

func TestInspectContainerCreate(t *testing.T) {
	pol := runnerTenant(t)
	const (
		ok  = 0
		bad = http.StatusBadRequest
		no  = http.StatusForbidden
	)
	hc := func(kv ...any) map[string]any {
		m := map[string]any{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	strs := func(s ...string) []any {
		out := make([]any, len(s))
		for i := range s {
			out[i] = s[i]
		}
		return out
	}
	mount := func(kv ...any) []any { return []any{hc(kv...)} }
	tests := []bodyCase{
		{name: "docker run alpine", body: run(t, nil, nil), allow: true},
		{name: "empty body", body: nil, allow: true},
		{name: "whitespace body", body: []byte(" \n"), allow: true},
		{name: "empty object", body: []byte(`{}`), allow: true},

		// Privileged and namespaces.
		{name: "--privileged", body: run(t, nil, hc("Privileged", true)), status: no, code: ReasonPrivileged, reason: "HostConfig.Privileged is true: privileged containers are not allowed"},
		{name: "--pid=host", body: run(t, nil, hc("PidMode", "host")), status: no, code: ReasonHostNamespace, reason: `HostConfig.PidMode "host": sharing the host PID namespace is not allowed`},
		{name: "--network=host", body: run(t, nil, hc("NetworkMode", "host")), status: no, code: ReasonHostNamespace, reason: `HostConfig.NetworkMode "host"`},
		{name: "--network=HOST", body: run(t, nil, hc("NetworkMode", "HOST")), status: no, code: ReasonHostNamespace},
		{name: "--ipc=host", body: run(t, nil, hc("IpcMode", "host")), status: no, code: ReasonHostNamespace, reason: "IPC"},
		{name: "--uts=host", body: run(t, nil, hc("UTSMode", "host")), status: no, code: ReasonHostNamespace, reason: "UTS"},
		{name: "--userns=host", body: run(t, nil, hc("UsernsMode", "host")), status: no, code: ReasonHostNamespace},
		{name: "--cgroupns=host", body: run(t, nil, hc("CgroupnsMode", "host")), status: no, code: ReasonHostNamespace},
		{name: "--ipc ns path", body: run(t, nil, hc("IpcMode", "ns:/proc/1/ns/ipc")), status: no, code: ReasonHostNamespace, reason: "by path"},
		{name: "--uts container", body: run(t, nil, hc("UTSMode", "container:db")), status: no, code: ReasonHostNamespace},
		{name: "--pid container join", body: run(t, nil, hc("PidMode", "container:db")), allow: true},
		{name: "--network container join", body: run(t, nil, hc("NetworkMode", "container:db")), allow: true},
		{name: "--network user network", body: run(t, nil, hc("NetworkMode", "github_network_1")), allow: true},
		{name: "--cgroupns private", body: run(t, nil, hc("CgroupnsMode", "private")), allow: true},

		// Binds.
		{name: "-v /:/host", body: run(t, nil, hc("Binds", strs("/:/host"))), status: no, code: ReasonBindMount, reason: `HostConfig.Binds[0] "/"`},
		{name: "-v /etc:/x", body: run(t, nil, hc("Binds", strs("/etc:/x"))), status: no, code: ReasonBindMount, reason: "not under an allowed bind root"},
		{name: "-v /var/run:/var/run", body: run(t, nil, hc("Binds", strs("/var/run:/var/run"))), status: no, code: ReasonBindMount, reason: "expose the Docker daemon socket"},
		{name: "-v /run/sockguard", body: run(t, nil, hc("Binds", strs("/run/sockguard:/s"))), status: no, code: ReasonBindMount, reason: "broker's sockets"},
		{name: "-v work dir", body: run(t, nil, hc("Binds", strs("/home/runner/_work:/__w"))), allow: true},
		{name: "-v work subdir", body: run(t, nil, hc("Binds", strs("/home/runner/_work/_temp/_github_home:/github/home"))), allow: true},
		{name: "-v work dir escape", body: run(t, nil, hc("Binds", strs("/home/runner/_work/x/../../../../etc:/x"))), status: no, code: ReasonBindMount},
		{name: "-v sibling prefix", body: run(t, nil, hc("Binds", strs("/home/runner/_work2:/x"))), status: no, code: ReasonBindMount},
		{name: "-v parent of root", body: run(t, nil, hc("Binds", strs("/home/runner:/x"))), status: no, code: ReasonBindMount},
		{name: "-v ro root with :ro", body: run(t, nil, hc("Binds", strs("/home/runner/externals:/__e:ro"))), allow: true},
		{name: "-v ro root with ro,z", body: run(t, nil, hc("Binds", strs("/home/runner/externals/node:/n:ro,z"))), allow: true},
		{name: "-v ro root without ro", body: run(t, nil, hc("Binds", strs("/home/runner/externals:/__e"))), status: no, code: ReasonBindMount, reason: "read-only"},
		{name: "-v ro root with rw", body: run(t, nil, hc("Binds", strs("/home/runner/externals:/__e:rw"))), status: no, code: ReasonBindMount},
		{name: "-v work dir :rshared", body: run(t, nil, hc("Binds", strs("/home/runner/_work:/w:rshared"))), status: no, code: ReasonBindMount, reason: `HostConfig.Binds[0] propagation "rshared"`},
		{name: "-v work dir :rw,shared", body: run(t, nil, hc("Binds", strs("/home/runner/_work:/w:rw,shared"))), status: no, code: ReasonBindMount, reason: "only private or slave"},
		{name: "-v work dir unknown option", body: run(t, nil, hc("Binds", strs("/home/runner/_work:/w:nocopy"))), status: no, code: ReasonBindMount, reason: `option "nocopy"`},
		{name: "-v work dir empty option", body: run(t, nil, hc("Binds", strs("/home/runner/_work:/w:"))), status: no, code: ReasonBindMount},
		{name: "-v work dir :rslave,Z", body: run(t, nil, hc("Binds", strs("/home/runner/_work:/w:rslave,Z"))), allow: true},
		{name: "named volume :nocopy untouched", body: run(t, nil, hc("Binds", strs("cache:/c:nocopy"))), allow: true},
		{name: "-v ro and rw", body: run(t, nil, hc("Binds", strs("/home/runner/_work:/w:ro,rw"))), status: bad, code: ReasonMalformed},
		{name: "--volume-driver plugin", body: run(t, nil, hc("Binds", strs("v:/x"), "VolumeDriver", "rexray")), status: no, code: ReasonBodyDenied, reason: "HostConfig.VolumeDriver"},
		{name: "--volume-driver local", body: run(t, nil, hc("Binds", strs("v:/x"), "VolumeDriver", "local")), allow: true},
		{name: "-v named volume", body: run(t, nil, hc("Binds", strs("cache:/cache"))), allow: true},
		{name: "-v anonymous", body: run(t, nil, hc("Binds", strs("/data"))), allow: true},
		{name: "bind with four parts", body: run(t, nil, hc("Binds", strs("/a:/b:ro:x"))), status: bad, code: ReasonMalformed},
		{name: "bind empty source", body: run(t, nil, hc("Binds", strs(":/b"))), status: bad, code: ReasonMalformed},

		// Mounts.
		{name: "--mount bind /etc", body: run(t, nil, hc("Mounts", mount("Type", "bind", "Source", "/etc", "Target", "/x"))), status: no, code: ReasonBindMount, reason: `HostConfig.Mounts[0].Source "/etc"`},
		{name: "--mount BIND /etc", body: run(t, nil, hc("Mounts", mount("Type", "BIND", "Source", "/etc", "Target", "/x"))), status: no, code: ReasonBindMount},
		{name: "--mount bind relative", body: run(t, nil, hc("Mounts", mount("Type", "bind", "Source", "etc", "Target", "/x"))), status: no, code: ReasonBindMount},
		{name: "--mount bind work", body: run(t, nil, hc("Mounts", mount("Type", "bind", "Source", "/home/runner/_work/x", "Target", "/x"))), allow: true},
		{name: "--mount bind ro root readonly", body: run(t, nil, hc("Mounts", mount("Type", "bind", "Source", "/home/runner/externals", "Target", "/x", "ReadOnly", true))), allow: true},
		{name: "--mount bind ro root writable", body: run(t, nil, hc("Mounts", mount("Type", "bind", "Source", "/home/runner/externals", "Target", "/x"))), status: no, code: ReasonBindMount},
		{name: "--mount bind ro root non-recursive", body: run(t, nil, hc("Mounts", mount("Type", "bind", "Source", "/home/runner/externals", "Target", "/x", "ReadOnly", true, "BindOptions", map[string]any{"ReadOnlyNonRecursive": true}))), status: no, code: ReasonBindMount},
		{name: "--mount volume bind opts", body: run(t, nil, hc("Mounts", mount("Type", "volume", "Source", "v", "Target", "/x", "VolumeOptions", map[string]any{"DriverConfig": map[string]any{"Name": "local", "Options": map[string]any{"type": "none", "o": "bind", "device": "/etc"}}}))), status: no, code: ReasonBindMount, reason: "VolumeOptions.DriverConfig.Options"},
		{name: "--mount volume o=bind", body: run(t, nil, hc("Mounts", mount("Type", "volume", "Target", "/x", "VolumeOptions", map[string]any{"DriverConfig": map[string]any{"Options": map[string]any{"o": "rw,bind"}}}))), status: no, code: ReasonBindMount},
		{name: "--mount volume device", body: run(t, nil, hc("Mounts", mount("Type", "volume", "Target", "/x", "VolumeOptions", map[string]any{"DriverConfig": map[string]any{"Options": map[string]any{"type": "ext4", "device": "/dev/sda1"}}}))), status: no, code: ReasonBindMount},
		{name: "--mount volume plugin", body: run(t, nil, hc("Mounts", mount("Type", "volume", "Target", "/x", "VolumeOptions", map[string]any{"DriverConfig": map[string]any{"Name": "rexray"}}))), status: no, code: ReasonBodyDenied},
		{name: "--mount volume", body: run(t, nil, hc("Mounts", mount("Type", "volume", "Source", "cache", "Target", "/x"))), allow: true},
		{name: "--mount tmpfs exec", body: run(t, nil, hc("Mounts", mount("Type", "tmpfs", "Target", "/t", "TmpfsOptions", map[string]any{"Options": []any{[]any{"exec"}}}))), status: no, code: ReasonEscalation},
		{name: "--mount tmpfs", body: run(t, nil, hc("Mounts", mount("Type", "tmpfs", "Target", "/t", "TmpfsOptions", map[string]any{"SizeBytes": 1024}))), allow: true},
		{name: "--mount npipe", body: run(t, nil, hc("Mounts", mount("Type", "npipe", "Source", "x", "Target", "/t"))), status: no, code: ReasonBindMount},
		{name: "--tmpfs exec", body: run(t, nil, hc("Tmpfs", map[string]any{"/t": "rw,exec"})), status: no, code: ReasonEscalation, reason: `HostConfig.Tmpfs["/t"]`},
		{name: "--tmpfs suid", body: run(t, nil, hc("Tmpfs", map[string]any{"/t": "suid"})), status: no, code: ReasonEscalation},
		{name: "--tmpfs dev", body: run(t, nil, hc("Tmpfs", map[string]any{"/t": "dev"})), status: no, code: ReasonEscalation},
		{name: "--tmpfs safe", body: run(t, nil, hc("Tmpfs", map[string]any{"/t": "rw,noexec,nosuid,size=64m"})), allow: true},

		// Volumes from and links: allowed by the runner preset.
		{name: "--volumes-from", body: run(t, nil, hc("VolumesFrom", strs("svc:ro"))), allow: true},
		{name: "--link", body: run(t, nil, hc("Links", strs("db:db"))), allow: true},

		// Devices.
		{name: "--device /dev/sda", body: run(t, nil, hc("Devices", []any{map[string]any{"PathOnHost": "/dev/sda", "PathInContainer": "/dev/sda", "CgroupPermissions": "rwm"}})), status: no, code: ReasonEscalation, reason: `HostConfig.Devices: host devices are not allowed`},
		{name: "--gpus all", body: run(t, nil, hc("DeviceRequests", []any{map[string]any{"Driver": "", "Count": -1, "Capabilities": []any{[]any{"gpu"}}}})), status: no, code: ReasonEscalation},
		{name: "--device-cgroup-rule", body: run(t, nil, hc("DeviceCgroupRules", strs("c 1:3 mr"))), status: no, code: ReasonEscalation},

		// Capabilities.
		{name: "--cap-add SYS_ADMIN", body: run(t, nil, hc("CapAdd", strs("SYS_ADMIN"))), status: no, code: ReasonEscalation, reason: `HostConfig.CapAdd "SYS_ADMIN"`},
		{name: "--cap-add cap_sys_admin", body: run(t, nil, hc("CapAdd", strs("cap_sys_admin"))), status: no, code: ReasonEscalation},
		{name: "--cap-add ALL", body: run(t, nil, hc("CapAdd", strs("ALL"))), status: no, code: ReasonEscalation, reason: "all capabilities"},
		{name: "--cap-add all lower", body: run(t, nil, hc("CapAdd", strs("all"))), status: no, code: ReasonEscalation},
		{name: "CapAdd as a string", body: run(t, nil, hc("CapAdd", "SYS_ADMIN")), status: no, code: ReasonEscalation},
		{name: "--cap-add long s", body: run(t, nil, hc("CapAdd", strs("\u017fys_admin"))), status: no, code: ReasonEscalation},
		{name: "--cap-add CHOWN", body: run(t, nil, hc("CapAdd", strs("CHOWN", "cap_net_raw"))), allow: true},

		// Security options.
		{name: "seccomp=unconfined", body: run(t, nil, hc("SecurityOpt", strs("seccomp=unconfined"))), status: no, code: ReasonEscalation, reason: "seccomp"},
		{name: "seccomp custom profile", body: run(t, nil, hc("SecurityOpt", strs(`seccomp={"defaultAction":"SCMP_ACT_ALLOW"}`))), status: no, code: ReasonEscalation},
		{name: "-v ro,shared", body: run(t, nil, hc("Binds", strs("/home/runner/_work/x:/w:ro,shared"))), status: no, code: ReasonBindMount, reason: "HostConfig.Binds[0]"},
		{name: "-v rslave and z", body: run(t, nil, hc("Binds", strs("/home/runner/_work/x:/w:rslave,z"))), allow: true},
		{name: "apparmor=unconfined", body: run(t, nil, hc("SecurityOpt", strs("apparmor=unconfined"))), status: no, code: ReasonEscalation},
		{name: "label=disable", body: run(t, nil, hc("SecurityOpt", strs("label=disable"))), status: no, code: ReasonEscalation},
		{name: "label:disable", body: run(t, nil, hc("SecurityOpt", strs("label:disable"))), status: no, code: ReasonEscalation},
		{name: "label=type:spc_t", body: run(t, nil, hc("SecurityOpt", strs("label=type:spc_t"))), status: no, code: ReasonEscalation},
		{name: "systempaths=unconfined", body: run(t, nil, hc("SecurityOpt", strs("systempaths=unconfined"))), status: no, code: ReasonEscalation},
		{name: "no-new-privileges=false", body: run(t, nil, hc("SecurityOpt", strs("no-new-privileges=false"))), status: no, code: ReasonEscalation},
		{name: "no-new-privileges:false", body: run(t, nil, hc("SecurityOpt", strs("no-new-privileges:false"))), status: no, code: ReasonEscalation},
		{name: "unknown security option", body: run(t, nil, hc("SecurityOpt", strs("foo=bar"))), status: no, code: ReasonEscalation},
		{name: "no-new-privileges", body: run(t, nil, hc("SecurityOpt", strs("no-new-privileges", "no-new-privileges=true", "apparmor=docker-default", "label=level:s0:c100"))), allow: true},
		{name: "MaskedPaths empty", body: run(t, nil, hc("MaskedPaths", []any{})), status: no, code: ReasonEscalation, reason: "HostConfig.MaskedPaths is empty"},
		{name: "ReadonlyPaths empty", body: run(t, nil, hc("ReadonlyPaths", []any{})), status: no, code: ReasonEscalation},
		{name: "MaskedPaths replaced", body: run(t, nil, hc("MaskedPaths", strs("/x"))), status: no, code: ReasonEscalation, reason: "omits /proc/kcore"},
		{name: "MaskedPaths extended", body: run(t, nil, hc("MaskedPaths", strs("/proc/kcore", "/proc/keys", "/sys/firmware", "/x"))), allow: true},

		// Other escalations.
		{name: "--sysctl", body: run(t, nil, hc("Sysctls", map[string]any{"net.ipv4.ip_forward": "1"})), status: no, code: ReasonEscalation, reason: "net.ipv4.ip_forward"},
		{name: "--runtime runc", body: run(t, nil, hc("Runtime", "runc")), allow: true},
		{name: "--runtime nvidia", body: run(t, nil, hc("Runtime", "nvidia")), status: no, code: ReasonEscalation},
		{name: "--cgroup-parent", body: run(t, nil, hc("CgroupParent", "/")), status: no, code: ReasonEscalation},
		{name: "--annotation", body: run(t, nil, hc("Annotations", map[string]any{"io.katacontainers.config.hypervisor.path": "/x"})), status: no, code: ReasonEscalation},
		{name: "-w /proc/self/fd/8", body: run(t, map[string]any{"WorkingDir": "/proc/self/fd/8"}, nil), status: no, code: ReasonEscalation, reason: "WorkingDir"},
		{name: "-w /work", body: run(t, map[string]any{"WorkingDir": "/__w/repo"}, nil), allow: true},

		// Networking.
		{name: "--ip", body: run(t, map[string]any{"NetworkingConfig": map[string]any{"EndpointsConfig": map[string]any{"net": map[string]any{"IPAMConfig": map[string]any{"IPv4Address": "10.0.0.5"}}}}}, nil), status: no, code: ReasonBodyDenied, reason: `NetworkingConfig.EndpointsConfig["net"].IPAMConfig`},
		{name: "--ip6", body: run(t, map[string]any{"NetworkingConfig": map[string]any{"EndpointsConfig": map[string]any{"net": map[string]any{"IPAMConfig": map[string]any{"IPv6Address": "fd00::5"}}}}}, nil), status: no, code: ReasonBodyDenied},
		{name: "--mac-address endpoint", body: run(t, map[string]any{"NetworkingConfig": map[string]any{"EndpointsConfig": map[string]any{"net": map[string]any{"MacAddress": "02:42:ac:11:00:02"}}}}, nil), status: no, code: ReasonBodyDenied},
		{name: "--mac-address legacy", body: run(t, map[string]any{"MacAddress": "02:42:ac:11:00:02"}, nil), status: no, code: ReasonBodyDenied},
		{name: "--network-alias", body: run(t, map[string]any{"NetworkingConfig": map[string]any{"EndpointsConfig": map[string]any{"net": map[string]any{"Aliases": strs("db")}, "NET": map[string]any{}}}}, nil), allow: true},

		// Deprecated top-level HostConfig fields, which dockerd still reads.
		{name: "top-level Privileged", body: []byte(`{"Image":"alpine","Privileged":true}`), status: no, code: ReasonPrivileged, reason: "Privileged is true"},
		{name: "top-level Binds", body: []byte(`{"Image":"alpine","Binds":["/etc:/x"],"HostConfig":{}}`), status: no, code: ReasonBindMount, reason: `Binds[0] "/etc"`},
		{name: "top-level PidMode", body: []byte(`{"Image":"alpine","PidMode":"host"}`), status: no, code: ReasonHostNamespace},

		// Strict JSON.
		{name: "case-folded duplicate", body: []byte(`{"HostConfig":{"Privileged":false,"privileged":true}}`), status: bad, code: ReasonMalformed, reason: "same field"},
		{name: "exact duplicate", body: []byte(`{"HostConfig":{"Privileged":false,"Privileged":false}}`), status: bad, code: ReasonMalformed, reason: "duplicate key"},
		{name: "duplicate HostConfig", body: []byte(`{"HostConfig":{},"hostconfig":{"Privileged":true}}`), status: bad, code: ReasonMalformed},
		{name: "unicode folded sibling", body: []byte(`{"HostConfig":{"Sysctls":{},"\u017fysctls":{"kernel.x":"1"}}}`), status: bad, code: ReasonMalformed},
		{name: "unicode folded sole key", body: []byte(`{"HostConfig":{"\u017fysctls":{"kernel.x":"1"}}}`), status: no, code: ReasonEscalation},
		{name: "escaped key duplicate", body: []byte(`{"HostConfig":{"Privileged":false,"Privil\u0065ged":true}}`), status: bad, code: ReasonMalformed},
		{name: "duplicate deep in unknown field", body: []byte(`{"Healthcheck":{"Test":[],"test":[]}}`), status: bad, code: ReasonMalformed},
		{name: "labels differ by case", body: []byte(`{"Labels":{"a":"1","A":"2"},"HostConfig":{"Sysctls":null,"Tmpfs":{"/t":"","/T":""}}}`), allow: true},
		{name: "labels exact duplicate", body: []byte(`{"Labels":{"a":"1","a":"2"}}`), status: bad, code: ReasonMalformed},
		{name: "endpoint names differ by case", body: []byte(`{"NetworkingConfig":{"EndpointsConfig":{"net":{},"NET":{}}}}`), allow: true},
		{name: "folded keys inside endpoint", body: []byte(`{"NetworkingConfig":{"EndpointsConfig":{"net":{"MacAddress":"","macaddress":"x"}}}}`), status: bad, code: ReasonMalformed},
		{name: "driver opts differ by case", body: []byte(`{"NetworkingConfig":{"EndpointsConfig":{"net":{"Aliases":["a"],"aliases":["b"]}}}}`), status: bad, code: ReasonMalformed},
		{name: "labels keys differ by case", body: []byte(`{"Labels":{"a":"1","A":"2"}}`), allow: true},
		{name: "trailing object", body: []byte(`{}{"HostConfig":{"Privileged":true}}`), status: bad, code: ReasonMalformed, reason: "trailing data"},
		{name: "trailing garbage", body: []byte(`{} x`), status: bad, code: ReasonMalformed},
		{name: "trailing whitespace", body: []byte("{}\n\t "), allow: true},
		{name: "wrong type bool", body: []byte(`{"HostConfig":{"Privileged":"true"}}`), status: bad, code: ReasonMalformed, reason: "HostConfig.Privileged"},
		{name: "wrong type object", body: []byte(`{"HostConfig":[]}`), status: bad, code: ReasonMalformed},
		// dockerd 20.10 dereferences every Ulimits element: a null one makes
		// container inspect panic with the container's lock held, so every
		// later inspect of that name (another tenant's probe too) hangs.
		{name: "null ulimit", body: []byte(`{"HostConfig":{"Ulimits":[null]}}`), status: bad, code: ReasonMalformed, reason: "HostConfig.Ulimits[0]"},
		{name: "null ulimit after a valid one", body: []byte(`{"HostConfig":{"Ulimits":[{"Name":"nofile","Soft":1024,"Hard":1024},null]}}`), status: bad, code: ReasonMalformed, reason: "HostConfig.Ulimits[1]"},
		{name: "top-level null ulimit", body: []byte(`{"Ulimits":[null]}`), status: bad, code: ReasonMalformed, reason: "Ulimits[0]"},
		{name: "null mount", body: []byte(`{"HostConfig":{"Mounts":[null]}}`), status: bad, code: ReasonMalformed, reason: "HostConfig.Mounts[0]"},
		{name: "null port binding", body: []byte(`{"HostConfig":{"PortBindings":{"80/tcp":[null]}}}`), status: bad, code: ReasonMalformed},
		{name: "null string elements", body: []byte(`{"Env":[null],"HostConfig":{"Dns":[null]}}`), allow: true},
		{name: "wrong type binds", body: []byte(`{"HostConfig":{"Binds":"/:/host"}}`), status: bad, code: ReasonMalformed},
		{name: "bad UTF-8", body: []byte("{\"Image\":\"\xff\"}"), status: bad, code: ReasonMalformed, reason: "UTF-8"},
		{name: "array body", body: []byte(`[]`), status: bad, code: ReasonMalformed},
		{name: "null body", body: []byte(`null`), status: bad, code: ReasonMalformed},
		{name: "truncated", body: []byte(`{"HostConfig":{`), status: bad, code: ReasonMalformed},
		{name: "deep nesting", body: []byte(`{"Cmd":` + strings.Repeat("[", 100) + strings.Repeat("]", 100) + `}`), status: bad, code: ReasonMalformed},
		{name: "too large", body: append(append([]byte(`{"x":"`), bytes.Repeat([]byte("a"), 1<<20)...), `"}`...), status: http.StatusRequestEntityTooLarge, code: ReasonBodyTooLarge},
	}
	runBodyCases(t, pol, createReq, http.Header{}, tests)
}

func TestInspectContainerCreateFormBody(t *testing.T) {
	pol := runnerTenant(t)
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded; charset=utf-8"}}
	runBodyCases(t, pol, createReq, h, []bodyCase{
		{name: "form body", body: []byte("name=other"), status: http.StatusBadRequest, code: ReasonMalformed, reason: "form-encoded"},
		{name: "form header empty body", body: nil, allow: true},
	})
}

func TestDaemonSocketRewrite(t *testing.T) {
	pol := runnerTenant(t)
	tests := []struct {
		name       string
		body       string
		wantBinds  []string
		wantSource []string
	}{
		{
			name:      "runner binds docker.sock",
			body:      `{"Image":"node:20","Labels":{"a":"1"},"HostConfig":{"Binds":["/home/runner/_work:/__w","/var/run/docker.sock:/var/run/docker.sock"],"ShmSize":9007199254740993,"NetworkMode":"github_network_1"}}`,
			wantBinds: []string{"/home/runner/_work:/__w", selfSock + ":/var/run/docker.sock"},
		},
		{
			name:      "run docker.sock read-only",
			body:      `{"HostConfig":{"Binds":["/run/docker.sock:/var/run/docker.sock:ro"]}}`,
			wantBinds: []string{selfSock + ":/var/run/docker.sock:ro"},
		},
		{
			name:      "unclean socket path",
			body:      `{"hostconfig":{"binds":["/var/run/../run//docker.sock:/d.sock"]}}`,
			wantBinds: []string{selfSock + ":/d.sock"},
		},
		{
			name:      "configured daemon socket",
			body:      `{"HostConfig":{"Binds":["/srv/docker/docker.sock:/var/run/docker.sock"]}}`,
			wantBinds: []string{selfSock + ":/var/run/docker.sock"},
		},
		{
			name:       "mount type bind",
			body:       `{"HostConfig":{"Mounts":[{"Type":"volume","Source":"v","Target":"/v"},{"type":"bind","source":"/var/run/docker.sock","target":"/var/run/docker.sock","ReadOnly":true}]}}`,
			wantSource: []string{"v", selfSock},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, nb := pol.InspectBody(createReq, http.Header{}, []byte(tc.body))
			if !d.Allow || nb == nil {
				t.Fatalf("want allowed rewrite, got %+v body %q", d, nb)
			}
			if !strings.Contains(d.Reason, selfSock) {
				t.Fatalf("reason %q does not name the tenant socket", d.Reason)
			}
			var got containerCreateBody
			if err := json.Unmarshal(nb, &got); err != nil {
				t.Fatalf("new body does not decode: %v", err)
			}
			if tc.wantBinds != nil && !reflect.DeepEqual(got.HostConfig.Binds, tc.wantBinds) {
				t.Fatalf("Binds = %q, want %q", got.HostConfig.Binds, tc.wantBinds)
			}
			for i, src := range tc.wantSource {
				if got.HostConfig.Mounts[i].Source != src {
					t.Fatalf("Mounts[%d].Source = %q want %q", i, got.HostConfig.Mounts[i].Source, src)
				}
			}
			if strings.Contains(tc.body, "9007199254740993") && !bytes.Contains(nb, []byte("9007199254740993")) {
				t.Fatalf("number not preserved: %s", nb)
			}
			// The rewritten body is a fixed point: allowed, unchanged.
			d2, nb2 := pol.InspectBody(createReq, http.Header{}, nb)
			if !d2.Allow || nb2 != nil {
				t.Fatalf("rewritten body re-inspected: %+v %q", d2, nb2)
			}
		})
	}
}

func TestDaemonSocketDenied(t *testing.T) {
	body := []byte(`{"HostConfig":{"Binds":["/var/run/docker.sock:/var/run/docker.sock"]}}`)
	noSelf := mustPolicy(t, "github-actions-runner", Overrides{})
	denyPreset, err := ParsePreset("strict", []byte("rules:\n  - {method: POST, path: /containers/create}\ncontainer: {daemon_socket_bind: deny}\n"))
	if err != nil {
		t.Fatal(err)
	}
	denyPol, _ := NewPolicy(denyPreset, Overrides{SelfSocket: selfSock})
	tests := []struct {
		name string
		pol  *Policy
	}{
		{"rewrite without self socket", noSelf},
		{"preset denies", denyPol},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, nb := tc.pol.InspectBody(createReq, nil, body)
			if d.Allow || nb != nil || d.Code != ReasonBindMount || !strings.Contains(d.Reason, "daemon socket") {
				t.Fatalf("got %+v %q", d, nb)
			}
		})
	}
}

func TestContainerRequiredRails(t *testing.T) {
	src := `rules:
  - {method: POST, path: /containers/create}
container:
  require_non_root: true
  require_read_only_rootfs: true
  require_no_new_privileges: true
  require_memory_limit: true
  require_cpu_limit: true
  require_pids_limit: true
`
	p, err := ParsePreset("hardened", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	pol, _ := NewPolicy(p, Overrides{})
	good := map[string]any{"ReadonlyRootfs": true, "SecurityOpt": []any{"no-new-privileges"}, "Memory": 1 << 28, "NanoCpus": 1e9, "PidsLimit": 100}
	with := func(user string, kv ...any) []byte {
		hc := map[string]any{}
		for k, v := range good {
			hc[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			hc[kv[i].(string)] = kv[i+1]
		}
		return run(t, map[string]any{"User": user}, hc)
	}
	const no = http.StatusForbidden
	runBodyCases(t, pol, createReq, nil, []bodyCase{
		{name: "hardened uid", body: with("1000"), allow: true},
		{name: "hardened uid:gid", body: with("1000:1000"), allow: true},
		{name: "empty user", body: with(""), status: no, code: ReasonBodyDenied, reason: "non-root"},
		{name: "uid 0", body: with("0"), status: no, code: ReasonBodyDenied},
		{name: "uid 00", body: with("00"), status: no, code: ReasonBodyDenied},
		{name: "uid +0", body: with("+0"), status: no, code: ReasonBodyDenied},
		{name: "uid 0:5", body: with("0:5"), status: no, code: ReasonBodyDenied},
		{name: "root", body: with("root"), status: no, code: ReasonBodyDenied},
		{name: "ROOT", body: with("ROOT"), status: no, code: ReasonBodyDenied},
		{name: "root:x", body: with("root:x"), status: no, code: ReasonBodyDenied},
		{name: "named user", body: with("node"), status: no, code: ReasonBodyDenied, reason: "numeric"},
		{name: "writable rootfs", body: with("1000", "ReadonlyRootfs", false), status: no, code: ReasonBodyDenied, reason: "ReadonlyRootfs"},
		{name: "no nnp", body: with("1000", "SecurityOpt", nil), status: no, code: ReasonEscalation, reason: "no-new-privileges"},
		{name: "nnp=true", body: with("1000", "SecurityOpt", []any{"no-new-privileges=true"}), allow: true},
		{name: "no memory", body: with("1000", "Memory", 0), status: no, code: ReasonBodyDenied, reason: "Memory"},
		{name: "no cpu", body: with("1000", "NanoCpus", 0), status: no, code: ReasonBodyDenied, reason: "CPU"},
		{name: "cpu quota", body: with("1000", "NanoCpus", 0, "CpuQuota", 50000), allow: true},
		{name: "no pids", body: with("1000", "PidsLimit", nil), status: no, code: ReasonBodyDenied, reason: "PidsLimit"},
		{name: "unlimited pids", body: with("1000", "PidsLimit", -1), status: no, code: ReasonBodyDenied},
		{name: "volumes-from denied by default", body: with("1000", "VolumesFrom", []any{"x"}), status: no, code: ReasonBodyDenied},
		{name: "links denied by default", body: with("1000", "Links", []any{"x:y"}), status: no, code: ReasonBodyDenied},
		{name: "cap not in empty allowlist", body: with("1000", "CapAdd", []any{"CHOWN"}), status: no, code: ReasonEscalation},
	})
}

func TestContainerStartAndUpdate(t *testing.T) {
	pol := runnerTenant(t)
	start := mustReq("POST", "/containers/abc/start")
	runBodyCases(t, pol, start, nil, []bodyCase{
		{name: "start no body", body: nil, allow: true},
		{name: "start empty object", body: []byte(`{}`), allow: true},
		{name: "start HostConfig", body: []byte(`{"Privileged":true,"Binds":["/:/host"]}`), status: http.StatusForbidden, code: ReasonBodyDenied},
	})
	update := mustReq("POST", "/containers/abc/update")
	runBodyCases(t, pol, update, nil, []bodyCase{
		{name: "update memory", body: []byte(`{"Memory":314572800,"MemorySwap":-1}`), allow: true},
		{name: "update devices", body: []byte(`{"Devices":[{"PathOnHost":"/dev/sda"}]}`), status: http.StatusForbidden, code: ReasonEscalation},
		{name: "update cgroup parent", body: []byte(`{"CgroupParent":"/"}`), status: http.StatusForbidden, code: ReasonEscalation},
		{name: "update duplicate", body: []byte(`{"Memory":1,"memory":2}`), status: http.StatusBadRequest, code: ReasonMalformed},
		{name: "update null ulimit", body: []byte(`{"Ulimits":[null]}`), status: http.StatusBadRequest, code: ReasonMalformed, reason: "Ulimits[0]"},
	})
}

func FuzzInspectContainerCreate(f *testing.F) {
	f.Add([]byte(dockerRunBody))
	f.Add([]byte(`{"HostConfig":{"Privileged":false,"privileged":true}}`))
	f.Add([]byte(`{"HostConfig":{"Binds":["/var/run/docker.sock:/var/run/docker.sock"],"Mounts":[{"Type":"bind","Source":"/run/docker.sock"}]}}`))
	f.Add([]byte(`{"Privileged":true,"HostConfig":{"PidMode":"container:x"}}`))
	f.Add([]byte(`{"HostConfig":{"Binds":["/home/runner/externals:/e:ro"],"CapAdd":"CHOWN","Tmpfs":{"/t":"noexec"}}}`))
	f.Add([]byte(`{"Labels":{"a":"1","A":"2"},"NetworkingConfig":{"EndpointsConfig":{"n":{"IPAMConfig":{}}}}}`))
	f.Add([]byte(`{"HostConfig":{"\u017fysctls":{"a":"b"}}}`))
	f.Add([]byte(`{"HostConfig":{"LogConfig":{"Type":"syslog"},"OomScoreAdj":-1,"Ulimits":[{"Name":"memlock","Hard":-1,"Soft":-1}]},"LogConfig":{"Type":"gelf"}}`))
	pol := runnerTenant(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		d, nb := pol.InspectBody(createReq, http.Header{}, body)
		if !d.Allow {
			if nb != nil {
				t.Fatal("denied with a new body")
			}
			if d.Status != 400 && d.Status != 403 && d.Status != 413 {
				t.Fatalf("status %d", d.Status)
			}
			return
		}
		judged := body
		if nb != nil {
			judged = nb
			d2, nb2 := pol.InspectBody(createReq, http.Header{}, nb)
			if !d2.Allow || nb2 != nil {
				t.Fatalf("rewritten body %q not a fixed point: %+v", nb, d2)
			}
		}
		// Read the accepted body as dockerd would and check the invariants hold.
		var b containerCreateBody
		if len(bytes.TrimSpace(judged)) > 0 {
			if err := json.Unmarshal(judged, &b); err != nil {
				t.Fatalf("accepted body does not decode: %v", err)
			}
			var again containerCreateBody
			_ = json.Unmarshal(judged, &again)
			if !reflect.DeepEqual(b, again) {
				t.Fatal("typed decode is not deterministic")
			}
		}
		for _, h := range []*hostConfigBody{&b.hostConfigBody, b.HostConfig} {
			if h == nil {
				continue
			}
			if h.Privileged || strings.EqualFold(h.PidMode, "host") || strings.EqualFold(h.NetworkMode, "host") ||
				strings.EqualFold(h.IpcMode, "host") || len(h.Devices) > 0 || len(h.Sysctls) > 0 {
				t.Fatalf("accepted a dangerous body: %s", judged)
			}
			if h.OomScoreAdj < 0 || !map[string]bool{"": true, "json-file": true, "local": true, "none": true}[h.LogConfig.Type] {
				t.Fatalf("accepted OOM score %d or log driver %q", h.OomScoreAdj, h.LogConfig.Type)
			}
			for _, u := range h.Ulimits {
				if u != nil && (u.Name == "rtprio" || u.Name == "nice" || u.Name == "rttime" || (u.Name == "memlock" && (u.Hard == -1 || u.Hard > 8<<20))) {
					t.Fatalf("accepted ulimit %+v", *u)
				}
			}
			for _, bind := range h.Binds {
				src, _, found := strings.Cut(bind, ":")
				// One part is an anonymous volume at that container path.
				if found && strings.HasPrefix(src, "/") && !strings.HasPrefix(src, "/home/runner/") && src != selfSock {
					t.Fatalf("accepted bind %q", bind)
				}
			}
		}
	})
}

func BenchmarkInspectContainerCreate(b *testing.B) {
	pol := runnerTenant(b)
	body := run(b, map[string]any{"Labels": map[string]any{"com.github.runner": "1"}}, map[string]any{"Binds": []any{"/home/runner/_work:/__w", "/home/runner/externals:/__e:ro"}})
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d, _ := pol.InspectBody(createReq, nil, body)
		if !d.Allow {
			b.Fatal(d.Reason)
		}
	}
}

func BenchmarkInspectContainerCreateRewrite(b *testing.B) {
	pol := runnerTenant(b)
	body := run(b, nil, map[string]any{"Binds": []any{"/home/runner/_work:/__w", "/var/run/docker.sock:/var/run/docker.sock"}})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d, nb := pol.InspectBody(createReq, nil, body)
		if !d.Allow || nb == nil {
			b.Fatal(d.Reason)
		}
	}
}
