package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestFollowAcrossBrokerRestart: sgctl denials --follow keeps running
// through a broker restart, says so on stderr, and prints every refusal of
// the socket recorded after it started exactly once, in order: those
// before the restart, those recorded after the new broker started but
// before sgctl reconnected, and those after.
func TestFollowAcrossBrokerRestart(t *testing.T) {
	b := StartBroker(t)
	sock := b.CreateSocket(t, "fr", "github-actions-runner")
	other := b.CreateSocket(t, "fr-other", "github-actions-runner")
	refuse := func(socket string) {
		t.Helper()
		code, _, body := doRaw(t, socket, "POST", "/v1.45/containers/create", "application/json",
			strings.NewReader(`{"Image":"`+testImage+`","HostConfig":{"Privileged":true,"NetworkMode":"none"}}`))
		if code != 403 {
			t.Fatalf("privileged create: %d %s, want 403", code, body)
		}
	}
	// Recorded before following starts: not printed.
	refuse(sock)
	refuse(other)
	// Records are committed asynchronously: wait for both.
	var baseline []denialJSON
	for deadline := time.Now().Add(10 * time.Second); len(baseline) < 2; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("baseline records: %+v", baseline)
		}
		baseline = b.denials(t, "")
	}
	var last uint64
	for _, d := range baseline {
		id, _ := strconv.ParseUint(d.ID, 10, 64)
		last = max(last, id)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, suite.sgctl, "--admin-socket", b.AdminSocket, "-o", "json", "denials", "--follow", "--socket", "fr")
	cmd.Env = cleanEnv()
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }() // killed by cancel: its exit status says nothing
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var printed []uint64
	await := func(n int) {
		t.Helper()
		for len(printed) < n {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("follow ended after %d records; stderr:\n%s", len(printed), stderr.String())
				}
				var d denialJSON
				if err := json.Unmarshal([]byte(l), &d); err != nil {
					t.Fatalf("not a JSON record: %q", l)
				}
				if d.Socket != "fr" || d.ReasonCode != "privileged" {
					t.Errorf("followed record %+v", d)
				}
				id, _ := strconv.ParseUint(d.ID, 10, 64)
				printed = append(printed, id)
			case <-time.After(20 * time.Second):
				t.Fatalf("%d of %d records printed; stderr:\n%s", len(printed), n, stderr.String())
			}
		}
	}
	waitStderr := func(s string) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !strings.Contains(stderr.String(), s); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("stderr lacks %q:\n%s", s, stderr.String())
			}
		}
	}
	time.Sleep(500 * time.Millisecond) // let the stream start
	refuse(sock)
	refuse(other)
	refuse(sock)
	await(2)

	b.Stop()
	waitStderr("sgctl: lost the broker")
	b.Start()
	waitDial(t, sock, 20*time.Second)
	// Most likely before sgctl is back (its back-off is at least 200ms):
	// these come from the store, after the last id printed.
	refuse(sock)
	refuse(other)
	waitStderr("sgctl: reconnected to the broker; resuming after record ")
	refuse(sock)
	await(4)

	// Exactly the socket's records after the baseline, oldest first: no
	// duplicate, no gap.
	var want []uint64
	for _, d := range b.denials(t, "fr") {
		if id, _ := strconv.ParseUint(d.ID, 10, 64); id > last {
			want = append(want, id)
		}
	}
	slices.Sort(want)
	select {
	case l := <-lines:
		t.Errorf("a record more than recorded: %s", l)
	case <-time.After(300 * time.Millisecond):
	}
	if !slices.Equal(printed, want) {
		t.Errorf("printed ids %v, want %v; stderr:\n%s", printed, want, stderr.String())
	}
	if n := strings.Count(stderr.String(), "lost the broker"); n != 1 {
		t.Errorf("%d disconnect notes, want 1:\n%s", n, stderr.String())
	}
	t.Logf("stderr:\n%s", stderr.String())
}
