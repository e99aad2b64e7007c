package e2e

import (
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// peerRefused requires a connection to socket to be refused by the broker
// before any request is served: it gets one Docker-style 403 answer whose
// message names the refusal, and then the connection is closed.
func peerRefused(t *testing.T, socket string) {
	t.Helper()
	resps, rest := rawExchange(t, socket, []byte("GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n"), 2, 10*time.Second)
	if len(resps) != 1 || len(rest) != 0 {
		t.Fatalf("refused peer got %d answers (+%q), want exactly one", len(resps), rest)
	}
	msg, err := jsonMessage(resps[0].Body)
	if resps[0].Status != http.StatusForbidden || err != nil ||
		!strings.HasPrefix(msg, "sockguard: connection from uid") || !strings.Contains(msg, "not allowed") {
		t.Errorf("refused peer got %d %q, want 403 with a Docker error naming the refusal", resps[0].Status, resps[0].Body)
	}
}

// waitDenial polls the deny log of socket until a record matches.
func (b *Broker) waitDenial(t *testing.T, socket string, match func(denialJSON) bool) (denialJSON, bool) {
	t.Helper()
	var found denialJSON
	ok := waitFor(5*time.Second, func() bool {
		for _, d := range b.denials(t, socket) {
			if match(d) {
				found = d
				return true
			}
		}
		return false
	})
	return found, ok
}

// TestPeerIdentity: --allow-uid/--allow-gid are checked against the
// connecting process's SO_PEERCRED; a refused peer gets one Docker-style
// 403 before its connection is closed, and is recorded; --owner/--mode set
// the socket file.
func TestPeerIdentity(t *testing.T) {
	b := StartBroker(t)
	openDirs(t, b.Dir)

	b.CreateSocket(t, "uid-only", preset, "--allow-uid", "4242", "--owner", "4242:4242")
	b.CreateSocket(t, "nobody", preset, "--owner", "65534:65534", "--mode", "0600", "--allow-uid", "65534")
	b.CreateSocket(t, "gid-only", preset, "--allow-gid", "4300", "--mode", "0666")
	b.CreateSocket(t, "open", preset)

	for _, tc := range []struct {
		name   string
		socket string
		as     *user // nil: root, the test process
		ok     bool
		// When refused: the denial's peer uid; -1 when the socket file's
		// mode refuses the connection before the broker sees it.
		peerUID int
	}{
		{"root refused by allow-uid", "uid-only", nil, false, 0},
		{"allowed uid", "uid-only", &user{uid: 4242, gid: 4242}, true, 0},
		{"nobody on its 0600 socket", "nobody", &nobody, true, 0},
		{"other uid refused by mode 0600", "nobody", &user{uid: 4243, gid: 65534}, false, -1},
		{"root refused by allow-uid nobody", "nobody", nil, false, 0},
		{"allowed primary gid", "gid-only", &user{uid: 4244, gid: 4300}, true, 0},
		{"other gid refused", "gid-only", &user{uid: 4245, gid: 4301}, false, 4245},
		{"open socket root", "open", nil, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := b.TenantSocket(tc.socket)
			var r Result
			if tc.as == nil {
				r = b.Docker(tc.socket, "version", "--format", "{{.Server.Version}}")
			} else {
				r = dockerAs(t, *tc.as, "unix://"+sock, "version", "--format", "{{.Server.Version}}")
			}
			if tc.ok {
				r.MustSucceed(t)
				if strings.TrimSpace(r.Stdout) == "" {
					t.Errorf("docker version printed no server version: %s", r)
				}
				return
			}
			r.MustFail(t)
			t.Logf("refused: %s", firstLine(r.Stderr))
			if tc.peerUID < 0 {
				if !containsAny(r.Stderr, "permission denied") {
					t.Errorf("want a permission error from the socket file mode: %s", r)
				}
				return
			}
			if tc.as == nil {
				peerRefused(t, sock)
			}
			d, ok := b.waitDenial(t, tc.socket, func(d denialJSON) bool {
				return d.ReasonCode == "peer-not-allowed" && d.PeerUID == uint32(tc.peerUID)
			})
			if !ok {
				t.Fatalf("sgctl denials --socket %s has no peer-not-allowed record for uid %d:\n%s",
					tc.socket, tc.peerUID, b.Sgctl("-o", "json", "denials", "--socket", tc.socket).Stdout)
			}
			if d.Socket != tc.socket {
				t.Errorf("denial socket %q, want %q", d.Socket, tc.socket)
			}
		})
	}

	t.Run("socket file owner and mode", func(t *testing.T) {
		for _, tc := range []struct {
			socket   string
			uid, gid uint32
			mode     os.FileMode
		}{
			{"nobody", 65534, 65534, 0o600},
			{"uid-only", 4242, 4242, 0o660},
			{"gid-only", 0, 0, 0o666},
			{"open", 0, 0, 0o660},
		} {
			fi, err := os.Lstat(b.TenantSocket(tc.socket))
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != tc.mode || st.Uid != tc.uid || st.Gid != tc.gid {
				t.Errorf("%s: socket file %v %d:%d, want socket %#o %d:%d", tc.socket, fi.Mode(), st.Uid, st.Gid, tc.mode, tc.uid, tc.gid)
			}
			in := b.inspectSocket(t, tc.socket).Socket
			// -o json spells the mode in octal, as --mode takes it.
			if in.OwnerUID != tc.uid || in.OwnerGID != tc.gid || in.FileMode != fmt.Sprintf("%#04o", uint32(tc.mode)) {
				t.Errorf("%s: inspect-socket says %d:%d %s, want %d:%d %#04o", tc.socket, in.OwnerUID, in.OwnerGID, in.FileMode, tc.uid, tc.gid, tc.mode)
			}
		}
	})

	t.Run("inspect-socket names the only gate", func(t *testing.T) {
		r := b.Sgctl("inspect-socket", "open").MustSucceed(t)
		if !strings.Contains(r.Stdout, "owner/mode are the only gate") {
			t.Errorf("inspect-socket of a socket without --allow-uid/--allow-gid does not say owner/mode are the only gate:\n%s", r.Stdout)
		}
		r = b.Sgctl("inspect-socket", "uid-only").MustSucceed(t)
		if strings.Contains(r.Stdout, "only gate") || !strings.Contains(r.Stdout, "4242") {
			t.Errorf("inspect-socket of a socket with --allow-uid 4242:\n%s", r.Stdout)
		}
	})
}

// TestAdminSocketAccess: the admin API answers root, and members of
// --admin-group; anyone else gets a permission error; a tenant socket does
// not speak the admin API.
func TestAdminSocketAccess(t *testing.T) {
	plain := StartBroker(t)
	openDirs(t, plain.Dir)
	plain.CreateSocket(t, "tenant-x", preset)

	grouped := NewBroker(t)
	grouped.ExtraArgs = []string{"--admin-group", "65534"}
	grouped.Start()
	openDirs(t, grouped.Dir)

	t.Run("admin socket file", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			b    *Broker
			gid  uint32
			mode os.FileMode
		}{
			{"no admin group", plain, 0, 0o600},
			{"admin group 65534", grouped, 65534, 0o660},
		} {
			fi, err := os.Lstat(tc.b.AdminSocket)
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			if fi.Mode().Perm() != tc.mode || st.Uid != 0 || st.Gid != tc.gid {
				t.Errorf("%s: admin socket %v %d:%d, want %#o 0:%d", tc.name, fi.Mode(), st.Uid, st.Gid, tc.mode, tc.gid)
			}
		}
	})

	for _, tc := range []struct {
		name string
		b    *Broker
		as   user
		ok   bool
	}{
		{"non-root without admin group", plain, nobody, false},
		{"primary gid member", grouped, nobody, true},
		{"supplementary member", grouped, user{uid: 65533, gid: 65533, groups: []int{65534}}, true},
		{"non-member", grouped, user{uid: 65533, gid: 65533}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sockName := "by-" + strings.ReplaceAll(tc.name, " ", "-")
			r := sgctlAs(tc.as, tc.b.AdminSocket, "list-sockets")
			if !tc.ok {
				r.MustFail(t)
				if !containsAny(r.Stderr, "permission") {
					t.Errorf("sgctl as uid %d: error does not mention permission: %s", tc.as.uid, r)
				}
				if strings.Contains(r.Stdout, "tenant-x") {
					t.Errorf("refused sgctl listed sockets: %s", r)
				}
				sgctlAs(tc.as, tc.b.AdminSocket, "create-socket", sockName, "--preset", preset).MustFail(t)
				if slices.Contains(tc.b.socketNames(t), sockName) {
					t.Errorf("a refused caller created socket %s", sockName)
				}
				return
			}
			r.MustSucceed(t)
			// Any call a member makes is allowed, writes included.
			sgctlAs(tc.as, tc.b.AdminSocket, "create-socket", sockName, "--preset", preset).MustSucceed(t)
			sgctlAs(tc.as, tc.b.AdminSocket, "inspect-socket", sockName).MustSucceed(t)
			sgctlAs(tc.as, tc.b.AdminSocket, "denials", "--socket", sockName).MustSucceed(t)
			sgctlAs(tc.as, tc.b.AdminSocket, "delete-socket", sockName).MustSucceed(t)
			if slices.Contains(tc.b.socketNames(t), sockName) {
				t.Errorf("socket %s still listed after the member deleted it", sockName)
			}
		})
	}

	t.Run("gRPC on a tenant socket", func(t *testing.T) {
		r := run(cmdOpts{timeout: 30 * time.Second}, suite.sgctl, "--admin-socket", plain.TenantSocket("tenant-x"), "list-sockets").MustFail(t)
		if strings.Contains(r.Stdout, "tenant-x") {
			t.Errorf("sgctl through a tenant socket listed sockets: %s", r)
		}
		t.Logf("sgctl on a tenant socket: %s", firstLine(r.Stderr))
		r = run(cmdOpts{timeout: 30 * time.Second}, suite.sgctl, "--admin-socket", plain.TenantSocket("tenant-x"),
			"create-socket", "via-tenant", "--preset", preset).MustFail(t)
		if slices.Contains(plain.socketNames(t), "via-tenant") {
			t.Errorf("create-socket through a tenant socket created a socket")
		}
		// The tenant socket still serves Docker.
		plain.Docker("tenant-x", "version").MustSucceed(t)
	})
}
