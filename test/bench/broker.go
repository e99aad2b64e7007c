package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// brokerProc is the real broker binary, run as a child process.
type brokerProc struct {
	cmd    *exec.Cmd
	done   chan struct{} // closed when the process has exited
	err    error         // Wait's result, valid after done is closed
	killed bool          // we sent SIGTERM
}

// moduleRoot returns the directory holding the module's go.mod, so the
// benchmark builds ./cmd/... no matter where it was started from.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside a Go module: run from the sockguard checkout")
	}
	return filepath.Dir(gomod), nil
}

// buildBinaries builds cmd/broker and cmd/sgctl into dir.
func buildBinaries(ctx context.Context, dir string) error {
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(os.PathSeparator), "./cmd/broker", "./cmd/sgctl")
	cmd.Dir = root
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build ./cmd/broker ./cmd/sgctl: %w", err)
	}
	return nil
}

func startBroker(bin string, args []string) (*brokerProc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start broker: %w", err)
	}
	b := &brokerProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		b.err = cmd.Wait()
		close(b.done)
	}()
	return b, nil
}

// exited reports whether the broker has already stopped, and how.
func (b *brokerProc) exited() (bool, error) {
	select {
	case <-b.done:
		return true, b.err
	default:
		return false, nil
	}
}

// stop sends SIGTERM, waits up to grace, then SIGKILL. It returns an error if
// the broker had died on its own before being asked to stop.
func (b *brokerProc) stop(grace time.Duration) error {
	if dead, err := b.exited(); dead {
		return fmt.Errorf("broker had exited before being stopped (%s)", exitDesc(err))
	}
	b.killed = true
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.done:
		return nil
	case <-time.After(grace):
		logf("broker did not exit %v after SIGTERM; killing it", grace)
		_ = b.cmd.Process.Kill()
		<-b.done
		return nil
	}
}

// waitSocket waits until something accepts connections on the unix socket at
// path, failing early if the broker exits or ctx ends.
func waitSocket(ctx context.Context, b *brokerProc, path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		if b != nil {
			if dead, err := b.exited(); dead {
				return fmt.Errorf("broker exited (%s) while waiting for %s", exitDesc(err), path)
			}
		}
		d := net.Dialer{Timeout: 500 * time.Millisecond}
		c, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			_ = c.Close()
			return nil
		}
		lastErr = err
		if time.Now().After(deadline) {
			return fmt.Errorf("socket %s not ready after %v: %v", path, timeout, lastErr)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// runSgctl runs sgctl with args and a bounded time, returning its output in
// the error if it fails.
func runSgctl(ctx context.Context, bin string, args ...string) error {
	_, err := runSgctlOut(ctx, bin, args...)
	return err
}

// runSgctlOut is runSgctl returning sgctl's stdout.
func runSgctlOut(ctx context.Context, bin string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("sgctl %s: %v\n%s", strings.Join(args, " "), err,
			strings.TrimSpace(stderr.String()+"\n"+stdout.String()))
	}
	return stdout.Bytes(), nil
}

// exitDesc describes a Wait result, including a clean exit.
func exitDesc(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}
