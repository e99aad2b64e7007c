package denylog

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

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

// fakeStore records what the writer commits; err fails every append.
type fakeStore struct {
	batches [][]store.Denial
	rets    []store.DenialRetention
	prunes  int
	evict   int // reported as evicted per append
	err     error
}

func (f *fakeStore) AppendDenials(recs []store.Denial, ret store.DenialRetention) (int, error) {
	if f.err != nil {
		return 0, f.err
	}
	f.batches = append(f.batches, slices.Clone(recs))
	f.rets = append(f.rets, ret)
	return f.evict, nil
}

func (f *fakeStore) PruneDenials(store.DenialRetention, time.Time) (int, error) {
	f.prunes++
	return 0, nil
}

// The writer over a fake store: records queued before stop closes are
// all committed, in order, in batches of at most denyBatchMax, with the
// retention they were configured with; a failed commit counts its records
// as dropped; pruning runs only when a bound is set. Run is called after
// stop is closed, so it drains and returns without any timing.
func TestDenyLogWriter(t *testing.T) {
	huge := strings.Repeat("p", 1<<20)
	tests := []struct {
		name        string
		n           int
		ret         store.DenialRetention
		evict       int
		err         error
		wantWritten uint64
		wantDropped uint64
		wantPrunes  int
		wantLogged  string
	}{
		{name: "drains every queued record", n: 3000, wantWritten: 3000},
		{name: "retention is passed and pruning runs", n: 10, ret: store.DenialRetention{MaxPerTenant: 5, MaxAge: time.Hour}, evict: 5,
			wantWritten: 10, wantPrunes: 2},
		{name: "a failed commit drops its records", n: 10, err: errors.New("no space left on device"),
			wantDropped: 10, wantLogged: "deny_log_write_failed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := &fakeStore{evict: tc.evict, err: tc.err}
			var logged strings.Builder
			l := New(fs, slog.New(slog.NewTextHandler(&logged, nil)), Config{Retention: tc.ret})
			changed := l.Changed()
			for i := range tc.n {
				l.Record(store.Denial{Socket: "s", Path: fmt.Sprintf("/p/%d", i), Reason: huge})
			}
			stop := make(chan struct{})
			close(stop)
			l.Run(stop)

			if l.Written() != tc.wantWritten || l.Dropped() != tc.wantDropped || fs.prunes != tc.wantPrunes {
				t.Fatalf("written %d dropped %d prunes %d, want %d %d %d",
					l.Written(), l.Dropped(), fs.prunes, tc.wantWritten, tc.wantDropped, tc.wantPrunes)
			}
			if tc.wantLogged != "" && !strings.Contains(logged.String(), tc.wantLogged) {
				t.Fatalf("log %q lacks %s", logged.String(), tc.wantLogged)
			}
			if l.queued.Load() != 0 {
				t.Fatalf("queue accounting off by %d", l.queued.Load())
			}
			next := 0
			for _, b := range fs.batches {
				if len(b) > denyBatchMax {
					t.Fatalf("a batch of %d records", len(b))
				}
				for _, d := range b {
					if d.Path != fmt.Sprintf("/p/%d", next) || len(d.Reason) >= len(huge) {
						t.Fatalf("record %d: path %q, reason of %d bytes (not clipped?)", next, d.Path, len(d.Reason))
					}
					next++
				}
			}
			for _, r := range fs.rets {
				if r != tc.ret {
					t.Fatalf("committed with retention %+v, want %+v", r, tc.ret)
				}
			}
			if uint64(next) != tc.wantWritten || l.Evicted() != uint64(tc.evict*len(fs.batches)) {
				t.Fatalf("store got %d records, evicted %d", next, l.Evicted())
			}
			select {
			case <-changed:
				if tc.wantWritten == 0 {
					t.Fatal("Changed closed without a commit")
				}
			default:
				if tc.wantWritten > 0 {
					t.Fatal("Changed not closed after a commit")
				}
			}
		})
	}
}
