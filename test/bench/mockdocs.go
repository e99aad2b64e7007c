package main

import (
	"encoding/json"
	"fmt"
)

// The documents the mock dockerd answers with, and the container create
// body the benchmark sends. They have the shape and about the size of what
// dockerd 24-27 answers for API 1.41 and what the docker CLI sends for a
// GitHub Actions runner's job container; the values are made up.

const (
	// benchImage is the job container's image; the mock resolves any
	// image reference to the same document.
	benchImage   = "node:20-bookworm"
	benchImageID = "sha256:2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f80912"
	// benchNetwork is the per-job network the runner creates and names in
	// --network; the mock answers its inspect by name or id.
	benchNetwork   = "github_network_4f1e9d2c7b6a4e0f8d3c2b1a09f8e7d6"
	benchNetworkID = "7d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6"
	// listedContainers is how many containers GET /containers/json lists:
	// a runner with a job container and a few service containers.
	listedContainers = 8
)

// mockCreated is dockerd's 201 answer to a container create.
var mockCreated = []byte(`{"Id":"e90e34656806e3f8c1bbd4a4e1a6e0d19d1ff5b2a8c4e7f01d3b5a9c8e7f6d5c","Warnings":[]}` + "\n")

// mockImage is an image inspect answer (GET /images/{ref}/json), about the
// size of a real one (3 KiB).
var mockImage = mustJSON(map[string]any{
	"Id":          benchImageID,
	"RepoTags":    []string{benchImage, "node:20"},
	"RepoDigests": []string{"node@sha256:1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809"},
	"Parent":      "", "Comment": "buildkit.dockerfile.v0",
	"Created":       "2026-11-12T08:14:02.123456789Z",
	"DockerVersion": "", "Author": "",
	"Config": map[string]any{
		"Hostname": "", "Domainname": "", "User": "", "AttachStdin": false, "AttachStdout": false, "AttachStderr": false,
		"Tty": false, "OpenStdin": false, "StdinOnce": false,
		"Env": []string{
			"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
			"NODE_VERSION=20.18.1", "YARN_VERSION=1.22.22",
		},
		"Cmd": []string{"node"}, "Image": "", "Volumes": nil, "WorkingDir": "",
		"Entrypoint": []string{"docker-entrypoint.sh"}, "OnBuild": nil, "Labels": nil,
	},
	"Architecture": "amd64", "Os": "linux", "Size": 1098765432,
	"GraphDriver": map[string]any{
		"Name": "overlay2",
		"Data": map[string]string{
			"LowerDir":  "/var/lib/docker/overlay2/" + hex64(1) + "/diff:/var/lib/docker/overlay2/" + hex64(2) + "/diff:/var/lib/docker/overlay2/" + hex64(3) + "/diff",
			"MergedDir": "/var/lib/docker/overlay2/" + hex64(4) + "/merged",
			"UpperDir":  "/var/lib/docker/overlay2/" + hex64(4) + "/diff",
			"WorkDir":   "/var/lib/docker/overlay2/" + hex64(4) + "/work",
		},
	},
	"RootFS": map[string]any{"Type": "layers", "Layers": []string{
		"sha256:" + hex64(5), "sha256:" + hex64(6), "sha256:" + hex64(7), "sha256:" + hex64(8),
		"sha256:" + hex64(9), "sha256:" + hex64(10), "sha256:" + hex64(11), "sha256:" + hex64(12),
	}},
	"Metadata": map[string]any{"LastTagTime": "0001-01-01T00:00:00Z"},
})

// mockImageList is GET /images/json: the one image.
var mockImageList = mustJSON([]map[string]any{{
	"Id": benchImageID, "ParentId": "", "RepoTags": []string{benchImage, "node:20"},
	"RepoDigests": []string{"node@sha256:1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809"},
	"Created":     1762935242, "Size": 1098765432, "SharedSize": -1, "VirtualSize": 1098765432,
	"Labels": nil, "Containers": -1,
}})

// mockDocs are the answers that carry the owner label.
type mockDocs struct {
	network []byte // GET /networks/{benchNetwork}
	list    []byte // GET /containers/json
}

// setOwner rebuilds the owner-labelled answers for owner.
func (m *mockDocker) setOwner(owner string) {
	labels := map[string]string{"io.sockguard.owner": owner}
	network := mustJSON(map[string]any{
		"Name": benchNetwork, "Id": benchNetworkID, "Created": "2026-12-01T10:00:00.000000000Z",
		"Scope": "local", "Driver": "bridge", "EnableIPv6": false,
		"IPAM": map[string]any{"Driver": "default", "Options": nil, "Config": []map[string]string{
			{"Subnet": "172.18.0.0/16", "Gateway": "172.18.0.1"},
		}},
		"Internal": false, "Attachable": false, "Ingress": false,
		"ConfigFrom": map[string]string{"Network": ""}, "ConfigOnly": false,
		"Containers": map[string]any{}, "Options": map[string]string{}, "Labels": labels,
	})
	list := make([]map[string]any, listedContainers)
	for i := range list {
		id := hex64(100 + i)
		list[i] = map[string]any{
			"Id": id, "Names": []string{fmt.Sprintf("/%s_job_%d", hex64(200 + i)[:32], i)},
			"Image": benchImage, "ImageID": benchImageID,
			"Command": `"tail -f /dev/null"`, "Created": 1764583200 + i,
			"Ports": []any{}, "Labels": map[string]string{
				"io.sockguard.owner": owner, "io.sockguard.pin": "", hex64(300)[:6]: "",
			},
			"State": "running", "Status": fmt.Sprintf("Up %d minutes", i+1),
			"HostConfig": map[string]string{"NetworkMode": benchNetwork},
			"NetworkSettings": map[string]any{"Networks": map[string]any{benchNetwork: map[string]any{
				"IPAMConfig": nil, "Links": nil, "Aliases": nil, "MacAddress": "02:42:ac:12:00:02",
				"NetworkID": benchNetworkID, "EndpointID": hex64(400 + i),
				"Gateway": "172.18.0.1", "IPAddress": fmt.Sprintf("172.18.0.%d", i+2), "IPPrefixLen": 16,
				"IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DriverOpts": nil,
			}}},
			"Mounts": []map[string]any{{
				"Type": "bind", "Source": "/home/runner/_work", "Destination": "/__w",
				"Mode": "", "RW": true, "Propagation": "rprivate",
			}},
		}
	}
	m.docs.Store(&mockDocs{network: network, list: mustJSON(list)})
}

// createBody is what the docker CLI (API 1.41) sends for the runner's job
// container: `docker create --name N --label L --workdir /__w/app/app
// --network NET --network-alias app -e ... --entrypoint tail IMAGE -f
// /dev/null`. It has no bind mount (see README.md: each bind is pinned
// with a mount(2) per create).
var createBody = mustJSON(map[string]any{
	"Hostname": "", "Domainname": "", "User": "",
	"AttachStdin": false, "AttachStdout": false, "AttachStderr": false,
	"Tty": false, "OpenStdin": false, "StdinOnce": false,
	"Env": []string{
		"HOME=/github/home", "GITHUB_ACTIONS=true", "CI=true", "GITHUB_WORKSPACE=/__w/app/app",
		"RUNNER_OS=Linux", "RUNNER_TEMP=/__w/_temp", "RUNNER_TOOL_CACHE=/__t",
	},
	"Cmd": []string{"-f", "/dev/null"}, "Image": benchImage, "Volumes": map[string]any{},
	"WorkingDir": "/__w/app/app", "Entrypoint": []string{"tail"}, "OnBuild": nil,
	"Labels": map[string]string{hex64(300)[:6]: ""},
	"HostConfig": map[string]any{
		"Binds": nil, "ContainerIDFile": "", "LogConfig": map[string]any{"Type": "", "Config": map[string]string{}},
		"NetworkMode": benchNetwork, "PortBindings": map[string]any{},
		"RestartPolicy": map[string]any{"Name": "no", "MaximumRetryCount": 0},
		"AutoRemove":    false, "VolumeDriver": "", "VolumesFrom": nil, "ConsoleSize": []int{0, 0},
		"CapAdd": nil, "CapDrop": nil, "CgroupnsMode": "", "Dns": []string{}, "DnsOptions": []string{},
		"DnsSearch": []string{}, "ExtraHosts": nil, "GroupAdd": nil, "IpcMode": "", "Cgroup": "",
		"Links": nil, "OomScoreAdj": 0, "PidMode": "", "Privileged": false, "PublishAllPorts": false,
		"ReadonlyRootfs": false, "SecurityOpt": nil, "UTSMode": "", "UsernsMode": "", "ShmSize": 0,
		"Isolation": "", "CpuShares": 0, "Memory": 0, "NanoCpus": 0, "CgroupParent": "",
		"BlkioWeight": 0, "BlkioWeightDevice": []any{}, "BlkioDeviceReadBps": []any{},
		"BlkioDeviceWriteBps": []any{}, "BlkioDeviceReadIOps": []any{}, "BlkioDeviceWriteIOps": []any{},
		"CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0,
		"CpusetCpus": "", "CpusetMems": "", "Devices": []any{}, "DeviceCgroupRules": nil,
		"DeviceRequests": nil, "MemoryReservation": 0, "MemorySwap": 0, "MemorySwappiness": nil,
		"OomKillDisable": false, "PidsLimit": nil, "Ulimits": nil, "CpuCount": 0, "CpuPercent": 0,
		"IOMaximumIOps": 0, "IOMaximumBandwidth": 0, "MaskedPaths": nil, "ReadonlyPaths": nil,
	},
	"NetworkingConfig": map[string]any{"EndpointsConfig": map[string]any{benchNetwork: map[string]any{
		"IPAMConfig": nil, "Links": nil, "Aliases": []string{"app"}, "MacAddress": "",
		"NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
		"IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DriverOpts": nil,
	}}},
})

// hex64 is a made-up 64-hex-digit id, distinct for each n.
func hex64(n int) string {
	const digits = "0123456789abcdef"
	b := make([]byte, 64)
	x := uint64(n)*0x9e3779b97f4a7c15 + 0x632be59bd9b4e019
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = digits[x&15]
	}
	return string(b)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // the documents above are fixed: a bug, not bad input
	}
	return append(b, '\n')
}
