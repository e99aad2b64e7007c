package e2e

import (
	"path/filepath"
	"strings"
	"testing"
)

// deniedReason is the reason after "sockguard: denied by policy: " in
// docker CLI output, up to the end of its line ("" when absent).
func deniedReason(out string) string {
	_, after, ok := strings.Cut(out, deniedPrefix)
	if !ok {
		return ""
	}
	line, _, _ := strings.Cut(after, "\n")
	return strings.TrimSpace(line)
}

// TestPolicyRails: through a github-actions-runner socket, every way of
// getting the host is refused by the broker (not by dockerd) with a reason
// naming the field, nothing is created, and each refusal is in the deny log.
func TestPolicyRails(t *testing.T) {
	const sock = "rails"
	b := StartBroker(t)
	b.CreateSocket(t, sock, preset)
	cleanupNewContainers(t)

	target := objectName(t, "c") + "-target"
	cleanupUpstream(t, "container", target)
	b.Docker(sock, "run", "-d", "--name", target, testImage, "sleep", "120").MustSucceed(t)

	bindVol := objectName(t, "v") + "-bind"
	cleanupUpstream(t, "volume", bindVol)

	type railCase struct {
		name   string
		args   []string // docker CLI arguments
		fields []string // the reason must name one of these
		// mountVolume: the command is a volume create that may be accepted;
		// then mounting the volume must be refused instead.
		mountVolume string
	}
	runArgs := func(opts ...string) []string {
		return append(append([]string{"run", "--rm"}, opts...), testImage, "true")
	}
	for _, tc := range []railCase{
		{name: "privileged", args: runArgs("--privileged"), fields: []string{"Privileged"}},
		{name: "pid host", args: runArgs("--pid=host"), fields: []string{"PidMode"}},
		{name: "network host", args: runArgs("--network=host"), fields: []string{"NetworkMode"}},
		{name: "ipc host", args: runArgs("--ipc=host"), fields: []string{"IpcMode"}},
		{name: "uts host", args: runArgs("--uts=host"), fields: []string{"UTSMode"}},
		{name: "userns host", args: runArgs("--userns=host"), fields: []string{"UsernsMode"}},
		{name: "bind root", args: runArgs("-v", "/:/host"), fields: []string{"Binds"}},
		{name: "bind mount etc", args: runArgs("--mount", "type=bind,src=/etc,dst=/x"), fields: []string{"Mounts"}},
		// The daemon socket itself is rewritten (see TestRunnerJob); its
		// directory would hand it out unfiltered.
		{name: "bind dir of upstream socket", args: runArgs("-v", filepath.Dir(strings.TrimPrefix(suite.upstream, "unix://"))+":/d"), fields: []string{"Binds"}},
		{name: "volume bound to etc",
			args:   []string{"volume", "create", "-o", "type=none", "-o", "o=bind", "-o", "device=/etc", bindVol},
			fields: []string{"DriverOpts", "Mounts", "Binds"}, mountVolume: bindVol},
		{name: "cap-add SYS_ADMIN", args: runArgs("--cap-add", "SYS_ADMIN"), fields: []string{"CapAdd"}},
		{name: "cap-add ALL", args: runArgs("--cap-add", "ALL"), fields: []string{"CapAdd"}},
		{name: "seccomp unconfined", args: runArgs("--security-opt", "seccomp=unconfined"), fields: []string{"SecurityOpt"}},
		{name: "apparmor unconfined", args: runArgs("--security-opt", "apparmor=unconfined"), fields: []string{"SecurityOpt"}},
		{name: "systempaths unconfined", args: runArgs("--security-opt", "systempaths=unconfined"), fields: []string{"SecurityOpt", "MaskedPaths", "ReadonlyPaths"}},
		{name: "device sda", args: runArgs("--device", "/dev/sda"), fields: []string{"Devices"}},
		{name: "device null", args: runArgs("--device", "/dev/null"), fields: []string{"Devices"}},
		{name: "sysctl", args: runArgs("--sysctl", "net.ipv4.ip_forward=1"), fields: []string{"Sysctls"}},
		{name: "exec privileged", args: []string{"exec", "--privileged", target, "true"}, fields: []string{"Privileged"}},
		{name: "build", args: []string{"build", "-t", objectName(t, "img"), buildContext(t)}, fields: []string{"build"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			containersBefore := upstreamIDs(t, "container")
			r := b.Docker(sock, tc.args...)
			if tc.mountVolume != "" && r.Code == 0 {
				t.Logf("volume create accepted; mounting it must be refused")
				r = b.Docker(sock, runArgs("-v", tc.mountVolume+":/x")...)
				if r.Code != 0 {
					// Also refused through --mount.
					r2 := b.Docker(sock, runArgs("--mount", "type=volume,src="+tc.mountVolume+",dst=/x")...).MustFail(t)
					if !strings.Contains(r2.Combined(), deniedPrefix) {
						t.Errorf("--mount of a host-bound volume: output lacks %q: %s", deniedPrefix, r2)
					}
				}
			}
			r.MustFail(t)
			reason := deniedReason(r.Combined())
			if reason == "" {
				t.Fatalf("output lacks %q: %s", deniedPrefix, r)
			}
			if !containsAny(reason, tc.fields...) {
				t.Errorf("reason %q names none of %q", reason, tc.fields)
			}
			if got := upstreamIDs(t, "container"); len(got) != len(containersBefore) {
				t.Errorf("containers upstream %d -> %d: a refused request created one", len(containersBefore), len(got))
			}
			// The deny log is written off the request path: wait for it.
			d, found := b.waitDenial(t, sock, func(d denialJSON) bool {
				return d.Reason != "" && strings.Contains(reason, d.Reason)
			})
			if found && (d.ReasonCode == "" || d.ReasonCode == "unspecified") {
				t.Errorf("denial %+v has no reason code", d)
			}
			if !found {
				t.Errorf("sgctl denials --socket %s lacks the refusal %q", sock, reason)
			}
		})
	}
	// Nothing privileged ran in the target container.
	if got := upstreamInspect(t, "container", "{{.State.Running}}", target); got != "true" {
		t.Errorf("target container running=%s", got)
	}
}
