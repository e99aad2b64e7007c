package e2e

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestFieldAllowlistsRefuse: through a github-actions-runner socket, with
// the real docker CLI and raw requests, every field the broker allowlists
// refuses what is not on its list: local volume options other than a tmpfs
// (host filesystems, devices, overlay, nfs), remote log drivers and unknown
// log options, block-device throttles, a negative OOM score, real-time and
// unlimited-memlock ulimits, shared bind propagation and fields nobody
// classified. Each refusal names the field, creates nothing, and is in the
// deny log.
func TestFieldAllowlistsRefuse(t *testing.T) {
	const sock = "fields"
	b := StartBroker(t)
	work := t.TempDir()
	b.CreateSocket(t, sock, preset, "--allow-bind", work)
	cleanupNewContainers(t)

	runArgs := func(opts ...string) []string {
		return append(append([]string{"run", "--rm", "--network", "none"}, opts...), testImage, "true")
	}
	vol := func(opts ...string) []string {
		name := objectName(t, "v")
		cleanupUpstream(t, "volume", name)
		return append(append([]string{"volume", "create"}, opts...), name)
	}
	for _, tc := range []struct {
		name   string
		args   []string
		fields []string // the reason names one of these
	}{
		{"volume ext4 on a host device", vol("--opt", "type=ext4", "--opt", "device=/dev/sda1"), []string{`DriverOpts["device"]`, `DriverOpts["type"]`}},
		{"volume device with two slashes", vol("--opt", "type=ext4", "--opt", "device=//dev/sda1"), []string{`DriverOpts["device"] "//dev/sda1"`, `DriverOpts["type"]`}},
		{"volume overlay of a host dir", vol("--opt", "type=overlay", "--opt", "device=overlay", "--opt", "o=lowerdir=/etc,upperdir=/tmp/u,workdir=/tmp/w"), []string{`DriverOpts["device"] "overlay"`, `DriverOpts["type"]`}},
		{"volume nfs from the host network", vol("--opt", "type=nfs", "--opt", "device=:/export", "--opt", "o=addr=127.0.0.1"), []string{`DriverOpts["device"]`}},
		{"volume proc", vol("--opt", "type=proc", "--opt", "device=proc"), []string{`DriverOpts["device"]`}},
		{"volume bind of etc", vol("--opt", "type=none", "--opt", "o=bind", "--opt", "device=/etc"), []string{`DriverOpts["device"]`}},
		{"tmpfs volume with exec", vol("--opt", "type=tmpfs", "--opt", "device=tmpfs", "--opt", "o=size=1m,exec"), []string{`DriverOpts["o"] option "exec"`}},
		{"tmpfs volume with a password-like option", vol("--opt", "type=tmpfs", "--opt", "device=tmpfs", "--opt", "o=password=hunter2"), []string{`DriverOpts["o"] option "password"`}},
		{"volume driver plugin", vol("--driver", "rexray/ebs"), []string{"Driver"}},
		{"mount volume-opt device", runArgs("--mount", "type=volume,dst=/x,volume-opt=type=ext4,volume-opt=device=/dev/sda1"), []string{"VolumeOptions.DriverConfig.Options"}},
		{"mount volume-opt overlay", runArgs("--mount", "type=volume,dst=/x,volume-opt=type=overlay,volume-opt=device=overlay,volume-opt=o=lowerdir=/"), []string{"VolumeOptions.DriverConfig.Options"}},
		{"log driver syslog", runArgs("--log-driver", "syslog", "--log-opt", "syslog-address=tcp://127.0.0.1:1"), []string{`LogConfig.Type "syslog"`}},
		{"log driver gelf", runArgs("--log-driver", "gelf", "--log-opt", "gelf-address=udp://127.0.0.1:12201"), []string{`LogConfig.Type "gelf"`}},
		{"log driver fluentd", runArgs("--log-driver", "fluentd"), []string{`LogConfig.Type "fluentd"`}},
		{"log opt unknown", runArgs("--log-opt", "tag={{.ID}}"), []string{`LogConfig.Config["tag"]`}},
		{"log opt of another driver", runArgs("--log-driver", "local", "--log-opt", "labels=a"), []string{`LogConfig.Config["labels"]`}},
		{"device read bps", runArgs("--device-read-bps", "/dev/sda:1mb"), []string{"BlkioDeviceReadBps"}},
		{"device write iops", runArgs("--device-write-iops", "/dev/sda:10"), []string{"BlkioDeviceWriteIOps"}},
		{"blkio weight device", runArgs("--blkio-weight-device", "/dev/sda:200"), []string{"BlkioWeightDevice"}},
		{"oom score adj negative", runArgs("--oom-score-adj", "-500"), []string{"OomScoreAdj -500"}},
		{"oom kill disable", runArgs("--oom-kill-disable"), []string{"OomKillDisable"}},
		{"ulimit rtprio", runArgs("--ulimit", "rtprio=99"), []string{`Ulimits[0].Name "rtprio"`}},
		{"ulimit nice", runArgs("--ulimit", "nice=40"), []string{`Ulimits[0].Name "nice"`}},
		{"ulimit memlock unlimited", runArgs("--ulimit", "memlock=-1"), []string{"Ulimits[0].Soft -1"}},
		{"cpu realtime runtime", runArgs("--cpu-rt-runtime", "950000"), []string{"CpuRealtimeRuntime"}},
		{"cgroup parent", runArgs("--cgroup-parent", "/"), []string{"CgroupParent"}},
		{"storage opt", runArgs("--storage-opt", "size=1G"), []string{"StorageOpt"}},
		{"bind propagation shared", runArgs("--mount", "type=bind,src="+work+",dst=/w,bind-propagation=rshared"), []string{"BindOptions.Propagation"}},
		{"bind propagation shared in -v", runArgs("-v", work+":/w:rshared"), []string{"Binds[0]"}},
		{"tmpfs mount exec", runArgs("--tmpfs", "/t:exec"), []string{`Tmpfs["/t"]`}},
		{"isolation hyperv", runArgs("--isolation", "hyperv"), []string{"Isolation"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			containers, volumes := upstreamIDs(t, "container"), upstreamIDs(t, "volume")
			r := b.Docker(sock, tc.args...).MustFail(t)
			reason := deniedReason(r.Combined())
			if reason == "" {
				t.Fatalf("output lacks %q (refused by dockerd, not the broker?): %s", deniedPrefix, r)
			}
			if !containsAny(reason, tc.fields...) {
				t.Errorf("reason %q names none of %q", reason, tc.fields)
			}
			if strings.Contains(reason, "hunter2") {
				t.Errorf("reason quotes an option value: %q", reason)
			}
			if got := upstreamIDs(t, "container"); !slices.Equal(got, containers) {
				t.Errorf("containers upstream changed: a refused request created one")
			}
			if got := upstreamIDs(t, "volume"); !slices.Equal(got, volumes) {
				t.Errorf("volumes upstream changed: a refused request created one")
			}
			if _, ok := b.waitDenial(t, sock, func(d denialJSON) bool {
				return d.Reason != "" && strings.Contains(reason, d.Reason)
			}); !ok {
				t.Errorf("sgctl denials --socket %s lacks the refusal %q", sock, reason)
			}
		})
	}

	// Raw requests: fields no client of this API sends, and that nobody
	// classified, are refused by name, at any depth.
	tsock := b.TenantSocket(sock)
	target := objectName(t, "c")
	cleanupUpstream(t, "container", target)
	b.Docker(sock, "run", "-d", "--name", target, "--network", "none", testImage, "sleep", "120").MustSucceed(t)
	var exec struct{ ID string }
	if st, body := dockerJSON(t, tsock, "POST", "/v1.41/containers/"+target+"/exec", map[string]any{"Cmd": []string{"true"}}, &exec); st != http.StatusCreated {
		t.Fatalf("exec create: %d %s", st, body)
	}
	for _, tc := range []struct {
		name, target, body, field string
	}{
		{"unknown top-level field", "/v1.41/containers/create", `{"Image":"` + testImage + `","HostConfig":{"NetworkMode":"none"},"Frobnicate":true}`, "Frobnicate: unknown field"},
		{"old InitPath host path", "/v1.41/containers/create", `{"Image":"` + testImage + `","HostConfig":{"NetworkMode":"none","InitPath":"/tmp/evil"}}`, "HostConfig.InitPath: unknown field"},
		{"unknown mount field", "/v1.41/containers/create", `{"Image":"` + testImage + `","HostConfig":{"NetworkMode":"none","Mounts":[{"Type":"tmpfs","Target":"/t","TmpfsOptions":{"Flags":1}}]}}`, "HostConfig.Mounts[0].TmpfsOptions.Flags: unknown field"},
		{"endpoint output field", "/v1.41/containers/create", `{"Image":"` + testImage + `","NetworkingConfig":{"EndpointsConfig":{"none":{"IPAddress":"10.1.2.3"}}}}`, `NetworkingConfig.EndpointsConfig["none"].IPAddress`},
		{"cgroup of another container", "/v1.41/containers/create", `{"Image":"` + testImage + `","HostConfig":{"NetworkMode":"none","Cgroup":"container:` + target + `"}}`, "HostConfig.Cgroup"},
		{"top-level legacy log driver", "/v1.41/containers/create", `{"Image":"` + testImage + `","NetworkMode":"none","LogConfig":{"Type":"syslog","Config":{}}}`, `LogConfig.Type "syslog"`},
		{"volume create cluster spec", "/v1.41/volumes/create", `{"Name":"x","ClusterVolumeSpec":{}}`, "ClusterVolumeSpec"},
		{"exec create unknown", "/v1.41/containers/" + target + "/exec", `{"Cmd":["true"],"Capabilities":["SYS_ADMIN"]}`, "Capabilities: unknown field"},
		{"exec start unknown", "/v1.41/exec/" + exec.ID + "/start", `{"Detach":true,"Privileged":true}`, "Privileged: unknown field"},
		{"network create unknown", "/v1.41/networks/create", `{"Name":"x","Driver":"bridge","BridgeName":"docker0"}`, "BridgeName: unknown field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			containers := upstreamIDs(t, "container")
			st, body := dockerJSON(t, tsock, "POST", tc.target, tc.body, nil)
			msg, _ := jsonMessage(body)
			if st != http.StatusForbidden || !strings.Contains(msg, tc.field) {
				t.Fatalf("status %d message %q, want 403 naming %q", st, msg, tc.field)
			}
			if got := upstreamIDs(t, "container"); !slices.Equal(got, containers) {
				t.Errorf("containers upstream changed: a refused request created one")
			}
		})
	}
}

// TestFieldAllowlistsLegit: what runners do with these fields still works
// through the broker: named and tmpfs volumes (created, and mounted with
// --mount volume-opt), log rotation options, raised open-file limits, a
// positive OOM score, exec, and network connect and disconnect.
func TestFieldAllowlistsLegit(t *testing.T) {
	const sock = "fieldsok"
	b := StartBroker(t)
	b.CreateSocket(t, sock, preset)
	cleanupNewContainers(t)
	run := func(opts ...string) []string {
		return append([]string{"run", "--rm", "--network", "none"}, opts...)
	}

	plain, tmpfs := objectName(t, "plain"), objectName(t, "tmpfs")
	cleanupUpstream(t, "volume", plain)
	cleanupUpstream(t, "volume", tmpfs)
	b.Docker(sock, "volume", "create", plain).MustSucceed(t)
	b.Docker(sock, "volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs", "--opt", "o=size=10m,uid=1000,mode=0750", tmpfs).MustSucceed(t)
	b.Docker(sock, append(run("-v", plain+":/data"), testImage, "sh", "-c", "echo ok > /data/f && cat /data/f")...).MustSucceed(t)
	r := b.Docker(sock, append(run("-v", tmpfs+":/data"), testImage, "sh", "-c", "grep ' /data ' /proc/mounts && stat -c %u /data")...).MustSucceed(t)
	if !strings.Contains(r.Stdout, "tmpfs /data tmpfs") || !strings.Contains(r.Stdout, "size=10240k") || !strings.HasSuffix(strings.TrimSpace(r.Stdout), "1000") {
		t.Errorf("tmpfs volume is not the sized tmpfs asked for:\n%s", r.Stdout)
	}
	// An anonymous volume: dockerd creates it with the mount's options.
	r = b.Docker(sock, append(run("--mount", "type=volume,dst=/m,volume-opt=type=tmpfs,volume-opt=device=tmpfs,volume-opt=o=size=1m"), testImage, "grep", " /m ", "/proc/mounts")...).MustSucceed(t)
	if !strings.Contains(r.Stdout, "tmpfs /m tmpfs") {
		t.Errorf("--mount volume-opt tmpfs: %s", r.Stdout)
	}
	// A new named volume: the broker creates it ahead of dockerd (to own
	// it) with the mount's judged options and labels.
	named := objectName(t, "namedtmpfs")
	cleanupUpstream(t, "volume", named)
	r = b.Docker(sock, append(run("--mount", "type=volume,src="+named+",dst=/m,volume-opt=type=tmpfs,volume-opt=device=tmpfs,volume-opt=o=size=2m,volume-label=app=ci"), testImage, "grep", " /m ", "/proc/mounts")...).MustSucceed(t)
	if !strings.Contains(r.Stdout, "tmpfs /m tmpfs") || !strings.Contains(r.Stdout, "size=2048k") {
		t.Errorf("--mount src=%s volume-opt tmpfs is not the sized tmpfs asked for: %s", named, r.Stdout)
	}
	if got := upstreamInspect(t, "volume", "{{index .Labels \"app\"}} {{index .Options \"type\"}}", named); got != "ci tmpfs" {
		t.Errorf("volume %s labels/options upstream: %q, want \"ci tmpfs\"", named, got)
	}

	name := objectName(t, "log")
	cleanupUpstream(t, "container", name)
	b.Docker(sock, "run", "--name", name, "--network", "none", "--log-opt", "max-size=10m", "--log-opt", "max-file=2", testImage, "echo", "logged").MustSucceed(t)
	if got := upstreamInspect(t, "container", "{{index .HostConfig.LogConfig.Config \"max-size\"}}", name); got != "10m" {
		t.Errorf("max-size = %q", got)
	}
	if r := b.Docker(sock, "logs", name).MustSucceed(t); !strings.Contains(r.Stdout, "logged") {
		t.Errorf("docker logs: %s", r)
	}
	b.Docker(sock, append(run("--log-driver", "local", "--log-opt", "max-size=1m"), testImage, "true")...).MustSucceed(t)
	b.Docker(sock, append(run("--log-driver", "none"), testImage, "true")...).MustSucceed(t)

	if r := b.Docker(sock, append(run("--ulimit", "nofile=1024:1024"), testImage, "sh", "-c", "ulimit -n")...).MustSucceed(t); strings.TrimSpace(r.Stdout) != "1024" {
		t.Errorf("ulimit -n = %q", r.Stdout)
	}
	if r := b.Docker(sock, append(run("--oom-score-adj", "100"), testImage, "cat", "/proc/self/oom_score_adj")...).MustSucceed(t); strings.TrimSpace(r.Stdout) != "100" {
		t.Errorf("oom_score_adj = %q", r.Stdout)
	}
	b.Docker(sock, append(run("--health-cmd", "true", "--health-interval", "1s", "--tmpfs", "/t:rw,noexec,nosuid,size=1m"), testImage, "true")...).MustSucceed(t)

	// exec create and start (their bodies go through the field table).
	netName := objectName(t, "net")
	cleanupUpstream(t, "network", netName)
	b.Docker(sock, "network", "create", netName).MustSucceed(t)
	svc := objectName(t, "svc")
	cleanupUpstream(t, "container", svc)
	b.Docker(sock, "run", "-d", "--name", svc, "--network", netName, testImage, "sleep", "120").MustSucceed(t)
	if r := b.Docker(sock, "exec", "-e", "A=1", svc, "sh", "-c", "echo $A").MustSucceed(t); strings.TrimSpace(r.Stdout) != "1" {
		t.Errorf("docker exec: %s", r)
	}
	b.Docker(sock, "exec", "-d", svc, "true").MustSucceed(t)

	// network disconnect and connect (disconnect's body is judged too).
	b.Docker(sock, "network", "disconnect", netName, svc).MustSucceed(t)
	b.Docker(sock, "network", "connect", "--alias", "svc", netName, svc).MustSucceed(t)
	if got := upstreamInspect(t, "container", "{{json (index .NetworkSettings.Networks \""+netName+"\").Aliases}}", svc); !strings.Contains(got, `"svc"`) {
		t.Errorf("aliases after connect: %s", got)
	}
}
