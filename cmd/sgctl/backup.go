package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
)

// backupTimeout bounds a whole backup (the broker holds a read transaction
// for as long as it runs).
const backupTimeout = 10 * time.Minute

func backupCommand() *command {
	return &command{
		name:  "backup",
		usage: "backup FILE",
		short: "Save a consistent snapshot of the broker's state to FILE",
		long: "Streams a consistent snapshot of the broker's state (every tenant with its id, and the deny log) " +
			"while the broker keeps serving, and writes it to FILE (mode 0600). FILE must not exist. The copy is " +
			"checked against the size and SHA-256 the broker sends last; an incomplete copy is removed. Restore it " +
			"on a stopped broker with: broker state restore --state-dir DIR FILE.",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error {
				return c.runBackup(ctx, args)
			}
		},
	}
}

func (c *cli) runBackup(ctx context.Context, args []string) error {
	if err := wantArgs(args, "FILE"); err != nil {
		return err
	}
	if args[0] == "" {
		return usagef("FILE is empty")
	}
	file := args[0]
	if _, err := os.Lstat(file); err == nil {
		return fmt.Errorf("%s already exists; choose a new file name", file)
	}
	tmp := filepath.Join(filepath.Dir(file), "."+filepath.Base(file)+".partial")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			// Only the partial copy this run made: someone else may have
			// replaced the name meanwhile.
			if fi, err := f.Stat(); err == nil {
				if li, err := os.Lstat(tmp); err == nil && os.SameFile(fi, li) {
					os.Remove(tmp)
				}
			}
			f.Close()
		}
	}()
	api, closeConn, err := c.connect()
	if err != nil {
		return err
	}
	defer closeConn()
	ctx, cancel := context.WithTimeout(ctx, max(c.timeout, backupTimeout))
	defer cancel()
	stream, err := api.BackupState(ctx, &sockguardv1.BackupStateRequest{})
	if err != nil {
		return c.rpcError(err)
	}
	sum := sha256.New()
	var n uint64
	var last *sockguardv1.BackupStateResponse
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return c.rpcError(err)
		}
		if len(m.GetChunk()) == 0 {
			last = m
			continue
		}
		if last != nil {
			return errors.New("backup: the broker sent data after the end of the snapshot")
		}
		if _, err := f.Write(m.GetChunk()); err != nil {
			return fmt.Errorf("backup: write %s: %w", tmp, err)
		}
		sum.Write(m.GetChunk())
		n += uint64(len(m.GetChunk()))
	}
	got := hex.EncodeToString(sum.Sum(nil))
	switch {
	case last == nil:
		return errors.New("backup: the stream ended without the snapshot's totals: the copy is incomplete and was removed")
	case last.GetSize() != n || last.GetSha256() != got:
		return fmt.Errorf("backup: received %d bytes (sha256 %s), the broker sent %d (sha256 %s): the copy was removed",
			n, got, last.GetSize(), last.GetSha256())
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	// FILE's directory may be writable by others (a runner's work
	// directory): the copy written is installed by its descriptor, never
	// by the partial file's name, which someone else may have replaced.
	if err := installBackup(f, tmp, file); err != nil {
		return err
	}
	ok = true
	if err := f.Close(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if c.jsonOutput() {
		return c.printJSON(last)
	}
	fmt.Fprintf(c.stdout, "wrote %s: %d bytes, %d tenants, broker %s, sha256 %s\n",
		file, n, last.GetTenantCount(), cell(last.GetBrokerId()), got)
	return nil
}

// installBackup links the file open as f (written to the name tmp) as
// file, failing if file exists, and removes tmp if it still names f. The
// caller closes f.
// Linking by descriptor (/proc/self/fd) installs exactly the bytes that
// were checked, whatever has happened to the name tmp meanwhile. Without
// /proc, the name is linked only while it still names f (a narrow race
// remains there), and a filesystem without hard links gets a rename after
// a last check.
func installBackup(f *os.File, tmp, file string) error {
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	stillOurs := func() bool {
		li, err := os.Lstat(tmp)
		return err == nil && os.SameFile(fi, li)
	}
	err = unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(int(f.Fd())), unix.AT_FDCWD, file, unix.AT_SYMLINK_FOLLOW)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		if !stillOurs() {
			return fmt.Errorf("backup: the partial copy %s was replaced by someone else while the backup ran; nothing was installed", tmp)
		}
		err = os.Link(tmp, file)
	}
	if err != nil {
		if _, serr := os.Lstat(file); errors.Is(err, os.ErrExist) || errors.Is(err, unix.EEXIST) || serr == nil {
			return fmt.Errorf("backup: %s appeared while the backup ran; the copy was removed", file)
		}
		if !stillOurs() {
			return fmt.Errorf("backup: the partial copy %s was replaced by someone else while the backup ran; nothing was installed", tmp)
		}
		if err := os.Rename(tmp, file); err != nil {
			return fmt.Errorf("backup: %w", err)
		}
		return nil
	}
	if stillOurs() {
		os.Remove(tmp)
	}
	return nil
}
