package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// keepAliveClient talks HTTP over one tenant socket with reused
// connections, for floods.
func keepAliveClient(socket string) *http.Client {
	return &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", socket)
			},
			MaxIdleConnsPerHost: 8,
		},
	}
}

// send sends one request and returns its status (0 when the connection
// failed: a refused request line may be cut by the server).
func send(c *http.Client, method, target string, hdr http.Header, body []byte) int {
	req, err := http.NewRequest(method, "http://docker"+target, bytes.NewReader(body))
	if err != nil {
		return 0
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// flood sends n refused requests target(i) from 8 workers.
func flood(t *testing.T, socket string, n int, target func(i int) string) {
	t.Helper()
	c := keepAliveClient(socket)
	defer c.CloseIdleConnections()
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				send(c, http.MethodGet, target(i), nil, nil)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// settle sends marker refusals on socket until one is listed: the deny log
// commits in queue order, so everything refused before it is then stored
// (or was dropped and counted).
func settle(t *testing.T, b *Broker, socket string) {
	t.Helper()
	c := keepAliveClient(b.TenantSocket(socket))
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; ; i++ {
		path := fmt.Sprintf("/sockguard-settle/%d", i)
		send(c, http.MethodGet, path, nil, nil)
		for range 20 {
			var out listDenialsJSON
			b.SgctlJSON(t, &out, "denials", "--socket", socket, "--path", path, "--limit", "1")
			if len(out.Denials) > 0 {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		if time.Now().After(deadline) {
			t.Fatalf("deny log of %s never caught up", socket)
		}
	}
}

// allDenials lists every stored record via sgctl -o json.
func allDenials(t *testing.T, b *Broker, args ...string) []denialJSON {
	t.Helper()
	var out listDenialsJSON
	b.SgctlJSON(t, &out, append([]string{"denials", "--limit", "0"}, args...)...)
	return out.Denials
}

// A secret in a refused request (build args, registry auth, env, exec Cmd,
// query values) reaches neither the deny log nor the logs nor the state
// file.
func TestDenyLogKeepsNoSecrets(t *testing.T) {
	b := NewBroker(t)
	accessLog := filepath.Join(b.Dir, "access.log")
	b.ExtraArgs = []string{"--access-log", accessLog}
	b.Start()
	tenant := "sec"
	sock := b.CreateSocket(t, tenant, "github-actions-runner")

	secret := "s3cr3t" + randHex(t)
	// docker build --build-arg, through the real CLI: refused by the
	// preset, and the token rides in the query.
	r := b.DockerOpts(tenant, cmdOpts{env: []string{"DOCKER_BUILDKIT=0"}},
		"build", "--build-arg", "NPM_TOKEN="+secret, "-t", objectName(t, "img"), buildContext(t)).MustFail(t)
	if !strings.Contains(r.Combined(), "denied by policy") {
		t.Fatalf("build was not refused by policy: %s", r)
	}

	c := keepAliveClient(sock)
	defer c.CloseIdleConnections()
	authHdr := http.Header{"X-Registry-Auth": {base64.URLEncoding.EncodeToString([]byte(`{"username":"u","password":"` + secret + `"}`))},
		"X-Registry-Config": {base64.URLEncoding.EncodeToString([]byte(`{"r.example":{"password":"` + secret + `"}}`))}}
	q := url.Values{
		"buildargs": {`{"NPM_TOKEN":"` + secret + `"}`},
		"remote":    {"https://" + secret + "@github.com/o/r.git"},
		"labels":    {`{"k":"` + secret + `"}`},
		"t":         {"app"},
		secret:      {"1"},
	}
	if st := send(c, http.MethodPost, "/v1.45/build?"+q.Encode(), authHdr, nil); st != http.StatusForbidden {
		t.Fatalf("raw build: status %d, want 403", st)
	}
	createBody := []byte(`{"Image":"` + testImage + `","Env":["TOKEN=` + secret + `"],"Cmd":["echo","` + secret + `"],` +
		`"Labels":{"k":"` + secret + `"},"HostConfig":{"Privileged":true}}`)
	if st := send(c, http.MethodPost, "/v1.45/containers/create?name="+objectName(t, "c")+"&env="+secret, nil, createBody); st != http.StatusForbidden {
		t.Fatalf("privileged create: status %d, want 403", st)
	}
	name := objectName(t, "exec")
	b.Docker(tenant, "run", "-d", "--network", "none", "--name", name, testImage, "sleep", "60").MustSucceed(t)
	t.Cleanup(func() { cleanupUpstream(t, "container", name) })
	execBody := []byte(`{"Cmd":["sh","-c","echo ` + secret + `"],"Env":["T=` + secret + `"],"Privileged":true}`)
	if st := send(c, http.MethodPost, "/v1.45/containers/"+name+"/exec", nil, execBody); st != http.StatusForbidden {
		t.Fatalf("privileged exec: status %d, want 403", st)
	}
	// docker login's request, to an address that refuses at once: allowed
	// or refused, its password must not show up anywhere.
	send(c, http.MethodPost, "/v1.45/auth", nil, []byte(`{"username":"u","password":"`+secret+`","serveraddress":"127.0.0.1:1"}`))
	settle(t, b, tenant)

	ds := allDenials(t, b)
	out := b.Sgctl("-o", "json", "denials", "--limit", "0").MustSucceed(t).Stdout
	build, ok := findDenial(ds, "POST", "/build")
	if !ok || !strings.Contains(build.RawTarget, "buildargs") {
		t.Fatalf("the refused build is not listed with its query keys: %+v", ds)
	}
	if _, ok := findDenial(ds, "POST", "/containers/create"); !ok {
		t.Fatalf("the refused create is not listed: %+v", ds)
	}
	stateDB, err := os.ReadFile(filepath.Join(b.StateDir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	access, err := os.ReadFile(accessLog)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(access, []byte(`"/build"`)) {
		t.Fatalf("access log has no build request:\n%s", access)
	}
	for what, data := range map[string]string{
		"sgctl denials -o json": out,
		"broker log":            b.Log(),
		"access log":            string(access),
		"state.db":              string(stateDB),
	} {
		if strings.Contains(data, secret) {
			i := strings.Index(data, secret)
			t.Errorf("%s holds the secret: ...%q...", what, data[max(0, i-200):min(len(data), i+100)])
		}
	}
	t.Logf("build refusal as stored: target %q, reason %q", build.RawTarget, build.Reason)
}

// A refused request with a ~1 MB request line costs the store a bounded
// record, not its size. The header bound is raised so the lines reach the
// policy: the store must stay bounded whatever the operator sets.
func TestDenyLogHugeRequestLine(t *testing.T) {
	b := NewBroker(t)
	b.ExtraArgs = []string{"--deny-rate", "0", "--max-header-bytes", "2097152"}
	b.Start()
	sock := b.CreateSocket(t, "huge", "github-actions-runner")
	dbPath := filepath.Join(b.StateDir, "state.db")
	before := fileSize(t, dbPath)

	const n = 100
	long := strings.Repeat("a", 900<<10)
	c := keepAliveClient(sock)
	statuses := map[int]int{}
	for i := range n {
		// Refused by the preset's build rule, with the line in the path and
		// in the query.
		statuses[send(c, http.MethodPost, fmt.Sprintf("/v1.45/build/%d%s?t=%s", i, long[:450<<10], long[:450<<10]), nil, nil)]++
	}
	c.CloseIdleConnections()
	settle(t, b, "huge")
	b.Stop()

	db, err := bolt.Open(dbPath, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var records, valueBytes, largest int
	if err := db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("denials")).ForEach(func(_, v []byte) error {
			records++
			valueBytes += len(v)
			largest = max(largest, len(v))
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	growth := fileSize(t, dbPath) - before
	t.Logf("statuses %v; %d records, %d bytes of records (largest %d), state.db grew %d bytes (%d per refused request)",
		statuses, records, valueBytes, largest, growth, growth/n)
	if records < n {
		t.Fatalf("%d of %d refusals stored", records, n)
	}
	if largest > 4096 {
		t.Fatalf("a record of %d bytes: fields are not bounded", largest)
	}
	// Unbounded, these 100 refusals stored at least 90 MB.
	if growth > 4<<20 {
		t.Fatalf("state.db grew %d bytes for %d refusals", growth, n)
	}
}

// One tenant flooding refusals past a bound removes none of another
// tenant's records: past its own bound it loses its own (but keeps the
// start of its history); past the global bound, the tenant holding the
// most loses first.
func TestDenyLogRetentionPerTenant(t *testing.T) {
	tests := []struct {
		name              string
		perTenant, global string
		wantNoisy         int  // at most this many noisy records remain
		keepsFirst        bool // the noisy tenant's first records survive
	}{
		{"per-tenant bound", "200", "5000", 200, true},
		{"global bound", "0", "500", 500 - 31, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBroker(t)
			b.ExtraArgs = []string{"--deny-rate", "0", "--deny-log-max-records-per-tenant", tt.perTenant, "--deny-log-max-records", tt.global}
			b.Start()
			quiet := b.CreateSocket(t, "quiet", "github-actions-runner")
			noisy := b.CreateSocket(t, "noisy", "github-actions-runner")

			qc := keepAliveClient(quiet)
			for i := range 30 {
				send(qc, http.MethodGet, fmt.Sprintf("/quiet/%d", i), nil, nil)
			}
			qc.CloseIdleConnections()
			nc := keepAliveClient(noisy)
			for i := range 10 {
				send(nc, http.MethodGet, fmt.Sprintf("/first/%d", i), nil, nil)
			}
			nc.CloseIdleConnections()
			settle(t, b, "quiet")
			settle(t, b, "noisy")

			flood(t, noisy, 4000, func(i int) string { return fmt.Sprintf("/flood/%d", i) })
			settle(t, b, "noisy")

			q := allDenials(t, b, "--socket", "quiet")
			for i := range 30 {
				if _, ok := findDenial(q, "GET", fmt.Sprintf("/quiet/%d", i)); !ok {
					t.Errorf("quiet tenant's record /quiet/%d is gone after the other tenant's flood", i)
				}
			}
			n := allDenials(t, b, "--socket", "noisy")
			if len(n) > tt.wantNoisy || len(n) < tt.wantNoisy/2 {
				t.Errorf("noisy tenant holds %d records, want at most %d (and not far fewer)", len(n), tt.wantNoisy)
			}
			for i := range 10 {
				if _, ok := findDenial(n, "GET", fmt.Sprintf("/first/%d", i)); !ok && tt.keepsFirst {
					t.Errorf("noisy tenant's own first record /first/%d was evicted by its flood", i)
				}
			}
			t.Logf("quiet: %d records, noisy: %d records", len(q), len(n))
		})
	}
}

// After a flood of records at their size bound, sgctl denials still lists
// them all: every answer stays under the gRPC message limit.
func TestDenyLogListAfterMaxSizeFlood(t *testing.T) {
	b := NewBroker(t)
	b.ExtraArgs = []string{"--deny-rate", "0"}
	b.Start()
	sock := b.CreateSocket(t, "big", "github-actions-runner")
	// Two-byte runes: the path, the raw target and the reason that quotes
	// the path all reach their bounds.
	seg := strings.Repeat("é", 2000)
	flood(t, sock, 3000, func(i int) string { return fmt.Sprintf("/big/%d/%s?name=%s&other=%s", i, seg, seg, seg) })
	settle(t, b, "big")

	ds := allDenials(t, b)
	if len(ds) < 3000 {
		t.Fatalf("listed %d records, want all 3000 (and the markers)", len(ds))
	}
	var largest int
	for _, d := range ds {
		largest = max(largest, len(d.Path)+len(d.RawTarget)+len(d.Reason))
	}
	if largest > 256+384+512 {
		t.Fatalf("a record with %d bytes of path, target and reason", largest)
	}
	b.Sgctl("denials").MustSucceed(t)
	t.Logf("%d records listed, largest path+target+reason %d bytes", len(ds), largest)
}

func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

func randHex(t *testing.T) string {
	t.Helper()
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}
