package policy

import (
	"net/http"
	"strings"
	"testing"
)

// hardenedTenant is a policy with every require_* rail on, so the judged
// fields those rails read have something to refuse.
func hardenedTenant(t testing.TB) *Policy {
	t.Helper()
	src := `rules:
  - {method: "*", path: "/**"}
container:
  require_non_root: true
  require_read_only_rootfs: true
  require_no_new_privileges: true
  require_memory_limit: true
  require_cpu_limit: true
  require_pids_limit: true
  allowed_bind_roots: [{path: /ro, read_only: true}]
exec: {require_non_root: true}
volumes: {allowed_drivers: [local]}
network: {allowed_drivers: [bridge]}
`
	p, err := ParsePreset("hardened", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	pol, err := NewPolicy(p, Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

// judgedOutsidePolicy lists the judged rows whose check lives in the
// broker's tenant isolation (it stamps the owner label over whatever the
// tenant sent), not in this package.
var judgedOutsidePolicy = map[string]bool{
	string(BodyContainerCreate) + " Labels": true,
	string(BodyVolumeCreate) + " Labels":    true,
	string(BodyNetworkCreate) + " Labels":   true,
}

// TestJudgedFieldsHaveChecks holds every judged row to a check: for each,
// a hostile body must be refused, naming the field. A judged row without an
// example here fails the test, so a row cannot claim a check that does not
// exist.
func TestJudgedFieldsHaveChecks(t *testing.T) {
	runner, hard := runnerTenant(t), hardenedTenant(t)
	type ex struct {
		pol  *Policy
		body string
		name string // substring of the Reason (the field)
	}
	const hcx = `{"HostConfig":`
	examples := map[string]ex{
		// container create
		"User":                                                    {hard, `{"User":"root"}`, "User"},
		"Healthcheck.Interval":                                    {runner, `{"Healthcheck":{"Interval":1000000}}`, "Healthcheck.Interval"},
		"Healthcheck.StartInterval":                               {runner, `{"Healthcheck":{"StartInterval":1}}`, "Healthcheck.StartInterval"},
		"WorkingDir":                                              {runner, `{"WorkingDir":"/proc/self/fd/7"}`, "WorkingDir"},
		"HostConfig.Binds":                                        {runner, hcx + `{"Binds":["/etc:/x"]}}`, "HostConfig.Binds[0]"},
		"HostConfig.LogConfig.Type":                               {runner, hcx + `{"LogConfig":{"Type":"syslog"}}}`, "HostConfig.LogConfig.Type"},
		"HostConfig.LogConfig.Config":                             {runner, hcx + `{"LogConfig":{"Type":"json-file","Config":{"tag":"{{.ID}}"}}}}`, `HostConfig.LogConfig.Config["tag"]`},
		"HostConfig.NetworkMode":                                  {runner, hcx + `{"NetworkMode":"host"}}`, "HostConfig.NetworkMode"},
		"HostConfig.VolumeDriver":                                 {runner, hcx + `{"VolumeDriver":"rexray"}}`, "HostConfig.VolumeDriver"},
		"HostConfig.CapAdd":                                       {runner, hcx + `{"CapAdd":["SYS_ADMIN"]}}`, "HostConfig.CapAdd"},
		"HostConfig.CgroupnsMode":                                 {runner, hcx + `{"CgroupnsMode":"host"}}`, "HostConfig.CgroupnsMode"},
		"HostConfig.GroupAdd":                                     {hard, `{"User":"1000",` + `"HostConfig":{"GroupAdd":["0"],"ReadonlyRootfs":true,"SecurityOpt":["no-new-privileges"],"Memory":1,"NanoCpus":1,"PidsLimit":1}}`, "HostConfig.GroupAdd[0]"},
		"HostConfig.IpcMode":                                      {runner, hcx + `{"IpcMode":"host"}}`, "HostConfig.IpcMode"},
		"HostConfig.OomScoreAdj":                                  {runner, hcx + `{"OomScoreAdj":-500}}`, "HostConfig.OomScoreAdj"},
		"HostConfig.PidMode":                                      {runner, hcx + `{"PidMode":"host"}}`, "HostConfig.PidMode"},
		"HostConfig.Privileged":                                   {runner, hcx + `{"Privileged":true}}`, "HostConfig.Privileged"},
		"HostConfig.ReadonlyRootfs":                               {hard, `{"User":"1000","HostConfig":{"ReadonlyRootfs":false}}`, "HostConfig.ReadonlyRootfs"},
		"HostConfig.SecurityOpt":                                  {runner, hcx + `{"SecurityOpt":["seccomp=unconfined"]}}`, "HostConfig.SecurityOpt"},
		"HostConfig.Tmpfs":                                        {runner, hcx + `{"Tmpfs":{"/t":"exec"}}}`, `HostConfig.Tmpfs["/t"]`},
		"HostConfig.UTSMode":                                      {runner, hcx + `{"UTSMode":"host"}}`, "HostConfig.UTSMode"},
		"HostConfig.UsernsMode":                                   {runner, hcx + `{"UsernsMode":"host"}}`, "HostConfig.UsernsMode"},
		"HostConfig.Runtime":                                      {runner, hcx + `{"Runtime":"kata"}}`, "HostConfig.Runtime"},
		"HostConfig.Isolation":                                    {runner, hcx + `{"Isolation":"hyperv"}}`, "HostConfig.Isolation"},
		"HostConfig.Memory":                                       {hard, `{"User":"1000","HostConfig":{"ReadonlyRootfs":true,"SecurityOpt":["no-new-privileges"]}}`, "HostConfig.Memory"},
		"HostConfig.NanoCpus":                                     {hard, `{"User":"1000","HostConfig":{"ReadonlyRootfs":true,"SecurityOpt":["no-new-privileges"],"Memory":1}}`, "HostConfig.NanoCpus"},
		"HostConfig.CpuQuota":                                     {hard, `{"User":"1000","HostConfig":{"ReadonlyRootfs":true,"SecurityOpt":["no-new-privileges"],"Memory":1}}`, "CpuQuota"},
		"HostConfig.PidsLimit":                                    {hard, `{"User":"1000","HostConfig":{"ReadonlyRootfs":true,"SecurityOpt":["no-new-privileges"],"Memory":1,"NanoCpus":1}}`, "HostConfig.PidsLimit"},
		"HostConfig.Ulimits":                                      {runner, hcx + `{"Ulimits":[{"Name":"rtprio","Soft":99,"Hard":99}]}}`, "HostConfig.Ulimits[0]"},
		"HostConfig.Ulimits.[].Name":                              {runner, hcx + `{"Ulimits":[{"Name":"nice","Soft":0,"Hard":0}]}}`, "HostConfig.Ulimits[0].Name"},
		"HostConfig.Ulimits.[].Hard":                              {runner, hcx + `{"Ulimits":[{"Name":"memlock","Soft":1024,"Hard":-1}]}}`, "HostConfig.Ulimits[0].Hard"},
		"HostConfig.Ulimits.[].Soft":                              {runner, hcx + `{"Ulimits":[{"Name":"nofile","Soft":1073741824,"Hard":1024}]}}`, "HostConfig.Ulimits[0].Soft"},
		"HostConfig.Mounts":                                       {runner, hcx + `{"Mounts":[{"Type":"npipe","Target":"/x"}]}}`, "HostConfig.Mounts[0]"},
		"HostConfig.Mounts.[].Type":                               {runner, hcx + `{"Mounts":[{"Type":"cluster","Target":"/x"}]}}`, "HostConfig.Mounts[0].Type"},
		"HostConfig.Mounts.[].Source":                             {runner, hcx + `{"Mounts":[{"Type":"bind","Source":"/etc","Target":"/x"}]}}`, "HostConfig.Mounts[0].Source"},
		"HostConfig.Mounts.[].ReadOnly":                           {hard, `{"User":"1000","HostConfig":{"Mounts":[{"Type":"bind","Source":"/ro","Target":"/x","ReadOnly":false}]}}`, "HostConfig.Mounts[0].Source"},
		"HostConfig.Mounts.[].BindOptions.Propagation":            {runner, hcx + `{"Mounts":[{"Type":"bind","Source":"/home/runner/_work","Target":"/x","BindOptions":{"Propagation":"rshared"}}]}}`, "HostConfig.Mounts[0].BindOptions.Propagation"},
		"HostConfig.Mounts.[].BindOptions.ReadOnlyNonRecursive":   {hard, `{"User":"1000","HostConfig":{"Mounts":[{"Type":"bind","Source":"/ro","Target":"/x","ReadOnly":true,"BindOptions":{"ReadOnlyNonRecursive":true}}]}}`, "HostConfig.Mounts[0].Source"},
		"HostConfig.Mounts.[].VolumeOptions.Labels":               {runner, hcx + `{"Mounts":[{"Type":"volume","Source":"v","Target":"/x","VolumeOptions":{"Labels":{"io.sockguard.owner":"other"}}}]}}`, "HostConfig.Mounts[0].VolumeOptions.Labels"},
		"HostConfig.Mounts.[].VolumeOptions.Subpath":              {runner, hcx + `{"Mounts":[{"Type":"volume","Source":"v","Target":"/x","VolumeOptions":{"Subpath":"../../etc"}}]}}`, "HostConfig.Mounts[0].VolumeOptions.Subpath"},
		"HostConfig.Mounts.[].VolumeOptions.DriverConfig.Name":    {runner, hcx + `{"Mounts":[{"Type":"volume","Target":"/x","VolumeOptions":{"DriverConfig":{"Name":"rexray"}}}]}}`, "HostConfig.Mounts[0].VolumeOptions.DriverConfig.Name"},
		"HostConfig.Mounts.[].VolumeOptions.DriverConfig.Options": {runner, hcx + `{"Mounts":[{"Type":"volume","Target":"/x","VolumeOptions":{"DriverConfig":{"Options":{"type":"overlay","device":"overlay","o":"lowerdir=/etc"}}}}]}}`, "HostConfig.Mounts[0].VolumeOptions.DriverConfig.Options"},
		"HostConfig.Mounts.[].ImageOptions.Subpath":               {runner, hcx + `{"Mounts":[{"Type":"image","Source":"busybox","Target":"/x","ImageOptions":{"Subpath":"/etc"}}]}}`, "HostConfig.Mounts[0].ImageOptions.Subpath"},
		"HostConfig.Mounts.[].TmpfsOptions.Options":               {runner, hcx + `{"Mounts":[{"Type":"tmpfs","Target":"/x","TmpfsOptions":{"Options":[["suid"]]}}]}}`, "HostConfig.Mounts[0].TmpfsOptions.Options[0]"},
		"HostConfig.MaskedPaths":                                  {runner, hcx + `{"MaskedPaths":[]}}`, "HostConfig.MaskedPaths"},
		"HostConfig.ReadonlyPaths":                                {runner, hcx + `{"ReadonlyPaths":[]}}`, "HostConfig.ReadonlyPaths"},
	}
	// Other bodies, keyed "body path".
	other := map[string]ex{
		"container update Memory":                          {hard, `{"Memory":-1}`, "Memory"},
		"container update NanoCpus":                        {hard, `{"NanoCpus":-1}`, "NanoCpus"},
		"container update CpuQuota":                        {hard, `{"CpuQuota":-1}`, "CpuQuota"},
		"container update PidsLimit":                       {hard, `{"PidsLimit":0}`, "PidsLimit"},
		"container update Ulimits":                         {runner, `{"Ulimits":[{"Name":"rttime","Soft":1,"Hard":1}]}`, "Ulimits[0]"},
		"container update Ulimits.[].Name":                 {runner, `{"Ulimits":[{"Name":"rtprio","Soft":1,"Hard":1}]}`, "Ulimits[0].Name"},
		"container update Ulimits.[].Hard":                 {runner, `{"Ulimits":[{"Name":"memlock","Soft":1,"Hard":-1}]}`, "Ulimits[0].Hard"},
		"container update Ulimits.[].Soft":                 {runner, `{"Ulimits":[{"Name":"memlock","Soft":-1,"Hard":-1}]}`, "Ulimits[0].Soft"},
		"exec create User":                                 {hard, `{"User":"0"}`, "User"},
		"exec create Privileged":                           {runner, `{"Privileged":true}`, "Privileged"},
		"exec create WorkingDir":                           {runner, `{"WorkingDir":"/proc/1/cwd"}`, "WorkingDir"},
		"volume create Driver":                             {runner, `{"Driver":"rexray"}`, "Driver"},
		"volume create DriverOpts":                         {runner, `{"DriverOpts":{"type":"ext4","device":"/dev/sda1"}}`, `DriverOpts["device"]`},
		"network create Driver":                            {runner, `{"Driver":"macvlan"}`, "Driver"},
		"network create Scope":                             {runner, `{"Scope":"swarm"}`, "Scope"},
		"network create IPAM.Driver":                       {runner, `{"IPAM":{"Driver":"x"}}`, "IPAM.Driver"},
		"network create IPAM.Options":                      {runner, `{"IPAM":{"Options":{"a":"b"}}}`, "IPAM.Options"},
		"network create IPAM.Config":                       {runner, `{"IPAM":{"Config":[{"Gateway":"10.0.0.1"}]}}`, "IPAM.Config"},
		"network create IPAM.Config.[].Subnet":             {runner, `{"IPAM":{"Config":[{"Subnet":"10.0.0.0/8"}]}}`, "IPAM.Config"},
		"network create IPAM.Config.[].IPRange":            {runner, `{"IPAM":{"Config":[{"IPRange":"10.0.0.0/8"}]}}`, "IPAM.Config"},
		"network create IPAM.Config.[].Gateway":            {runner, `{"IPAM":{"Config":[{"Gateway":"10.0.0.1"}]}}`, "IPAM.Config"},
		"network create IPAM.Config.[].AuxiliaryAddresses": {runner, `{"IPAM":{"Config":[{"AuxiliaryAddresses":{"a":"10.0.0.1"}}]}}`, "IPAM.Config"},
		"network create ConfigOnly":                        {runner, `{"ConfigOnly":true}`, "ConfigOnly"},
		"network create Options":                           {runner, `{"Options":{"com.docker.network.bridge.name":"eth0"}}`, "Options"},
	}
	reqs := map[BodyKind]Request{
		BodyContainerCreate: createReq,
		BodyContainerUpdate: mustReq("POST", "/containers/x/update"),
		BodyExecCreate:      mustReq("POST", "/containers/x/exec"),
		BodyVolumeCreate:    mustReq("POST", "/volumes/create"),
		BodyNetworkCreate:   mustReq("POST", "/networks/create"),
	}
	for _, f := range FieldTable() {
		if f.Class != FieldJudged || f.Legacy || judgedOutsidePolicy[string(f.Body)+" "+f.Path] {
			continue
		}
		e, ok := other[string(f.Body)+" "+f.Path]
		if f.Body == BodyContainerCreate {
			e, ok = examples[f.Path]
		}
		if !ok {
			t.Errorf("%s %s is judged (%s) but has no hostile example here", f.Body, f.Path, f.Rule)
			continue
		}
		t.Run(string(f.Body)+" "+f.Path, func(t *testing.T) {
			d, _ := e.pol.InspectBody(reqs[f.Body], http.Header{}, []byte(e.body))
			checkSubject(t, d)
			if d.Allow || d.Status != http.StatusForbidden {
				t.Fatalf("%s: not refused: %+v", e.body, d)
			}
			if !strings.Contains(d.Reason, e.name) {
				t.Fatalf("reason %q does not name %s", d.Reason, e.name)
			}
		})
	}
}

// TestLegacyTopLevelJudged: the top-level HostConfig fields dockerd 20.10
// to 26 read are judged like the HostConfig member's.
func TestLegacyTopLevelJudged(t *testing.T) {
	pol := runnerTenant(t)
	for _, body := range []string{
		`{"LogConfig":{"Type":"gelf"}}`,
		`{"OomScoreAdj":-1}`,
		`{"Ulimits":[{"Name":"rtprio","Hard":1,"Soft":1}]}`,
		`{"BlkioDeviceReadBps":[{"Path":"/dev/sda","Rate":1}]}`,
		`{"Mounts":[{"Type":"volume","Target":"/x","VolumeOptions":{"DriverConfig":{"Options":{"type":"nfs"}}}}]}`,
		`{"InitPath":"/tmp/x"}`,
	} {
		d, _ := pol.InspectBody(createReq, http.Header{}, []byte(body))
		if d.Allow || d.Status != http.StatusForbidden || strings.HasPrefix(d.Reason, "HostConfig.") {
			t.Errorf("%s: %+v", body, d)
		}
	}
}

// TestFieldAllowlist covers the table's own refusals and the new checks'
// legitimate values.
func TestFieldAllowlist(t *testing.T) {
	pol := runnerTenant(t)
	const (
		bad = http.StatusBadRequest
		no  = http.StatusForbidden
	)
	tests := []bodyCase{
		// Unknown fields, at every level.
		{name: "unknown top-level", body: []byte(`{"Image":"busybox","Frobnicate":true}`), status: no, code: ReasonBodyDenied, reason: "Frobnicate: unknown field"},
		{name: "unknown in HostConfig", body: []byte(`{"HostConfig":{"InitPath":"/usr/bin/evil"}}`), status: no, code: ReasonBodyDenied, reason: "HostConfig.InitPath: unknown field"},
		{name: "unknown in a mount", body: []byte(`{"HostConfig":{"Mounts":[{"Type":"tmpfs","Target":"/t","Mode":"x"}]}}`), status: no, code: ReasonBodyDenied, reason: "HostConfig.Mounts[0].Mode: unknown field"},
		{name: "unknown in an endpoint", body: []byte(`{"NetworkingConfig":{"EndpointsConfig":{"n":{"Priority":1}}}}`), status: no, code: ReasonBodyDenied, reason: `NetworkingConfig.EndpointsConfig["n"].Priority: unknown field`},
		{name: "unknown in an exposed port", body: []byte(`{"ExposedPorts":{"80/tcp":{"x":1}}}`), status: no, code: ReasonBodyDenied},
		{name: "unknown even when null", body: []byte(`{"Frobnicate":null}`), status: no, code: ReasonBodyDenied},
		{name: "field name folds", body: []byte(`{"hostconfig":{"oomscoreadj":10}}`), allow: true},
		{name: "refused field folded", body: []byte(`{"hostconfig":{"blkiodevicereadbps":[{"Path":"/dev/sda","Rate":1}]}}`), status: no, code: ReasonEscalation, reason: "hostconfig.blkiodevicereadbps"},
		{name: "refused field unicode-folded", body: []byte(`{"HostConfig":{"\u017fysctls":{"kernel.x":"1"}}}`), status: no, code: ReasonEscalation, reason: "kernel.x"},
		{name: "refused field as a string", body: []byte(`{"HostConfig":{"KernelMemory":"1e9"}}`), status: no, code: ReasonBodyDenied},
		{name: "refused field tiny number", body: []byte(`{"HostConfig":{"CpuRealtimePeriod":1e-7}}`), status: no, code: ReasonEscalation},
		{name: "owner label on a mount's volume, upper case", body: []byte(`{"HostConfig":{"Mounts":[{"Type":"volume","Source":"v","Target":"/v","VolumeOptions":{"Labels":{"IO.SOCKGUARD.OWNER":"x"}}}]}}`), status: no, code: ReasonBodyDenied},
		{name: "log driver with a trailing space", body: []byte(`{"HostConfig":{"LogConfig":{"Type":"json-file "}}}`), status: no, code: ReasonBodyDenied},
		{name: "log option in another case", body: []byte(`{"HostConfig":{"LogConfig":{"Type":"json-file","Config":{"Max-Size":"1m"}}}}`), status: no, code: ReasonBodyDenied},
		{name: "tmpfs exec after noexec", body: []byte(`{"HostConfig":{"Tmpfs":{"/t":"noexec, EXEC"}}}`), status: no, code: ReasonEscalation},

		// Refused fields: zero passes, anything else is named.
		{name: "blkio read bps", body: []byte(`{"HostConfig":{"BlkioDeviceReadBps":[{"Path":"/dev/sda","Rate":1048576}]}}`), status: no, code: ReasonEscalation, reason: "HostConfig.BlkioDeviceReadBps: block I/O device"},
		{name: "blkio weight", body: []byte(`{"HostConfig":{"BlkioWeight":300}}`), allow: true},
		{name: "oom kill disable", body: []byte(`{"HostConfig":{"OomKillDisable":true}}`), status: no, code: ReasonEscalation, reason: "HostConfig.OomKillDisable"},
		{name: "oom kill disable false", body: []byte(`{"HostConfig":{"OomKillDisable":false}}`), allow: true},
		{name: "cpu realtime", body: []byte(`{"HostConfig":{"CpuRealtimeRuntime":950000}}`), status: no, code: ReasonEscalation, reason: "CpuRealtimeRuntime"},
		{name: "kernel memory", body: []byte(`{"HostConfig":{"KernelMemory":1e9}}`), status: no, code: ReasonBodyDenied},
		{name: "zero number forms", body: []byte(`{"HostConfig":{"KernelMemory":0.0,"CpuCount":-0,"CpuPercent":0e3}}`), allow: true},
		{name: "cgroup join", body: []byte(`{"HostConfig":{"Cgroup":"container:victim"}}`), status: no, code: ReasonEscalation, reason: "HostConfig.Cgroup"},
		{name: "storage opt", body: []byte(`{"HostConfig":{"StorageOpt":{"size":"1G"}}}`), status: no, code: ReasonEscalation, reason: `HostConfig.StorageOpt["size"]`},
		{name: "storage opt empty", body: []byte(`{"HostConfig":{"StorageOpt":{}}}`), allow: true},
		{name: "create mountpoint", body: []byte(`{"HostConfig":{"Mounts":[{"Type":"bind","Source":"/home/runner/_work/x","Target":"/x","BindOptions":{"CreateMountpoint":true}}]}}`), status: no, code: ReasonBindMount, reason: "CreateMountpoint"},
		{name: "cluster options empty struct", body: []byte(`{"HostConfig":{"Mounts":[{"Type":"volume","Target":"/x","ClusterOptions":{}}]}}`), status: no, code: ReasonBodyDenied},
		{name: "endpoint network id is a reference", body: []byte(`{"NetworkingConfig":{"EndpointsConfig":{"n":{"NetworkID":"abc"}}}}`), allow: true},
		{name: "endpoint ip address output", body: []byte(`{"NetworkingConfig":{"EndpointsConfig":{"n":{"IPAddress":"10.0.0.5"}}}}`), status: no, code: ReasonBodyDenied, reason: "IPAddress"},
		{name: "endpoint driver opts", body: []byte(`{"NetworkingConfig":{"EndpointsConfig":{"n":{"DriverOpts":{"com.docker.network.endpoint.ifname":"eth9"}}}}}`), status: no, code: ReasonBodyDenied},
		{name: "wrong shape", body: []byte(`{"HostConfig":{"Ulimits":{"Name":"nofile"}}}`), status: bad, code: ReasonMalformed},
		{name: "scalar for object", body: []byte(`{"HostConfig":"x"}`), status: bad, code: ReasonMalformed},

		// Log config.
		{name: "log json-file max-size", body: []byte(`{"HostConfig":{"LogConfig":{"Type":"json-file","Config":{"max-size":"10m","max-file":"3","compress":"true"}}}}`), allow: true},
		{name: "log default driver max-size", body: []byte(`{"HostConfig":{"LogConfig":{"Type":"","Config":{"max-size":"10m"}}}}`), allow: true},
		{name: "log local", body: []byte(`{"HostConfig":{"LogConfig":{"Type":"local"}}}`), allow: true},
		{name: "log none", body: []byte(`{"HostConfig":{"LogConfig":{"Type":"none"}}}`), allow: true},
		{name: "log none with options", body: []byte(`{"HostConfig":{"LogConfig":{"Type":"none","Config":{"max-size":"1m"}}}}`), status: no, code: ReasonBodyDenied, reason: `LogConfig.Config["max-size"]`},
		{name: "log syslog", body: []byte(`{"HostConfig":{"LogConfig":{"Type":"syslog","Config":{"syslog-address":"tcp://127.0.0.1:25"}}}}`), status: no, code: ReasonBodyDenied, reason: `HostConfig.LogConfig.Type "syslog"`},
		{name: "log gelf", body: []byte(`{"HostConfig":{"LogConfig":{"Type":"gelf"}}}`), status: no, code: ReasonBodyDenied},
		{name: "log fluentd", body: []byte(`{"HostConfig":{"LogConfig":{"Type":"fluentd"}}}`), status: no, code: ReasonBodyDenied},
		{name: "log splunk", body: []byte(`{"HostConfig":{"LogConfig":{"Type":"splunk"}}}`), status: no, code: ReasonBodyDenied},
		{name: "log bad max-size", body: []byte(`{"HostConfig":{"LogConfig":{"Type":"json-file","Config":{"max-size":"lots"}}}}`), status: no, code: ReasonBodyDenied, reason: "not a valid value"},
		{name: "log unknown option", body: []byte(`{"HostConfig":{"LogConfig":{"Type":"local","Config":{"fluentd-address":"x"}}}}`), status: no, code: ReasonBodyDenied, reason: `LogConfig.Config["fluentd-address"]`},

		// Ulimits, OOM score.
		{name: "ulimit nofile", body: []byte(`{"HostConfig":{"Ulimits":[{"Name":"nofile","Soft":1024,"Hard":1024}]}}`), allow: true},
		{name: "ulimit nproc unlimited", body: []byte(`{"HostConfig":{"Ulimits":[{"Name":"nproc","Soft":-1,"Hard":-1}]}}`), allow: true},
		{name: "ulimit memlock 64k", body: []byte(`{"HostConfig":{"Ulimits":[{"Name":"memlock","Soft":65536,"Hard":65536}]}}`), allow: true},
		{name: "ulimit memlock unlimited", body: []byte(`{"HostConfig":{"Ulimits":[{"Name":"memlock","Soft":-1,"Hard":-1}]}}`), status: no, code: ReasonEscalation, reason: "memlock may not exceed"},
		{name: "ulimit rtprio", body: []byte(`{"HostConfig":{"Ulimits":[{"Name":"rtprio","Soft":99,"Hard":99}]}}`), status: no, code: ReasonEscalation, reason: `"rtprio"`},
		{name: "ulimit upper case", body: []byte(`{"HostConfig":{"Ulimits":[{"Name":"NOFILE","Soft":1,"Hard":1}]}}`), status: no, code: ReasonEscalation},
		{name: "ulimit stack unlimited", body: []byte(`{"HostConfig":{"Ulimits":[{"Name":"stack","Soft":-1,"Hard":-1}]}}`), status: no, code: ReasonEscalation},
		{name: "oom score 100", body: []byte(`{"HostConfig":{"OomScoreAdj":100}}`), allow: true},
		{name: "oom score -1000", body: []byte(`{"HostConfig":{"OomScoreAdj":-1000}}`), status: no, code: ReasonEscalation, reason: "HostConfig.OomScoreAdj -1000"},

		// Volume options on mounts.
		{name: "mount tmpfs volume", body: []byte(`{"HostConfig":{"Mounts":[{"Type":"volume","Source":"t","Target":"/t","VolumeOptions":{"DriverConfig":{"Name":"local","Options":{"type":"tmpfs","device":"tmpfs","o":"size=64m,uid=1000,mode=1777"}}}}]}}`), allow: true},
		{name: "mount volume subpath", body: []byte(`{"HostConfig":{"Mounts":[{"Type":"volume","Source":"t","Target":"/t","VolumeOptions":{"Subpath":"a/b","NoCopy":true}}]}}`), allow: true},
		{name: "mount device //", body: []byte(`{"HostConfig":{"Mounts":[{"Type":"volume","Target":"/t","VolumeOptions":{"DriverConfig":{"Options":{"type":"ext4","device":"//dev/sda1"}}}}]}}`), status: no, code: ReasonBindMount, reason: `Options["device"] "//dev/sda1"`},
		{name: "bind rslave", body: []byte(`{"HostConfig":{"Mounts":[{"Type":"bind","Source":"/home/runner/_work","Target":"/w","BindOptions":{"Propagation":"rslave"}}]}}`), allow: true},
		{name: "bind options on a volume mount", body: []byte(`{"HostConfig":{"Mounts":[{"Type":"volume","Source":"v","Target":"/w","BindOptions":{"Propagation":"shared"}}]}}`), status: no, code: ReasonBindMount},
		{name: "tmpfs unknown option", body: []byte(`{"HostConfig":{"Tmpfs":{"/t":"size=1m,huge=always"}}}`), status: no, code: ReasonEscalation, reason: "unknown tmpfs option"},
		{name: "tmpfs plain", body: []byte(`{"HostConfig":{"Tmpfs":{"/t":""}}}`), allow: true},

		// Healthcheck, isolation.
		{name: "healthcheck 1s", body: []byte(`{"Healthcheck":{"Test":["CMD","true"],"Interval":1000000000,"Timeout":1000000,"Retries":3}}`), allow: true},
		{name: "isolation default", body: []byte(`{"HostConfig":{"Isolation":"default"}}`), allow: true},
	}
	runBodyCases(t, pol, createReq, nil, tests)
}

func TestLocalVolumeOptions(t *testing.T) {
	pol := runnerTenant(t)
	req := mustReq("POST", "/volumes/create")
	const no = http.StatusForbidden
	opts := func(s string) []byte { return []byte(`{"Name":"v","DriverOpts":` + s + `}`) }
	runBodyCases(t, pol, req, nil, []bodyCase{
		{name: "no options", body: opts(`{}`), allow: true},
		{name: "null options", body: opts(`null`), allow: true},
		{name: "tmpfs", body: opts(`{"type":"tmpfs","device":"tmpfs"}`), allow: true},
		{name: "tmpfs sized", body: opts(`{"type":"tmpfs","device":"tmpfs","o":"size=100m,uid=1000,gid=1000,mode=0755,nr_inodes=10k,noexec,nosuid,nodev"}`), allow: true},
		{name: "tmpfs percent", body: opts(`{"type":"tmpfs","device":"tmpfs","o":"size=10%"}`), allow: true},
		{name: "tmpfs without device", body: opts(`{"type":"tmpfs"}`), status: no, code: ReasonBindMount, reason: "must be a tmpfs"},
		{name: "o alone", body: opts(`{"o":"size=1m"}`), status: no, code: ReasonBindMount},
		{name: "device //", body: opts(`{"type":"ext4","device":"//dev/sda1"}`), status: no, code: ReasonBindMount, reason: `DriverOpts["device"] "//dev/sda1"`},
		{name: "overlay", body: opts(`{"type":"overlay","device":"overlay","o":"lowerdir=/etc,upperdir=/tmp/u,workdir=/tmp/w"}`), status: no, code: ReasonBindMount, reason: `DriverOpts["device"] "overlay"`},
		{name: "proc", body: opts(`{"type":"proc","device":"proc"}`), status: no, code: ReasonBindMount},
		{name: "sysfs", body: opts(`{"type":"sysfs","device":"sysfs"}`), status: no, code: ReasonBindMount},
		{name: "cifs", body: opts(`{"type":"cifs","device":"//127.0.0.1/share"}`), status: no, code: ReasonBindMount},
		{name: "tmpfs with bind", body: opts(`{"type":"tmpfs","device":"tmpfs","o":"bind"}`), status: no, code: ReasonBindMount, reason: `DriverOpts["o"] option "bind"`},
		{name: "tmpfs with remount", body: opts(`{"type":"tmpfs","device":"tmpfs","o":"remount,size=1m"}`), status: no, code: ReasonBindMount},
		{name: "tmpfs bad size", body: opts(`{"type":"tmpfs","device":"tmpfs","o":"size=1m;x"}`), status: no, code: ReasonBindMount, reason: "not a valid value"},
		{name: "tmpfs exec", body: opts(`{"type":"tmpfs","device":"tmpfs","o":"exec"}`), status: no, code: ReasonBindMount},
		{name: "tmpfs flag with value", body: opts(`{"type":"tmpfs","device":"tmpfs","o":"ro=1"}`), status: no, code: ReasonBindMount},
		{name: "upper-case key", body: opts(`{"Type":"tmpfs","device":"tmpfs"}`), status: no, code: ReasonBindMount, reason: `DriverOpts["Type"]`},
		{name: "size quota key", body: opts(`{"size":"10G"}`), status: no, code: ReasonBindMount},
	})
}

func TestExecStartAndDisconnectBodies(t *testing.T) {
	pol := runnerTenant(t)
	const no = http.StatusForbidden
	runBodyCases(t, pol, mustReq("POST", "/exec/x/start"), nil, []bodyCase{
		{name: "docker exec", body: []byte(`{"Detach":false,"Tty":true,"ConsoleSize":[24,80]}`), allow: true},
		{name: "empty", body: nil, allow: true},
		{name: "unknown", body: []byte(`{"Detach":false,"Privileged":true}`), status: no, code: ReasonBodyDenied, reason: "Privileged: unknown field"},
	})
	runBodyCases(t, pol, mustReq("POST", "/networks/n/disconnect"), nil, []bodyCase{
		{name: "docker network disconnect", body: []byte(`{"Container":"job","Force":false}`), allow: true},
		{name: "unknown", body: []byte(`{"Container":"job","EndpointConfig":{}}`), status: no, code: ReasonBodyDenied},
	})
	// Isolation reads the container of a disconnect body (with Force).
	if b, err := NetworkConnectRefs([]byte(`{"Container":"job","Force":false}`), "netid", false); err != nil || len(b.Refs()) == 0 {
		t.Fatalf("NetworkConnectRefs(disconnect body) = %+v, %v", b, err)
	}
}
