package policy

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// tableAdmits walks a decoded JSON value alongside the compiled field
// table, independently of the strict walker: it reports the first key the
// table does not list, or a refused field whose value is not zero.
func tableAdmits(n *fieldNode, v any, where string) (string, bool) {
	if n != nil && n.f != nil && n.f.Class == FieldRefused {
		switch x := v.(type) {
		case nil:
		case bool:
			if x {
				return where, false
			}
		case string:
			if x != "" {
				return where, false
			}
		case json.Number:
			if f, err := x.Float64(); err != nil || f != 0 {
				return where, false
			}
		case []any:
			if len(x) > 0 {
				return where, false
			}
		case map[string]any:
			if len(x) > 0 || n.kind != kMap {
				return where, false
			}
		}
		return "", true
	}
	switch x := v.(type) {
	case map[string]any:
		for k, sub := range x {
			var child *fieldNode
			switch {
			case n == nil:
				return where + "." + k, false
			case n.kind == kMap:
				child = n.entry
			case n.kids != nil:
				child = n.kids[foldKey(k)]
			}
			if child == nil {
				return where + "." + k, false
			}
			if w, ok := tableAdmits(child, sub, where+"."+k); !ok {
				return w, false
			}
		}
	case []any:
		for _, sub := range x {
			if n == nil || n.elem == nil {
				return where + "[]", false
			}
			if w, ok := tableAdmits(n.elem, sub, where+"[]"); !ok {
				return w, false
			}
		}
	}
	return "", true
}

// FuzzFieldTable: whatever the body, an accepted container create, update,
// exec, volume or network body has only fields the table lists, and no
// refused field with a non-zero value.
func FuzzFieldTable(f *testing.F) {
	for _, s := range []string{
		dockerRunBody,
		`{"Frobnicate":1}`,
		`{"HostConfig":{"BlkioDeviceReadBps":[{"Path":"/dev/sda","Rate":1}],"OomKillDisable":false}}`,
		`{"HostConfig":{"StorageOpt":{},"Sysctls":{"a":"b"}}}`,
		`{"NetworkingConfig":{"EndpointsConfig":{"n":{"IPAddress":"","DNSNames":null,"DriverOpts":{}}}}}`,
		`{"HostConfig":{"Mounts":[{"Type":"volume","ClusterOptions":{}}]}}`,
		`{"ExposedPorts":{"80/tcp":{"x":1}}}`,
		`{"KernelMemory":-0.0e5}`,
	} {
		f.Add(uint8(0), []byte(s))
	}
	f.Add(uint8(2), []byte(`{"Cmd":["sh"],"Capabilities":["ALL"]}`))
	f.Add(uint8(4), []byte(`{"ClusterVolumeSpec":{}}`))
	f.Add(uint8(5), []byte(`{"Name":"n","IPAM":{"Config":[]},"BridgeName":"x"}`))
	f.Add(uint8(7), []byte(`{"Container":"c","Force":true,"x":1}`))
	pol := runnerTenant(f)
	kinds := BodyKinds()
	reqs := map[BodyKind]Request{
		BodyContainerCreate:   createReq,
		BodyContainerUpdate:   mustReq("POST", "/containers/x/update"),
		BodyExecCreate:        mustReq("POST", "/containers/x/exec"),
		BodyExecStart:         mustReq("POST", "/exec/x/start"),
		BodyVolumeCreate:      mustReq("POST", "/volumes/create"),
		BodyNetworkCreate:     mustReq("POST", "/networks/create"),
		BodyNetworkConnect:    mustReq("POST", "/networks/n/connect"),
		BodyNetworkDisconnect: mustReq("POST", "/networks/n/disconnect"),
	}
	f.Fuzz(func(t *testing.T, which uint8, body []byte) {
		kind := kinds[int(which)%len(kinds)]
		d, nb := pol.InspectBody(reqs[kind], http.Header{}, body)
		checkSubject(t, d)
		if !d.Allow {
			if d.Status != 400 && d.Status != 403 && d.Status != 413 {
				t.Fatalf("status %d", d.Status)
			}
			return
		}
		if nb != nil {
			body = nb
		}
		if len(bytes.TrimSpace(body)) == 0 {
			return
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("accepted body does not decode: %v", err)
		}
		if where, ok := tableAdmits(schemaFor(kind), v, ""); !ok {
			t.Fatalf("%s: accepted %s, whose %s the table refuses or does not list", kind, body, where)
		}
	})
}

// FuzzLocalVolumeOptions: an accepted set of local driver options is empty
// or exactly a tmpfs with allowlisted o= entries, and a refusal never
// quotes the value of an option it does not know (it can be a password).
func FuzzLocalVolumeOptions(f *testing.F) {
	f.Add("tmpfs", "tmpfs", "size=10m,uid=1000", "")
	f.Add("ext4", "//dev/sda1", "", "")
	f.Add("tmpfs", "tmpfs", "password=hunter2", "x")
	f.Add("overlay", "overlay", "lowerdir=/etc", "")
	f.Add("tmpfs", "tmpfs", "size=1m,bind", "size")
	f.Fuzz(func(t *testing.T, typ, device, o, extra string) {
		opts := map[string]string{}
		for k, v := range map[string]string{"type": typ, "device": device, "o": o, extra: "v"} {
			if k != "" && v != "" {
				opts[k] = v
			}
		}
		d := checkLocalVolumeOptions("DriverOpts", opts)
		if !d.Allow {
			for _, entry := range strings.Split(o, ",") {
				name, val, _ := strings.Cut(entry, "=")
				switch name {
				case "size", "mode", "uid", "gid", "nr_inodes", "nr_blocks":
					continue // a malformed value of a known option is quoted
				}
				if len(val) >= 8 && strings.Contains(d.Reason, val) {
					t.Fatalf("reason quotes the value of option %q: %s", name, d.Reason)
				}
			}
			return
		}
		if len(opts) == 0 {
			return
		}
		if opts["type"] != "tmpfs" || opts["device"] != "tmpfs" {
			t.Fatalf("accepted %v", opts)
		}
		for k := range opts {
			if k != "type" && k != "device" && k != "o" {
				t.Fatalf("accepted key %q", k)
			}
		}
		if o == "" {
			return
		}
		for _, entry := range strings.Split(o, ",") {
			name, val, hasVal := strings.Cut(entry, "=")
			switch name {
			case "noexec", "nosuid", "nodev", "ro", "rw":
				if hasVal {
					t.Fatalf("accepted flag with a value %q", entry)
				}
			case "size", "mode", "uid", "gid", "nr_inodes", "nr_blocks":
				if val == "" || strings.ContainsAny(val, "=,/ ") {
					t.Fatalf("accepted %q", entry)
				}
			default:
				t.Fatalf("accepted mount option %q", entry)
			}
		}
	})
}

// FuzzLogConfig: an accepted log configuration uses the daemon default or
// a driver the runner preset lists, with options that driver knows.
func FuzzLogConfig(f *testing.F) {
	f.Add("json-file", "max-size", "10m")
	f.Add("syslog", "syslog-address", "tcp://127.0.0.1:514")
	f.Add("", "max-file", "3")
	f.Add("local", "labels", "a")
	f.Add("json-file", "tag", "{{.ID}}")
	pol := runnerTenant(f)
	f.Fuzz(func(t *testing.T, driver, key, value string) {
		lc := &logConfigBody{Type: driver, Config: map[string]string{key: value}}
		d := pol.checkLogConfig("HostConfig.", lc)
		if !d.Allow {
			return
		}
		switch driver {
		case "", "json-file", "local", "none":
		default:
			t.Fatalf("accepted log driver %q", driver)
		}
		if _, ok := logDriverOptions(driver)[key]; !ok {
			t.Fatalf("accepted option %q for %q", key, driver)
		}
	})
}

// FuzzUlimits: an accepted ulimit is on the allowlist and within its bound.
func FuzzUlimits(f *testing.F) {
	f.Add("nofile", int64(1024), int64(1024))
	f.Add("memlock", int64(-1), int64(-1))
	f.Add("rtprio", int64(99), int64(99))
	f.Fuzz(func(t *testing.T, name string, soft, hard int64) {
		d := checkUlimits("", []*ulimitBody{{Name: name, Soft: soft, Hard: hard}})
		if !d.Allow {
			return
		}
		max, ok := ulimitMax(name)
		if !ok || name == "nice" || name == "rtprio" || name == "rttime" {
			t.Fatalf("accepted ulimit %q", name)
		}
		for _, v := range []int64{soft, hard} {
			if v < -1 || (max != -1 && (v == -1 || v > max)) {
				t.Fatalf("accepted %s=%d (max %d)", name, v, max)
			}
		}
	})
}
