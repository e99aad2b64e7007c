package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
	"go.yaml.in/yaml/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func testSockets() []*sockguardv1.Socket {
	return []*sockguardv1.Socket{
		{
			Name: "runner-1", TenantId: "t-1", Path: "/run/sockguard/runner-1/sockguard.sock",
			Preset: "github-actions-runner", OwnerUid: 1001, OwnerGid: 1001, FileMode: 0o660,
			AllowedPeers: &sockguardv1.AllowedPeers{Uids: []uint32{1001}, Gids: []uint32{2000}},
			State:        sockguardv1.SocketState_SOCKET_STATE_SERVING,
			Counters:     &sockguardv1.SocketCounters{RequestsAllowed: 42, RequestsDenied: 3},
			CreateTime:   timestamppb.New(testNow.Add(-2 * time.Hour)),
		},
		{
			Name: "runner-2", TenantId: "t-2", Path: "/run/sockguard/runner-2/sockguard.sock",
			Preset: "readonly", FileMode: 0o600, PolicyMode: sockguardv1.PolicyMode_POLICY_MODE_AUDIT,
			State: sockguardv1.SocketState_SOCKET_STATE_FAILED, StateMessage: "listen: address in use",
		},
	}
}

func testDenials(n int) []*sockguardv1.Denial {
	out := make([]*sockguardv1.Denial, n)
	for i := range out {
		out[i] = &sockguardv1.Denial{
			Id: uint64(n - i), Time: timestamppb.New(testNow.Add(-time.Duration(i) * time.Minute)),
			Socket: "runner-1", PeerUid: 1001, PeerGid: 1001, PeerPid: int32(4000 + i),
			Method: "POST", Path: "/containers/create",
			ReasonCode: sockguardv1.DenialReason_DENIAL_REASON_PRIVILEGED,
			Reason:     fmt.Sprintf("privileged containers are not allowed (record %d)", i),
		}
	}
	return out
}

func TestCreateSocket(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     *sockguardv1.Socket // request socket, when the call is made
		wantErr  string
	}{
		{
			name: "all flags",
			args: []string{"create-socket", "--preset", "github-actions-runner", "--owner", "1001:1002", "--mode", "0640",
				"--allow-bind", "/srv/cache:ro", "--allow-bind", "/work", "--allow-uid", "1001", "--allow-uid", "1003,1004",
				"--allow-gid", "2000", "--policy-mode", "audit", "runner-1"},
			want: &sockguardv1.Socket{
				Name: "runner-1", Preset: "github-actions-runner", OwnerUid: 1001, OwnerGid: 1002, FileMode: 0o640,
				Overrides: &sockguardv1.SocketOverrides{AllowedBindRoots: []*sockguardv1.BindRoot{
					{Path: "/srv/cache", ReadOnly: true}, {Path: "/work"},
				}},
				AllowedPeers: &sockguardv1.AllowedPeers{Uids: []uint32{1001, 1003, 1004}, Gids: []uint32{2000}},
				PolicyMode:   sockguardv1.PolicyMode_POLICY_MODE_AUDIT,
			},
		},
		{
			name: "flags after the name",
			args: []string{"create-socket", "runner-1", "--preset", "x", "--mode", "600"},
			want: &sockguardv1.Socket{Name: "runner-1", Preset: "x", FileMode: 0o600},
		},
		{
			name: "minimal",
			args: []string{"create-socket", "--preset=x", "runner-1"},
			want: &sockguardv1.Socket{Name: "runner-1", Preset: "x"},
		},
		{name: "missing preset", args: []string{"create-socket", "runner-1"}, wantCode: exitUsage, wantErr: "--preset is required"},
		{name: "missing name", args: []string{"create-socket", "--preset", "x"}, wantCode: exitUsage, wantErr: "missing socket NAME"},
		{name: "two names", args: []string{"create-socket", "a", "b", "--preset", "x"}, wantCode: exitUsage, wantErr: `unexpected argument "b"`},
		{name: "owner without gid", args: []string{"create-socket", "r", "--preset", "x", "--owner", "1001"}, wantCode: exitUsage, wantErr: "want UID:GID"},
		{name: "owner by name", args: []string{"create-socket", "r", "--preset", "x", "--owner", "runner:runner"}, wantCode: exitUsage, wantErr: "want UID:GID"},
		{name: "mode not octal", args: []string{"create-socket", "r", "--preset", "x", "--mode", "0689"}, wantCode: exitUsage, wantErr: "octal"},
		{name: "mode too large", args: []string{"create-socket", "r", "--preset", "x", "--mode", "4755"}, wantCode: exitUsage, wantErr: "octal"},
		{name: "mode zero", args: []string{"create-socket", "r", "--preset", "x", "--mode", "0"}, wantCode: exitUsage, wantErr: "unusable"},
		{name: "uid not numeric", args: []string{"create-socket", "r", "--preset", "x", "--allow-uid", "root"}, wantCode: exitUsage, wantErr: `"root" is not a numeric id`},
		{name: "uid negative", args: []string{"create-socket", "r", "--preset", "x", "--allow-uid", "-1"}, wantCode: exitUsage, wantErr: "not a numeric id"},
		{name: "relative bind", args: []string{"create-socket", "r", "--preset", "x", "--allow-bind", "srv"}, wantCode: exitUsage, wantErr: "absolute"},
		{name: "bad policy mode", args: []string{"create-socket", "r", "--preset", "x", "--policy-mode", "loose"}, wantCode: exitUsage, wantErr: "enforce or audit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeBroker{}
			res := sgctl(t, startBroker(t, f), tt.args...)
			if res.code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr: %s", res.code, tt.wantCode, res.stderr)
			}
			reqs := requests[*sockguardv1.CreateSocketRequest](f)
			if tt.want == nil {
				if len(reqs) != 0 {
					t.Errorf("broker was called on a usage error")
				}
				if !strings.HasPrefix(res.stderr, "sgctl: ") || !strings.Contains(res.stderr, tt.wantErr) ||
					strings.Count(res.stderr, "\n") != 1 {
					t.Errorf("stderr %q: want one line containing %q", res.stderr, tt.wantErr)
				}
				return
			}
			if len(reqs) != 1 {
				t.Fatalf("%d CreateSocket calls, want 1", len(reqs))
			}
			if !proto.Equal(reqs[0].GetSocket(), tt.want) {
				t.Errorf("request socket\n got %v\nwant %v", reqs[0].GetSocket(), tt.want)
			}
			wantPath := "/run/sockguard/runner-1/sockguard.sock"
			if !strings.Contains(res.stdout, "path:") || !strings.Contains(res.stdout, "export DOCKER_HOST=unix://"+wantPath) {
				t.Errorf("stdout lacks the path or the DOCKER_HOST hint:\n%s", res.stdout)
			}
		})
	}
}

func TestListSockets(t *testing.T) {
	sock := startBroker(t, &fakeBroker{sockets: testSockets()})
	tests := []struct {
		name string
		args []string
		want []string // lines, fields separated by single spaces
	}{
		{
			name: "table",
			args: []string{"list-sockets"},
			want: []string{
				"NAME PRESET MODE STATE PATH ALLOWED DENIED",
				"runner-1 github-actions-runner enforce serving /run/sockguard/runner-1/sockguard.sock 42 3",
				"runner-2 readonly audit failed /run/sockguard/runner-2/sockguard.sock 0 0",
				"runner-2 failed: listen: address in use",
			},
		},
		{name: "quiet", args: []string{"ls", "-q"}, want: []string{"runner-1", "runner-2"}},
		{name: "quiet long", args: []string{"ls", "--quiet"}, want: []string{"runner-1", "runner-2"}},
		{name: "quiet beats json", args: []string{"-o", "json", "ls", "-q"}, want: []string{"runner-1", "runner-2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := sgctl(t, sock, tt.args...)
			if res.code != 0 {
				t.Fatalf("exit %d: %s", res.code, res.stderr)
			}
			var got []string
			for _, l := range strings.Split(strings.TrimRight(res.stdout, "\n"), "\n") {
				got = append(got, strings.Join(strings.Fields(l), " "))
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestInspectSocket(t *testing.T) {
	sock := startBroker(t, &fakeBroker{sockets: testSockets()})
	tests := []struct {
		name string
		want []string
	}{
		{"runner-1", []string{"owner: 1001:1001", "file mode: 0660", "peers: uid 1001; gid 2000", "state: serving",
			"requests: 42 allowed, 3 denied", "tenant id: t-1", "created: ", "(2h0m0s ago)", "bind roots: none beyond the preset"}},
		{"runner-2", []string{"file mode: 0600", "peers: any process that can open the socket file (owner/mode are the only gate)",
			"state: failed: listen: address in use", "policy mode: audit"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := sgctl(t, sock, "inspect-socket", tt.name)
			if res.code != 0 {
				t.Fatalf("exit %d: %s", res.code, res.stderr)
			}
			flat := regexpSpaces(res.stdout)
			for _, w := range tt.want {
				if !strings.Contains(flat, w) {
					t.Errorf("output lacks %q:\n%s", w, res.stdout)
				}
			}
		})
	}
}

// regexpSpaces collapses runs of spaces so aligned "key:   value" reads
// "key: value".
func regexpSpaces(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.Join(strings.Fields(l), " ")
	}
	return strings.Join(lines, "\n")
}

func TestUpdateSocket(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		wantCode  int
		wantMask  []string
		wantSock  *sockguardv1.Socket
		wantCalls int // GetSocket calls
	}{
		{
			name:     "preset and mode",
			args:     []string{"update-socket", "runner-1", "--preset", "strict", "--policy-mode", "enforce"},
			wantMask: []string{"preset", "policy_mode"},
			wantSock: &sockguardv1.Socket{Name: "runner-1", Preset: "strict", PolicyMode: sockguardv1.PolicyMode_POLICY_MODE_ENFORCE},
		},
		{
			name:     "binds",
			args:     []string{"update-socket", "--allow-bind", "/cache:ro", "runner-1"},
			wantMask: []string{"overrides"},
			wantSock: &sockguardv1.Socket{Name: "runner-1", Overrides: &sockguardv1.SocketOverrides{
				AllowedBindRoots: []*sockguardv1.BindRoot{{Path: "/cache", ReadOnly: true}}}},
		},
		{
			name:     "clear binds",
			args:     []string{"update-socket", "runner-1", "--clear-binds"},
			wantMask: []string{"overrides"},
			wantSock: &sockguardv1.Socket{Name: "runner-1", Overrides: &sockguardv1.SocketOverrides{}},
		},
		{
			name:      "uids keep gids",
			args:      []string{"update-socket", "runner-1", "--allow-uid", "7"},
			wantMask:  []string{"allowed_peers"},
			wantSock:  &sockguardv1.Socket{Name: "runner-1", AllowedPeers: &sockguardv1.AllowedPeers{Uids: []uint32{7}, Gids: []uint32{2000}}},
			wantCalls: 1,
		},
		{
			name:     "both peer lists",
			args:     []string{"update-socket", "runner-1", "--allow-uid", "7", "--allow-gid", "8"},
			wantMask: []string{"allowed_peers"},
			wantSock: &sockguardv1.Socket{Name: "runner-1", AllowedPeers: &sockguardv1.AllowedPeers{Uids: []uint32{7}, Gids: []uint32{8}}},
		},
		{
			name:     "any peer",
			args:     []string{"update-socket", "runner-1", "--any-peer"},
			wantMask: []string{"allowed_peers"},
			wantSock: &sockguardv1.Socket{Name: "runner-1", AllowedPeers: &sockguardv1.AllowedPeers{}},
		},
		{name: "nothing", args: []string{"update-socket", "runner-1"}, wantCode: exitUsage},
		{name: "contradiction", args: []string{"update-socket", "runner-1", "--any-peer", "--allow-uid", "1"}, wantCode: exitUsage},
		{name: "owner is not updatable", args: []string{"update-socket", "runner-1", "--owner", "1:1"}, wantCode: exitUsage},
		{name: "unknown socket", args: []string{"update-socket", "nope", "--preset", "x"}, wantCode: exitFailure},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeBroker{sockets: testSockets()}
			res := sgctl(t, startBroker(t, f), tt.args...)
			if res.code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr: %s", res.code, tt.wantCode, res.stderr)
			}
			if tt.wantSock == nil {
				return
			}
			reqs := requests[*sockguardv1.UpdateSocketRequest](f)
			if len(reqs) != 1 {
				t.Fatalf("%d UpdateSocket calls, want 1", len(reqs))
			}
			if got := reqs[0].GetUpdateMask().GetPaths(); !reflect.DeepEqual(got, tt.wantMask) {
				t.Errorf("mask %v, want %v", got, tt.wantMask)
			}
			if !proto.Equal(reqs[0].GetSocket(), tt.wantSock) {
				t.Errorf("socket\n got %v\nwant %v", reqs[0].GetSocket(), tt.wantSock)
			}
			if got := len(requests[*sockguardv1.GetSocketRequest](f)); got != tt.wantCalls {
				t.Errorf("%d GetSocket calls, want %d", got, tt.wantCalls)
			}
		})
	}
}

func TestDenialsPaging(t *testing.T) {
	tests := []struct {
		name      string
		total     int
		maxPage   int
		args      []string
		wantRows  int
		wantCalls int
	}{
		{name: "default limit 50 over pages of 20", total: 120, maxPage: 20, args: nil, wantRows: 50, wantCalls: 3},
		{name: "limit 25", total: 120, maxPage: 20, args: []string{"--limit", "25"}, wantRows: 25, wantCalls: 2},
		{name: "limit 0 means all", total: 120, maxPage: 50, args: []string{"--limit", "0"}, wantRows: 120, wantCalls: 3},
		{name: "fewer than limit", total: 7, maxPage: 5, args: nil, wantRows: 7, wantCalls: 2},
		{name: "none", total: 0, args: nil, wantRows: 0, wantCalls: 1},
	}
	for _, tt := range tests {
		for _, output := range []string{"table", "json"} {
			t.Run(tt.name+"/"+output, func(t *testing.T) {
				f := &fakeBroker{denials: testDenials(tt.total), maxPage: tt.maxPage}
				res := sgctl(t, startBroker(t, f), append([]string{"-o", output, "denials"}, tt.args...)...)
				if res.code != 0 {
					t.Fatalf("exit %d: %s", res.code, res.stderr)
				}
				reqs := requests[*sockguardv1.ListDenialsRequest](f)
				if len(reqs) != tt.wantCalls {
					t.Errorf("%d ListDenials calls, want %d", len(reqs), tt.wantCalls)
				}
				for i, r := range reqs {
					if r.GetPageSize() <= 0 || r.GetPageSize() > 1000 {
						t.Errorf("call %d: page_size %d", i, r.GetPageSize())
					}
					if (i == 0) != (r.GetPageToken() == "") {
						t.Errorf("call %d: page_token %q", i, r.GetPageToken())
					}
				}
				var ids []uint64
				if output == "json" {
					var resp sockguardv1.ListDenialsResponse
					if err := unmarshalStructured([]byte(res.stdout), &resp); err != nil {
						t.Fatalf("stdout is not a ListDenialsResponse: %v\n%s", err, res.stdout)
					}
					if resp.GetNextPageToken() != "" {
						t.Errorf("json carries a page token")
					}
					if !strings.Contains(res.stdout, `"denials"`) {
						t.Errorf("json lacks the denials key: %s", res.stdout)
					}
					for _, d := range resp.GetDenials() {
						ids = append(ids, d.GetId())
					}
				} else {
					lines := strings.Split(strings.TrimRight(res.stdout, "\n"), "\n")
					if !strings.HasPrefix(lines[0], "TIME") {
						t.Errorf("no header: %q", lines[0])
					}
					for range lines[1:] {
						ids = append(ids, 0)
					}
				}
				if len(ids) != tt.wantRows {
					t.Errorf("%d records, want %d", len(ids), tt.wantRows)
				}
				if output == "json" {
					for i, id := range ids {
						if want := uint64(tt.total - i); id != want {
							t.Fatalf("record %d has id %d, want %d (order or duplicates)", i, id, want)
						}
					}
				}
			})
		}
	}
}

func TestDenialsFilters(t *testing.T) {
	f := &fakeBroker{denials: testDenials(3)}
	res := sgctl(t, startBroker(t, f), "denials", "--socket", "runner-1", "--reason", "host-namespace",
		"--method", "post", "--path", "/containers", "--since", "1h", "--until", "2026-03-01T11:30:00Z")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	want := &sockguardv1.ListDenialsRequest{
		Socket: "runner-1", PageSize: 50, ReasonCode: sockguardv1.DenialReason_DENIAL_REASON_HOST_NAMESPACE,
		Method: "POST", PathPrefix: "/containers",
		StartTime: timestamppb.New(testNow.Add(-time.Hour)),
		EndTime:   timestamppb.New(time.Date(2026, 3, 1, 11, 30, 0, 0, time.UTC)),
	}
	if got := requests[*sockguardv1.ListDenialsRequest](f); len(got) != 1 || !proto.Equal(got[0], want) {
		t.Errorf("requests %v\nwant %v", got, want)
	}
	flat := regexpSpaces(res.stdout)
	if !strings.Contains(flat, "1001/1001/4000 POST /containers/create privileged: privileged containers") {
		t.Errorf("row not as expected:\n%s", res.stdout)
	}

	for _, bad := range [][]string{
		{"--reason", "sneaky"}, {"--since", "yesterday"}, {"--since", "-1h"}, {"--limit", "-1"},
		{"--since", "1h", "--until", "2h"}, {"--follow", "--since", "1h"}, {"extra"}, {"--after", "3"},
	} {
		res := sgctl(t, startBroker(t, &fakeBroker{}), append([]string{"denials"}, bad...)...)
		if res.code != exitUsage {
			t.Errorf("denials %v: exit %d, want %d (stderr %q)", bad, res.code, exitUsage, res.stderr)
		}
	}
}

func TestDenialsTableSanitizesAndTruncates(t *testing.T) {
	d := testDenials(1)
	d[0].Path = "/containers/\x1b[2Jevil\n"
	d[0].Reason = strings.Repeat("long reason ", 20)
	d[0].PolicyMode = sockguardv1.PolicyMode_POLICY_MODE_AUDIT
	res := sgctl(t, startBroker(t, &fakeBroker{denials: d}), "denials")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	if strings.Contains(res.stdout, "\x1b") || strings.Count(res.stdout, "\n") != 2 {
		t.Errorf("control characters reached the table:\n%q", res.stdout)
	}
	if !strings.Contains(res.stdout, `\x1b[2Jevil\n`) || !strings.Contains(res.stdout, "privileged (audit): long reason") ||
		!strings.HasSuffix(strings.TrimRight(res.stdout, "\n"), "...") {
		t.Errorf("unexpected row:\n%s", res.stdout)
	}
	res = sgctl(t, startBroker(t, &fakeBroker{denials: d}), "-o", "json", "denials")
	if !strings.Contains(res.stdout, strings.TrimSpace(d[0].Reason)) {
		t.Errorf("json reason truncated:\n%s", res.stdout)
	}
}

func TestDenialsFollow(t *testing.T) {
	watch := testDenials(4)
	watch[1].Method = "GET" // filtered out by --method POST
	f := &fakeBroker{watch: watch}
	sock := startBroker(t, f)

	res := sgctl(t, sock, "-o", "json", "denials", "--follow", "--socket", "runner-1", "--method", "POST", "--limit", "3", "--after", "17")
	if res.code != 0 {
		t.Fatalf("exit %d: %s", res.code, res.stderr)
	}
	lines := strings.Split(strings.TrimRight(res.stdout, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3:\n%s", len(lines), res.stdout)
	}
	wantIDs := []uint64{4, 2, 1}
	for i, l := range lines {
		var d sockguardv1.Denial
		if err := unmarshalStructured([]byte(l), &d); err != nil {
			t.Fatalf("line %d is not one Denial: %v: %s", i, err, l)
		}
		if d.GetId() != wantIDs[i] {
			t.Errorf("line %d: id %d, want %d", i, d.GetId(), wantIDs[i])
		}
	}
	if got := requests[*sockguardv1.WatchDenialsRequest](f); len(got) != 1 || got[0].GetSocket() != "runner-1" ||
		got[0].GetAfterId() != 17 || got[0].GetMethod() != "POST" {
		t.Errorf("watch requests %v", got)
	}

	// Without --limit, follow runs until interrupted and exits 0.
	var stdout, stderr lockedBuffer
	c := &cli{stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }, now: time.Now}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() { done <- c.main(ctx, []string{"--admin-socket", sock, "denials", "--follow"}) }()
	for deadline := time.Now().Add(10 * time.Second); strings.Count(stdout.String(), "\n") < 5 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("interrupted follow: exit %d: %s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not stop on interrupt")
	}
	if n := strings.Count(stdout.String(), "\n"); n != 5 {
		t.Errorf("%d table lines, want header + 4:\n%s", n, stdout.String())
	}
}

func TestCheckExitCodes(t *testing.T) {
	f := &fakeBroker{checkFor: func(r *sockguardv1.CheckRequestRequest) *sockguardv1.CheckRequestResponse {
		if strings.Contains(string(r.GetBody()), "Privileged") {
			return &sockguardv1.CheckRequestResponse{Allowed: false, Method: "POST", Path: "/containers/create",
				Rule: "body: privileged", Reason: "privileged containers are not allowed",
				ReasonCode: sockguardv1.DenialReason_DENIAL_REASON_PRIVILEGED}
		}
		return &sockguardv1.CheckRequestResponse{Allowed: true, Method: r.GetMethod(), Path: "/containers/json", Rule: "allow GET /containers/json"}
	}}
	sock := startBroker(t, f)
	body := filepath.Join(shortTempDir(t), "create.json")
	if err := os.WriteFile(body, []byte(`{"HostConfig":{"Privileged":true}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		stdin     string
		args      []string
		wantCode  int
		wantFirst string
	}{
		{name: "allow", args: []string{"check", "--preset", "p", "GET", "/v1.45/containers/json"}, wantCode: 0, wantFirst: "allow"},
		{name: "deny from file", args: []string{"check", "--socket", "runner-1", "POST", "/containers/create", "--body", body}, wantCode: 1, wantFirst: "deny"},
		{name: "deny from stdin", stdin: `{"HostConfig":{"Privileged":true}}`, args: []string{"check", "POST", "/containers/create", "--preset", "p", "--body", "-"}, wantCode: 1, wantFirst: "deny"},
		{name: "deny json", args: []string{"-o", "json", "check", "--preset", "p", "POST", "/containers/create", "--body", body}, wantCode: 1, wantFirst: "{"},
		{name: "neither preset nor socket", args: []string{"check", "GET", "/_ping"}, wantCode: 2},
		{name: "both preset and socket", args: []string{"check", "--preset", "p", "--socket", "s", "GET", "/_ping"}, wantCode: 2},
		{name: "missing target", args: []string{"check", "--preset", "p", "GET"}, wantCode: 2},
		{name: "missing body file", args: []string{"check", "--preset", "p", "POST", "/x", "--body", "/nonexistent/b.json"}, wantCode: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := sgctlStdin(t, sock, tt.stdin, tt.args...)
			if res.code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stdout %q stderr %q", res.code, tt.wantCode, res.stdout, res.stderr)
			}
			if tt.wantFirst != "" && !strings.HasPrefix(res.stdout, tt.wantFirst+"\n") {
				t.Errorf("stdout starts %q, want %q", res.stdout, tt.wantFirst)
			}
			if tt.wantFirst == "deny" && !strings.Contains(regexpSpaces(res.stdout), "reason code: privileged") {
				t.Errorf("deny lacks the reason code:\n%s", res.stdout)
			}
			if tt.wantCode != 2 && tt.wantFirst != "" && res.stderr != "" {
				t.Errorf("unexpected stderr %q", res.stderr)
			}
		})
	}
	reqs := requests[*sockguardv1.CheckRequestRequest](f)
	if len(reqs) < 3 || reqs[1].GetSocket() != "runner-1" || reqs[1].GetPreset() != "" ||
		string(reqs[2].GetBody()) != `{"HostConfig":{"Privileged":true}}` || reqs[0].GetTarget() != "/v1.45/containers/json" {
		t.Errorf("requests not as sent: %v", reqs)
	}
}

// TestJSONIsOneDocument runs every command with -o json and checks that
// stdout holds exactly one JSON value.
func TestJSONIsOneDocument(t *testing.T) {
	f := &fakeBroker{
		sockets: testSockets(),
		presets: []*sockguardv1.Preset{{Name: "github-actions-runner", Description: "GitHub runner", Yaml: "rules: []\n", Builtin: true}},
		denials: testDenials(3),
		checkFor: func(*sockguardv1.CheckRequestRequest) *sockguardv1.CheckRequestResponse {
			return &sockguardv1.CheckRequestResponse{Allowed: true}
		},
	}
	sock := startBroker(t, f)
	for _, args := range [][]string{
		{"create-socket", "runner-9", "--preset", "x"},
		{"list-sockets"},
		{"inspect-socket", "runner-1"},
		{"update-socket", "runner-1", "--preset", "x"},
		{"delete-socket", "runner-1"},
		{"presets"},
		{"preset", "github-actions-runner"},
		{"check", "--preset", "x", "GET", "/_ping"},
		{"denials"},
		{"status"},
		{"version"},
	} {
		t.Run(args[0], func(t *testing.T) {
			res := sgctl(t, sock, append([]string{"--output", "json"}, args...)...)
			if res.code != 0 {
				t.Fatalf("exit %d: %s", res.code, res.stderr)
			}
			dec := json.NewDecoder(strings.NewReader(res.stdout))
			var v map[string]any
			if err := dec.Decode(&v); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, res.stdout)
			}
			if err := dec.Decode(&v); !errors.Is(err, io.EOF) {
				t.Errorf("more than one JSON document: %v\n%s", err, res.stdout)
			}
			// -o yaml: one YAML document holding the same tree.
			res = sgctl(t, sock, append([]string{"--output", "yaml"}, args...)...)
			if res.code != 0 {
				t.Fatalf("yaml: exit %d: %s", res.code, res.stderr)
			}
			ydec := yaml.NewDecoder(strings.NewReader(res.stdout))
			var y map[string]any
			if err := ydec.Decode(&y); err != nil {
				t.Fatalf("not YAML: %v\n%s", err, res.stdout)
			}
			if err := ydec.Decode(&y); !errors.Is(err, io.EOF) {
				t.Errorf("more than one YAML document: %v\n%s", err, res.stdout)
			}
			if len(y) != len(v) {
				t.Errorf("yaml has %d top-level keys, json %d", len(y), len(v))
			}
		})
	}
}

func TestTableOutputs(t *testing.T) {
	f := &fakeBroker{
		sockets: testSockets(),
		presets: []*sockguardv1.Preset{{Name: "github-actions-runner", Description: "GitHub runner", Yaml: "name: github-actions-runner\nrules: []", Builtin: true}},
	}
	sock := startBroker(t, f)
	tests := []struct {
		args []string
		want string // exact, after collapsing spaces
	}{
		{[]string{"presets"}, "NAME BUILTIN DESCRIPTION\ngithub-actions-runner true GitHub runner\n"},
		{[]string{"preset", "github-actions-runner"}, "name: github-actions-runner\nrules: []\n"},
		{[]string{"rm", "runner-1", "--purge"}, "deleted socket runner-1 and removed its Docker objects (2 containers, 1 networks, 3 volumes)\n"},
		{[]string{"version"}, "client: dev\nbroker: v0.1.0-test\n"},
	}
	for _, tt := range tests {
		t.Run(tt.args[0], func(t *testing.T) {
			res := sgctl(t, sock, tt.args...)
			if res.code != 0 {
				t.Fatalf("exit %d: %s", res.code, res.stderr)
			}
			if got := regexpSpaces(res.stdout); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
	res := sgctl(t, sock, "status")
	for _, w := range []string{"broker version: v0.1.0-test", "upstream: unix:///var/run/docker.sock (reachable, Docker 27.1.1)", "sockets: 2", "(1h0m0s ago)"} {
		if !strings.Contains(regexpSpaces(res.stdout), w) {
			t.Errorf("status lacks %q:\n%s", w, res.stdout)
		}
	}
	if got := requests[*sockguardv1.DeleteSocketRequest](f); len(got) != 1 || !got[0].GetPurge() {
		t.Errorf("delete requests %v", got)
	}
}

func TestUnreachableBroker(t *testing.T) {
	missing := filepath.Join(shortTempDir(t), "admin.sock")
	for _, args := range [][]string{{"ls"}, {"status"}, {"denials", "--follow"}} {
		res := sgctl(t, missing, args...)
		want := "sgctl: cannot reach the broker at " + missing
		if res.code != exitFailure || !strings.HasPrefix(res.stderr, want) ||
			!strings.Contains(res.stderr, "broker --admin-socket "+missing) || !strings.Contains(res.stderr, "SGCTL_ADMIN_SOCKET") ||
			strings.Count(res.stderr, "\n") != 1 {
			t.Errorf("%v: exit %d stderr %q", args, res.code, res.stderr)
		}
	}
	res := sgctl(t, missing, "version")
	if res.code != 0 || !strings.HasPrefix(res.stdout, "client: dev\nbroker: not reachable (cannot reach the broker at ") {
		t.Errorf("version: exit %d stdout %q stderr %q", res.code, res.stdout, res.stderr)
	}
}

// TestStatusHealthcheck: status is a healthcheck; an unreachable dockerd
// makes it exit 1 after printing the whole report.
func TestStatusHealthcheck(t *testing.T) {
	tests := []struct {
		name     string
		down     bool
		args     []string
		wantCode int
		want     string
	}{
		{"up", false, []string{"status"}, exitOK, "(reachable, Docker 27.1.1)"},
		{"down", true, []string{"status"}, exitFailure, "upstream: unix:///var/run/docker.sock (not reachable)"},
		{"down json", true, []string{"-o", "json", "status"}, exitFailure, `"version"`},
		{"up json", false, []string{"-o", "json", "status"}, exitOK, `"version"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := sgctl(t, startBroker(t, &fakeBroker{upstreamDown: tt.down}), tt.args...)
			if res.code != tt.wantCode || !strings.Contains(regexpSpaces(res.stdout), tt.want) || res.stderr != "" {
				t.Errorf("exit %d stdout %q stderr %q; want %d and %q", res.code, res.stdout, res.stderr, tt.wantCode, tt.want)
			}
		})
	}
}

func TestStatusErrors(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{
			name: "permission denied",
			err:  status.Error(codes.PermissionDenied, "uid 1000 is not root and not in group sockguard"),
			want: "sgctl: uid 1000 is not root and not in group sockguard (the admin API is for root and the broker's admin group: run sgctl with sudo or as a member of that group)\n",
		},
		{
			name: "not found",
			err:  status.Error(codes.NotFound, `socket "runner-7" not found`),
			want: "sgctl: socket \"runner-7\" not found\n",
		},
		{
			name: "invalid argument",
			err:  status.Error(codes.InvalidArgument, "unknown preset \"nope\""),
			want: "sgctl: unknown preset \"nope\"\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := sgctl(t, startBroker(t, &fakeBroker{err: tt.err}), "inspect-socket", "runner-7")
			if res.code != exitFailure || res.stderr != tt.want || res.stdout != "" {
				t.Errorf("exit %d stdout %q stderr %q\nwant stderr %q", res.code, res.stdout, res.stderr, tt.want)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	sock := startBroker(t, &fakeBroker{sockets: testSockets()})
	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"-o", "xml", "ls"},
		{"--timeout", "0s", "ls"},
		{"--bogus", "ls"},
		{"ls", "--bogus"},
		{"ls", "extra"},
		{"inspect-socket"},
		{"preset"},
		{"status", "now"},
		{"help", "frobnicate"},
	} {
		t.Run(strings.Join(args, "_"), func(t *testing.T) {
			res := sgctl(t, sock, args...)
			if res.code != exitUsage {
				t.Errorf("exit %d, want 2; stderr %q", res.code, res.stderr)
			}
			if res.stderr == "" {
				t.Errorf("no message on stderr")
			}
		})
	}
}

func TestHelp(t *testing.T) {
	sock := startBroker(t, &fakeBroker{})
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"create-socket", "list-sockets (ls)", "denials", "--admin-socket PATH", "SGCTL_ADMIN_SOCKET", "Example session"}},
		{[]string{"-h"}, []string{"Commands:"}},
		{[]string{"help"}, []string{"Commands:"}},
		{[]string{"create-socket", "-h"}, []string{"--owner UID:GID", "--allow-bind PATH", "--allow-uid UID", "--mode MODE", "--policy-mode MODE"}},
		{[]string{"help", "denials"}, []string{"--follow", "--reason CODE", "rule-denied, privileged, host-namespace", "(default 50)"}},
		{[]string{"ls", "--help"}, []string{"-q, --quiet", "Aliases: ls"}},
		{[]string{"help", "rm"}, []string{"--purge"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, "_"), func(t *testing.T) {
			res := sgctl(t, sock, tt.args...)
			if res.code != 0 || res.stderr != "" {
				t.Fatalf("exit %d stderr %q", res.code, res.stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(res.stdout, w) {
					t.Errorf("help lacks %q:\n%s", w, res.stdout)
				}
			}
		})
	}
}

func TestParseInterspersed(t *testing.T) {
	tests := []struct {
		args    []string
		wantPos []string
		wantA   string
		wantB   bool
	}{
		{[]string{"x", "--a", "1", "y", "-b"}, []string{"x", "y"}, "1", true},
		{[]string{"--a=1", "x"}, []string{"x"}, "1", false},
		{[]string{"x", "--", "-b", "--a"}, []string{"x", "-b", "--a"}, "", false},
		{[]string{"-", "-b"}, []string{"-"}, "", true},
		{nil, nil, "", false},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		a := fs.String("a", "", "")
		b := fs.Bool("b", false, "")
		pos, err := parseInterspersed(fs, tt.args)
		if err != nil || !reflect.DeepEqual(pos, tt.wantPos) || *a != tt.wantA || *b != tt.wantB {
			t.Errorf("%q: pos %q a %q b %v err %v", tt.args, pos, *a, *b, err)
		}
	}
}

func TestAdminSocketFromEnv(t *testing.T) {
	sock := startBroker(t, &fakeBroker{sockets: testSockets()})
	var stdout, stderr bytes.Buffer
	c := &cli{stdout: &stdout, stderr: &stderr, now: time.Now,
		getenv: func(k string) string {
			if k == adminSocketEnv {
				return sock
			}
			return ""
		}}
	if code := c.main(context.Background(), []string{"ls", "-q"}); code != 0 || stdout.String() != "runner-1\nrunner-2\n" {
		t.Errorf("exit %d stdout %q stderr %q", code, stdout.String(), stderr.String())
	}
}

func TestVersionWhenRefused(t *testing.T) {
	f := &fakeBroker{err: status.Error(codes.PermissionDenied, "uid 1000 is not allowed")}
	res := sgctl(t, startBroker(t, f), "version")
	if res.code != 0 || !strings.HasPrefix(res.stdout, "client: dev\nbroker: unknown (uid 1000 is not allowed (") {
		t.Errorf("exit %d stdout %q stderr %q", res.code, res.stdout, res.stderr)
	}
}

// lockedBuffer is a bytes.Buffer safe to read while the CLI writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
