package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestExampleWidenedPreset loads examples/github-actions-runner/presets
// with --preset-dir, as the example README tells an operator to, and shows
// what it widens (a legacy-builder docker build, docker cp in and out) and
// what it still refuses (BuildKit sessions, a setuid file through docker
// cp, privileged containers), while the built-in preset refuses builds and
// docker cp.
func TestExampleWidenedPreset(t *testing.T) {
	src, err := filepath.Abs("../../examples/github-actions-runner/presets/github-actions-runner-build.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b := NewBroker(t)
	dir := filepath.Join(b.Dir, "presets")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "github-actions-runner-build.yaml"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	b.ExtraArgs = []string{"--preset-dir", dir}
	b.Start()
	b.CreateSocket(t, "wide", "github-actions-runner-build")
	b.CreateSocket(t, "narrow", "github-actions-runner")
	legacy := cmdOpts{env: []string{"DOCKER_BUILDKIT=0"}}

	// Builds: the widened preset builds, the built-in one refuses.
	tag := objectName(t, "img")
	cleanupUpstream(t, "image", tag)
	ctxDir := buildContext(t)
	if r := b.DockerOpts("wide", legacy, "build", "--network", "none", "-t", tag, ctxDir); r.Code != 0 {
		t.Fatalf("legacy docker build under the widened preset: %s", r)
	}
	if r := b.Docker("wide", "run", "--rm", "--network", "none", tag, "cat", "/built"); r.Code != 0 || strings.TrimSpace(r.Stdout) != "built" {
		t.Fatalf("running the built image: %s", r)
	}
	if r := b.DockerOpts("narrow", legacy, "build", "--network", "none", "-t", tag+"-n", ctxDir); !strings.Contains(r.Combined(), "image builds are denied") {
		t.Fatalf("the built-in preset did not refuse a build: %s", r)
	}
	// BuildKit's session stays refused under the widened preset.
	code, _, body := doRaw(t, b.TenantSocket("wide"), "POST", "/v1.45/session", "", nil)
	if code != 403 || !strings.Contains(string(body), "BuildKit sessions are not allowed") {
		t.Errorf("POST /session: %d %s", code, body)
	}

	// docker cp: in and out of the tenant's own container.
	name := objectName(t, "ctr")
	cleanupUpstream(t, "container", name)
	b.Docker("wide", "create", "--name", name, "--network", "none", testImage, "true").MustSucceed(t)
	in := filepath.Join(t.TempDir(), "in.txt")
	if err := os.WriteFile(in, []byte("copied\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b.Docker("wide", "cp", in, name+":/in.txt").MustSucceed(t)
	out := filepath.Join(t.TempDir(), "out.txt")
	b.Docker("wide", "cp", name+":/in.txt", out).MustSucceed(t)
	if got, err := os.ReadFile(out); err != nil || string(got) != "copied\n" {
		t.Fatalf("docker cp round trip: %q %v", got, err)
	}
	// A setuid file is refused even here: the upload is read entry by entry.
	suid := filepath.Join(t.TempDir(), "suid")
	if err := os.WriteFile(suid, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(suid, os.ModeSetuid|0o755); err != nil {
		t.Fatal(err)
	}
	if r := b.Docker("wide", "cp", suid, name+":/suid"); !strings.Contains(r.Combined(), "sockguard: denied by policy") {
		t.Fatalf("a setuid file went through docker cp: %s", r)
	}
	if r := b.Docker("narrow", "cp", in, name+":/in.txt"); r.Code == 0 {
		t.Fatalf("the built-in preset let docker cp through: %s", r)
	}
	// Still no privileged containers.
	if r := b.Docker("wide", "run", "--rm", "--privileged", "--network", "none", testImage, "true"); !strings.Contains(r.Combined(), "privileged containers are not allowed") {
		t.Fatalf("privileged run under the widened preset: %s", r)
	}
}
