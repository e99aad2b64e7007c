package policy

import (
	"net/http"
	"testing"
)

// runnerCreateBody is the body test/bench sends: what the docker CLI sends
// for a GitHub Actions runner's job container (no bind mount).
const runnerCreateBody = `{"AttachStderr":false,"AttachStdin":false,"AttachStdout":false,"Cmd":["-f","/dev/null"],"Domainname":"",` +
	`"Entrypoint":["tail"],"Env":["HOME=/github/home","GITHUB_ACTIONS=true","CI=true","GITHUB_WORKSPACE=/__w/app/app",` +
	`"RUNNER_OS=Linux","RUNNER_TEMP=/__w/_temp","RUNNER_TOOL_CACHE=/__t"],` +
	`"HostConfig":{"AutoRemove":false,"Binds":null,"BlkioDeviceReadBps":[],"BlkioDeviceReadIOps":[],"BlkioDeviceWriteBps":[],` +
	`"BlkioDeviceWriteIOps":[],"BlkioWeight":0,"BlkioWeightDevice":[],"CapAdd":null,"CapDrop":null,"Cgroup":"","CgroupParent":"",` +
	`"CgroupnsMode":"","ConsoleSize":[0,0],"ContainerIDFile":"","CpuCount":0,"CpuPercent":0,"CpuPeriod":0,"CpuQuota":0,` +
	`"CpuRealtimePeriod":0,"CpuRealtimeRuntime":0,"CpuShares":0,"CpusetCpus":"","CpusetMems":"","DeviceCgroupRules":null,` +
	`"DeviceRequests":null,"Devices":[],"Dns":[],"DnsOptions":[],"DnsSearch":[],"ExtraHosts":null,"GroupAdd":null,` +
	`"IOMaximumBandwidth":0,"IOMaximumIOps":0,"IpcMode":"","Isolation":"","Links":null,"LogConfig":{"Config":{},"Type":""},` +
	`"MaskedPaths":null,"Memory":0,"MemoryReservation":0,"MemorySwap":0,"MemorySwappiness":null,"NanoCpus":0,` +
	`"NetworkMode":"github_network_4f1e9d2c7b6a4e0f8d3c2b1a09f8e7d6","OomKillDisable":false,"OomScoreAdj":0,"PidMode":"",` +
	`"PidsLimit":null,"PortBindings":{},"Privileged":false,"PublishAllPorts":false,"ReadonlyPaths":null,"ReadonlyRootfs":false,` +
	`"RestartPolicy":{"MaximumRetryCount":0,"Name":"no"},"SecurityOpt":null,"ShmSize":0,"UTSMode":"","Ulimits":null,` +
	`"UsernsMode":"","VolumeDriver":"","VolumesFrom":null},"Hostname":"","Image":"node:20-bookworm","Labels":{"8c1f0e":""},` +
	`"NetworkingConfig":{"EndpointsConfig":{"github_network_4f1e9d2c7b6a4e0f8d3c2b1a09f8e7d6":{"Aliases":["app"],` +
	`"DriverOpts":null,"EndpointID":"","Gateway":"","GlobalIPv6Address":"","GlobalIPv6PrefixLen":0,"IPAMConfig":null,` +
	`"IPAddress":"","IPPrefixLen":0,"IPv6Gateway":"","Links":null,"MacAddress":"","NetworkID":""}}},"OnBuild":null,` +
	`"OpenStdin":false,"StdinOnce":false,"Tty":false,"User":"","Volumes":{},"WorkingDir":"/__w/app/app"}`

// The per-create policy passes on the bench's body, each on its own
// (go test ./policy -run '^$' -bench CreateBody -benchmem).
func BenchmarkCreateBody(b *testing.B) {
	body := []byte(runnerCreateBody)
	pol := runnerTenant(b)
	if d, _ := pol.InspectBody(createReq, http.Header{}, body); !d.Allow {
		b.Fatalf("the bench body is refused: %s", d.Reason)
	}
	b.Run("InspectBody", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			pol.InspectBody(createReq, http.Header{}, body)
		}
	})
	b.Run("ResolveBindSources", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := ResolveBindSources(body, func(_, s string) (string, error) { return s, nil }); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ContainerCreateRefs", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := ContainerCreateRefs(body); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("strictWalk", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if err := checkBody(body, containerCreateDataMaps()); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("strictWalkSlow", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if err := walkSlow(body, containerCreateDataMaps(), true); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("MayBindHostPaths", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if MayBindHostPaths(body) {
				b.Fatal("the bench body has no bind")
			}
		}
	})
}
