package broker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sockguard/sockguard/broker/store"
	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
)

// backupChunk is the most snapshot bytes one BackupState message carries.
const backupChunk = 64 << 10

// backupTimeout bounds how long one backup may hold its read transaction.
const backupTimeout = 10 * time.Minute

// BackupState streams a snapshot of the store from one read transaction,
// then its size and SHA-256. The broker keeps serving meanwhile.
func (s *service) BackupState(req *sockguardv1.BackupStateRequest, stream sockguardv1.SockguardService_BackupStateServer) error {
	err := s.backupState(stream)
	s.b.audit.record(stream.Context(), store.AuditEvent{Action: AuditBackup}, err)
	return err
}

func (s *service) backupState(stream sockguardv1.SockguardService_BackupStateServer) error {
	if !s.b.backingUp.CompareAndSwap(false, true) {
		return status.Error(codes.ResourceExhausted, "a backup is already running; try again when it finishes")
	}
	defer s.b.backingUp.Store(false)
	ctx, cancel := context.WithTimeout(stream.Context(), backupTimeout)
	defer cancel()
	w := &chunkSender{ctx: ctx, send: stream.Send, sum: sha256.New(), buf: make([]byte, 0, backupChunk)}
	snap, err := s.b.store.Backup(w)
	if err == nil {
		err = w.flush()
	}
	if err != nil {
		s.b.log.Warn("backup_failed", "err", err)
		return toStatus(err)
	}
	s.b.log.Info("backup_sent", "bytes", snap.Size, "tenants", snap.Tenants)
	return stream.Send(&sockguardv1.BackupStateResponse{
		Size: uint64(snap.Size), Sha256: hex.EncodeToString(w.sum.Sum(nil)),
		BrokerId: snap.BrokerID, TenantCount: uint32(snap.Tenants),
	})
}

// chunkSender is an io.Writer that sends what it is given in chunks of
// backupChunk bytes and hashes it on the way.
type chunkSender struct {
	ctx  context.Context
	send func(*sockguardv1.BackupStateResponse) error
	sum  hash.Hash
	buf  []byte
}

func (c *chunkSender) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		k := min(len(p), backupChunk-len(c.buf))
		c.buf = append(c.buf, p[:k]...)
		p = p[k:]
		if len(c.buf) == backupChunk {
			if err := c.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (c *chunkSender) flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	if err := c.ctx.Err(); err != nil {
		return err
	}
	c.sum.Write(c.buf)
	// A sent message must not change afterwards: each chunk gets its own buffer.
	if err := c.send(&sockguardv1.BackupStateResponse{Chunk: c.buf}); err != nil {
		return err
	}
	c.buf = make([]byte, 0, backupChunk)
	return nil
}
