package denylog

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/sockguard/sockguard/broker/store"
)

// The queue is bounded by bytes: past QueueBytes, records are dropped and
// counted, however few they are.
func TestDenyLogQueueBytes(t *testing.T) {
	l := New(nil, slog.New(slog.NewTextHandler(io.Discard, nil)), Config{QueueBytes: 64 << 10})
	big := strings.Repeat("x", 1<<20)
	for range 200 {
		l.Record(store.Denial{Path: big, Reason: big, RawTarget: big})
	}
	if l.queued.Load() > 64<<10 || l.Dropped() == 0 || len(l.ch)+int(l.Dropped()) != 200 {
		t.Fatalf("queued %d bytes in %d records, dropped %d", l.queued.Load(), len(l.ch), l.Dropped())
	}
	for len(l.ch) > 0 {
		l.take(<-l.ch)
	}
	if l.queued.Load() != 0 {
		t.Fatalf("queue accounting off by %d", l.queued.Load())
	}
}
