package policy

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

func TestInspectExecCreate(t *testing.T) {
	pol := runnerTenant(t)
	req := mustReq("POST", "/containers/job/exec")
	const no = http.StatusForbidden
	runBodyCases(t, pol, req, nil, []bodyCase{
		// docker exec -it job sh
		{name: "docker exec", body: []byte(`{"User":"","Privileged":false,"Tty":true,"ConsoleSize":[24,80],"AttachStdin":true,"AttachStderr":true,"AttachStdout":true,"Detach":false,"DetachKeys":"","Env":null,"WorkingDir":"","Cmd":["sh"]}`), allow: true},
		{name: "docker exec --privileged", body: []byte(`{"Privileged":true,"Cmd":["sh"]}`), status: no, code: ReasonPrivileged, reason: "Privileged is true"},
		{name: "docker exec -u root", body: []byte(`{"User":"root","Cmd":["sh"]}`), allow: true},
		{name: "workdir proc fd", body: []byte(`{"WorkingDir":"/proc/self/fd/7","Cmd":["sh"]}`), status: no, code: ReasonEscalation, reason: "WorkingDir"},
		{name: "workdir proc fd relative", body: []byte(`{"WorkingDir":"../proc/1/fd/7"}`), status: no, code: ReasonEscalation},
		{name: "folded duplicate", body: []byte(`{"Privileged":false,"PRIVILEGED":true}`), status: http.StatusBadRequest, code: ReasonMalformed},
		{name: "wrong type", body: []byte(`{"Privileged":1}`), status: http.StatusBadRequest, code: ReasonMalformed},
	})

	p, err := ParsePreset("nonroot", []byte("rules:\n  - {method: POST, path: /containers/*/exec}\nexec: {require_non_root: true}\n"))
	if err != nil {
		t.Fatal(err)
	}
	strict, _ := NewPolicy(p, Overrides{})
	runBodyCases(t, strict, req, nil, []bodyCase{
		{name: "uid", body: []byte(`{"User":"1000"}`), allow: true},
		{name: "root", body: []byte(`{"User":"0:0"}`), status: no, code: ReasonBodyDenied},
		{name: "inherited user", body: []byte(`{"Cmd":["id"]}`), status: no, code: ReasonBodyDenied},
	})
}

func TestInspectImageCreate(t *testing.T) {
	pol := runnerTenant(t)
	pull := func(q string) Request {
		return mustReq("POST", "/images/create?"+q)
	}
	auth := base64.URLEncoding.EncodeToString([]byte(`{"username":"u","password":"s3cr3t-token","serveraddress":"ghcr.io"}`))
	tests := []struct {
		name   string
		query  string
		header http.Header
		allow  bool
		status int
		code   ReasonCode
	}{
		{name: "docker pull alpine", query: "fromImage=alpine&tag=3.20", allow: true},
		{name: "ghcr", query: "fromImage=ghcr.io%2Forg%2Fapp&tag=1", header: http.Header{"X-Registry-Auth": {auth}}, allow: true},
		{name: "raw std auth", query: "fromImage=alpine", header: http.Header{"X-Registry-Auth": {base64.RawStdEncoding.EncodeToString([]byte(`{}`))}}, allow: true},
		{name: "bad auth", query: "fromImage=alpine", header: http.Header{"X-Registry-Auth": {"not base64 s3cr3t-token!"}}, status: 400, code: ReasonMalformed},
		{name: "auth not JSON", query: "fromImage=alpine", header: http.Header{"X-Registry-Auth": {base64.StdEncoding.EncodeToString([]byte("s3cr3t-token"))}}, status: 400, code: ReasonMalformed},
		{name: "two auth headers", query: "fromImage=alpine", header: http.Header{"X-Registry-Auth": {auth, auth}}, status: 400, code: ReasonMalformed},
		{name: "import", query: "fromSrc=-&repo=x", status: 403, code: ReasonBodyDenied},
		{name: "import from URL", query: "fromSrc=http%3A%2F%2F169.254.169.254%2F", status: 403, code: ReasonBodyDenied},
		{name: "no fromImage", query: "", status: 403, code: ReasonBodyDenied},
		{name: "repeated fromImage", query: "fromImage=alpine&fromImage=evil.io/x", status: 400, code: ReasonMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.header
			if h == nil {
				h = http.Header{}
			}
			d, nb := pol.InspectBody(pull(tc.query), h, nil)
			checkSubject(t, d)
			if d.Allow != tc.allow || nb != nil || (!d.Allow && (d.Status != tc.status || d.Code != tc.code)) {
				t.Fatalf("got %+v", d)
			}
			if strings.Contains(d.Reason, "s3cr3t") || strings.Contains(d.Reason, auth) {
				t.Fatalf("reason leaks the credential: %q", d.Reason)
			}
		})
	}

	p, err := ParsePreset("registries", []byte(`rules:
  - {method: POST, path: /images/create}
images: {allowed_registries: [docker.io, ghcr.io, "*.dkr.ecr.us-east-1.amazonaws.com", "localhost:5000"]}
`))
	if err != nil {
		t.Fatal(err)
	}
	reg, _ := NewPolicy(p, Overrides{})
	for _, tc := range []struct {
		name  string
		image string
		allow bool
	}{
		{"library", "alpine", true},
		{"docker hub user", "bitnami/redis", true},
		{"explicit docker.io", "docker.io/library/alpine", true},
		{"index.docker.io", "index.docker.io/library/alpine", true},
		{"ghcr", "ghcr.io/org/app", true},
		{"GHCR upper", "GHCR.IO/org/app", true},
		{"ecr", "123.dkr.ecr.us-east-1.amazonaws.com/app", true},
		{"ecr other region", "123.dkr.ecr.eu-west-1.amazonaws.com/app", false},
		{"localhost port", "localhost:5000/app", true},
		{"localhost other port", "localhost:5001/app", false},
		{"quay", "quay.io/x/y", false},
		{"upper-case first component is a registry", "Evil/app", false},
		{"suffix trick", "evilghcr.io/app", false},
		{"digest", "ghcr.io/org/app@sha256:" + strings.Repeat("a", 64), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := reg.InspectBody(pull("fromImage="+url.QueryEscape(tc.image)), http.Header{}, nil)
			if d.Allow != tc.allow {
				t.Fatalf("%s: %+v", tc.image, d)
			}
			if !d.Allow && (d.Code != ReasonBodyDenied || !strings.Contains(d.Reason, "fromImage")) {
				t.Fatalf("denial %+v", d)
			}
		})
	}
}

func TestInspectVolumeCreate(t *testing.T) {
	pol := runnerTenant(t)
	req := mustReq("POST", "/volumes/create")
	const no = http.StatusForbidden
	runBodyCases(t, pol, req, nil, []bodyCase{
		{name: "docker volume create", body: []byte(`{"Driver":"local","DriverOpts":{},"Labels":{"a":"b"},"Name":"cache"}`), allow: true},
		{name: "default driver", body: []byte(`{"Name":"cache"}`), allow: true},
		{name: "tmpfs volume", body: []byte(`{"Name":"t","DriverOpts":{"type":"tmpfs","device":"tmpfs","o":"size=100m"}}`), allow: true},
		// nfs: the host kernel would connect out from the host's network namespace.
		{name: "nfs volume", body: []byte(`{"Name":"n","DriverOpts":{"type":"nfs","o":"addr=10.0.0.1,rw","device":":/export"}}`), status: no, code: ReasonBindMount, reason: `DriverOpts["device"]`},
		{name: "bind volume", body: []byte(`{"Name":"etc","DriverOpts":{"type":"none","o":"bind","device":"/etc"}}`), status: no, code: ReasonBindMount, reason: "DriverOpts"},
		{name: "o bind only", body: []byte(`{"DriverOpts":{"o":"bind"}}`), status: no, code: ReasonBindMount},
		{name: "TYPE NONE", body: []byte(`{"DriverOpts":{"TYPE":"NONE"}}`), status: no, code: ReasonBindMount},
		{name: "block device", body: []byte(`{"DriverOpts":{"type":"ext4","device":"/dev/sda1"}}`), status: no, code: ReasonBindMount},
		{name: "plugin driver", body: []byte(`{"Driver":"rexray/ebs"}`), status: no, code: ReasonBodyDenied, reason: "Driver"},
		{name: "cluster volume", body: []byte(`{"ClusterVolumeSpec":{"Group":"x"}}`), status: no, code: ReasonBodyDenied},
		{name: "driver opts differ by case", body: []byte(`{"DriverOpts":{"size":"1","SIZE":"2"}}`), status: no, code: ReasonBindMount, reason: `DriverOpts["SIZE"]`},
		{name: "folded field", body: []byte(`{"Driver":"local","driver":"rexray"}`), status: http.StatusBadRequest, code: ReasonMalformed},
	})
}

func TestInspectNetwork(t *testing.T) {
	pol := runnerTenant(t)
	create := mustReq("POST", "/networks/create")
	const no = http.StatusForbidden
	runBodyCases(t, pol, create, nil, []bodyCase{
		// docker network create --label x github_network_1
		{name: "docker network create", body: []byte(`{"Name":"github_network_1","CheckDuplicate":true,"Driver":"bridge","Scope":"","EnableIPv6":false,"IPAM":{"Driver":"default","Options":{},"Config":[]},"Internal":false,"Attachable":false,"Ingress":false,"ConfigOnly":false,"ConfigFrom":null,"Options":{},"Labels":{"x":""}}`), allow: true},
		{name: "empty", body: nil, allow: true},
		{name: "macvlan", body: []byte(`{"Name":"n","Driver":"macvlan"}`), status: no, code: ReasonBodyDenied, reason: `Driver "macvlan"`},
		{name: "subnet", body: []byte(`{"Name":"n","IPAM":{"Config":[{"Subnet":"10.9.0.0/16"}]}}`), status: no, code: ReasonBodyDenied, reason: "IPAM.Config"},
		{name: "ipam driver", body: []byte(`{"Name":"n","IPAM":{"Driver":"custom"}}`), status: no, code: ReasonBodyDenied},
		{name: "bridge name option", body: []byte(`{"Name":"n","Options":{"com.docker.network.bridge.name":"docker0"}}`), status: no, code: ReasonBodyDenied, reason: "com.docker.network.bridge.name"},
		{name: "ingress", body: []byte(`{"Name":"n","Ingress":true}`), status: no, code: ReasonBodyDenied},
		{name: "config from", body: []byte(`{"Name":"n","ConfigFrom":{"Network":"cfg"}}`), status: no, code: ReasonBodyDenied},
		{name: "folded", body: []byte(`{"Driver":"bridge","DRIVER":"macvlan"}`), status: http.StatusBadRequest, code: ReasonMalformed},
	})
	connect := mustReq("POST", "/networks/n1/connect")
	runBodyCases(t, pol, connect, nil, []bodyCase{
		{name: "docker network connect", body: []byte(`{"Container":"job","EndpointConfig":{"Aliases":["svc"]}}`), allow: true},
		{name: "--ip", body: []byte(`{"Container":"job","EndpointConfig":{"IPAMConfig":{"IPv4Address":"10.0.0.9"}}}`), status: no, code: ReasonBodyDenied, reason: "EndpointConfig.IPAMConfig"},
		{name: "--link-local-ip", body: []byte(`{"Container":"job","EndpointConfig":{"IPAMConfig":{"LinkLocalIPs":["169.254.1.1"]}}}`), status: no, code: ReasonBodyDenied},
		{name: "mac", body: []byte(`{"Container":"job","EndpointConfig":{"MacAddress":"02:42:ac:11:00:02"}}`), status: no, code: ReasonBodyDenied},
		{name: "folded container", body: []byte(`{"Container":"job","container":"other"}`), status: http.StatusBadRequest, code: ReasonMalformed},
	})
}

func TestBodyPolicy(t *testing.T) {
	pol := runnerTenant(t)
	tests := []struct {
		method, path string
		inspect      bool
	}{
		{"POST", "/containers/create", true},
		{"POST", "/containers/x/exec", true},
		{"POST", "/containers/x/update", true},
		{"POST", "/containers/x/start", true},
		{"POST", "/images/create", true},
		{"POST", "/volumes/create", true},
		{"POST", "/networks/create", true},
		{"POST", "/networks/x/connect", true},
		{"POST", "/networks/x/disconnect", true},
		{"POST", "/exec/x/start", true},
		{"POST", "/exec/x/resize", false},
		{"GET", "/containers/create", false},
		// The reference runs to the last segment: the broker forwards (and
		// so judges) /containers/{id}/exec, whose body is an exec create.
		{"POST", "/containers/x/y/exec", true},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			inspect, limit := pol.BodyPolicy(mustReq(tc.method, tc.path))
			if inspect != tc.inspect || (inspect && limit != 1<<20) {
				t.Fatalf("BodyPolicy = %v, %d", inspect, limit)
			}
		})
	}
}

func TestEvaluate(t *testing.T) {
	pol := runnerTenant(t)
	tests := []struct {
		name   string
		method string
		target string
		body   string
		allow  bool
		code   ReasonCode
		status int
		reason string
	}{
		{name: "ping", method: "GET", target: "/v1.41/_ping", allow: true},
		{name: "privileged run", method: "POST", target: "/v1.41/containers/create?name=x", body: `{"HostConfig":{"Privileged":true}}`, code: ReasonPrivileged, status: 403},
		{name: "create without body", method: "POST", target: "/v1.41/containers/create", allow: true},
		{name: "rewrite reported", method: "POST", target: "/v1.41/containers/create", body: `{"HostConfig":{"Binds":["/var/run/docker.sock:/var/run/docker.sock"]}}`, allow: true, reason: "rewritten"},
		{name: "encoded dotdot build", method: "POST", target: "/v1.41/containers/%2e%2e/build", code: ReasonRuleDenied, status: 403, reason: "image builds"},
		{name: "bad target", method: "GET", target: "_ping", code: ReasonMalformed, status: 400},
		{name: "nul in path", method: "GET", target: "/_ping%00", code: ReasonMalformed, status: 400},
		{name: "too large", method: "POST", target: "/volumes/create", body: `{"Name":"` + strings.Repeat("a", 1<<20) + `"}`, code: ReasonBodyTooLarge, status: 413},
		{name: "pull denied import", method: "POST", target: "/images/create?fromSrc=-", code: ReasonBodyDenied, status: 403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			_, d := pol.Evaluate(tc.method, tc.target, nil, body)
			checkSubject(t, d)
			if d.Allow != tc.allow || (!d.Allow && (d.Code != tc.code || d.Status != tc.status)) || !strings.Contains(d.Reason, tc.reason) {
				t.Fatalf("got %+v", d)
			}
		})
	}
}

func TestFoldKey(t *testing.T) {
	words := []string{"Privileged", "privileged", "PRIVILEGED", "Sysctls", "\u017fysctls", "Kelvin", "\u212aelvin", "kelvin", "Straße", "STRASSE", "ǅ", "ǆ", "Ǆ", "Σ", "σ", "ς", "a", "b", ""}
	for _, a := range words {
		for _, b := range words {
			if (foldKey(a) == foldKey(b)) != strings.EqualFold(a, b) {
				t.Errorf("foldKey(%q)==foldKey(%q) is %v, EqualFold is %v", a, b, foldKey(a) == foldKey(b), strings.EqualFold(a, b))
			}
		}
	}
}

// fuzzJSONInspector checks the invariants every JSON inspector must keep:
// no panic, a denial never carries a body, statuses are 400/403/413, and an
// accepted body decodes (as dockerd would) deterministically into the typed struct.
func fuzzJSONInspector[T any](f *testing.F, req Request, seeds []string, check func(t *testing.T, v *T)) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	pol := runnerTenant(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		d, nb := pol.InspectBody(req, http.Header{}, body)
		checkSubject(t, d)
		if nb != nil {
			t.Fatal("unexpected new body")
		}
		if !d.Allow {
			if d.Status != 400 && d.Status != 403 && d.Status != 413 {
				t.Fatalf("status %d", d.Status)
			}
			return
		}
		var v, again T
		if strings.TrimSpace(string(body)) != "" {
			if err := json.Unmarshal(body, &v); err != nil {
				t.Fatalf("accepted body does not decode: %v", err)
			}
			_ = json.Unmarshal(body, &again)
			if !reflect.DeepEqual(v, again) {
				t.Fatal("typed decode is not deterministic")
			}
		}
		check(t, &v)
	})
}

func FuzzInspectExecCreate(f *testing.F) {
	fuzzJSONInspector(f, mustReq("POST", "/containers/x/exec"),
		[]string{`{"Cmd":["sh"],"Tty":true}`, `{"Privileged":true}`, `{"privileged":false,"Privileged":true}`, `{"WorkingDir":"/proc/self/fd/3"}`},
		func(t *testing.T, v *execCreateBody) {
			if v.Privileged {
				t.Fatal("accepted a privileged exec")
			}
		})
}

func FuzzInspectVolumeCreate(f *testing.F) {
	fuzzJSONInspector(f, mustReq("POST", "/volumes/create"),
		[]string{`{"Name":"v","Driver":"local","DriverOpts":{"type":"none","o":"bind","device":"/etc"}}`, `{"DriverOpts":{"type":"tmpfs"}}`, `{"Driver":"x"}`,
			`{"DriverOpts":{"type":"tmpfs","device":"tmpfs","o":"size=1m"}}`, `{"DriverOpts":{"type":"ext4","device":"//dev/sda"}}`, `{"Name":"v","Frobnicate":1}`},
		func(t *testing.T, v *volumeCreateBody) {
			if v.Driver != "" && v.Driver != "local" {
				t.Fatalf("accepted driver %q", v.Driver)
			}
			if len(v.DriverOpts) > 0 && (v.DriverOpts["type"] != "tmpfs" || v.DriverOpts["device"] != "tmpfs") {
				t.Fatalf("accepted local options that are not a tmpfs: %v", v.DriverOpts)
			}
			for k, val := range v.DriverOpts {
				if strings.EqualFold(k, "o") && strings.Contains(strings.ToLower(val), "bind") && !strings.Contains(strings.ToLower(val), "bind=") {
					for _, o := range strings.Split(val, ",") {
						if strings.EqualFold(o, "bind") {
							t.Fatalf("accepted bind options %q", val)
						}
					}
				}
			}
		})
}

func FuzzInspectNetworkCreate(f *testing.F) {
	fuzzJSONInspector(f, mustReq("POST", "/networks/create"),
		[]string{`{"Name":"n","Driver":"bridge","IPAM":{"Driver":"default","Config":[]},"Options":{}}`, `{"Driver":"macvlan"}`, `{"IPAM":{"Config":[{"Subnet":"10.0.0.0/8"}]}}`},
		func(t *testing.T, v *networkCreateBody) {
			if v.Driver != "" && v.Driver != "bridge" || len(v.Options) > 0 || (v.IPAM != nil && len(v.IPAM.Config) > 0) {
				t.Fatalf("accepted %+v", v)
			}
		})
}

func FuzzInspectNetworkConnect(f *testing.F) {
	fuzzJSONInspector(f, mustReq("POST", "/networks/n/connect"),
		[]string{`{"Container":"c","EndpointConfig":{"Aliases":["a"]}}`, `{"EndpointConfig":{"IPAMConfig":{"IPv4Address":"10.0.0.2"}}}`},
		func(t *testing.T, v *networkConnectBody) {
			if ep := v.EndpointConfig; ep != nil && ep.IPAMConfig != nil && (ep.IPAMConfig.IPv4Address != "" || ep.IPAMConfig.IPv6Address != "") {
				t.Fatalf("accepted a static address %+v", ep.IPAMConfig)
			}
		})
}

func FuzzInspectContainerUpdate(f *testing.F) {
	fuzzJSONInspector(f, mustReq("POST", "/containers/x/update"),
		[]string{`{"Memory":1048576}`, `{"Devices":[{"PathOnHost":"/dev/sda"}]}`, `{"CgroupParent":"x"}`},
		func(t *testing.T, v *resourcesBody) {
			if len(v.Devices) > 0 || v.CgroupParent != "" {
				t.Fatalf("accepted %+v", v)
			}
		})
}

func FuzzInspectImageCreate(f *testing.F) {
	f.Add("fromImage=alpine&tag=3", "e30=")
	f.Add("fromSrc=-", "")
	f.Add("fromImage=evil.io%2Fx", "!!")
	pol := mustPolicy(f, "github-actions-runner", Overrides{})
	f.Fuzz(func(t *testing.T, rawQuery, auth string) {
		req, err := Canonicalize("POST", "/images/create", rawQuery)
		if err != nil {
			return
		}
		h := http.Header{}
		if auth != "" {
			h.Set("X-Registry-Auth", auth)
		}
		d, nb := pol.InspectBody(req, h, nil)
		checkSubject(t, d)
		if nb != nil {
			t.Fatal("new body")
		}
		if strings.Contains(d.Reason, "X-Registry-Auth") && d.Reason != "X-Registry-Auth header is not base64-encoded JSON" && d.Reason != "X-Registry-Auth header is repeated" {
			t.Fatalf("reason about the auth header is not a constant: %q", d.Reason)
		}
		if len(auth) >= 16 && strings.Contains(d.Reason, auth) {
			t.Fatalf("reason leaks the auth header: %q", d.Reason)
		}
		if d.Allow && req.Param("fromImage") == "" {
			t.Fatal("allowed an import")
		}
	})
}
