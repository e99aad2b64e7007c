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
	"time"

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
			f.Close()
			os.Remove(tmp)
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
	if err := f.Close(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	// Link, not rename: it fails if FILE appeared meanwhile, never replacing
	// it. A filesystem without hard links gets a rename after a last check.
	if err := os.Link(tmp, file); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("backup: %s appeared while the backup ran; the copy was removed", file)
		}
		if _, serr := os.Lstat(file); serr == nil {
			return fmt.Errorf("backup: %s appeared while the backup ran; the copy was removed", file)
		}
		if err := os.Rename(tmp, file); err != nil {
			return fmt.Errorf("backup: %w", err)
		}
	}
	os.Remove(tmp)
	ok = true
	if c.jsonOutput() {
		return c.printJSON(last)
	}
	fmt.Fprintf(c.stdout, "wrote %s: %d bytes, %d tenants, broker %s, sha256 %s\n",
		file, n, last.GetTenantCount(), cell(last.GetBrokerId()), got)
	return nil
}
