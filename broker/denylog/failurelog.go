package denylog

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// failureLog logs a repeating failure with back-off: the first failure at
// once, then at most one summary per interval with how many failures it
// stands for, and one line when the operation succeeds again. A full disk
// under a deny flood is one line per interval, not one per batch.
type failureLog struct {
	log       *slog.Logger
	msg       string // logged for the first failure and each summary
	recovered string // logged on the first success after failures
	every     time.Duration
	now       func() time.Time

	mu      sync.Mutex // guards the fields below
	pending uint64     // failures not yet reported
	total   uint64     // failures since the last success
	last    time.Time  // when the last line was written
	since   time.Time  // when this run of failures began
}

func newFailureLog(log *slog.Logger, msg, recovered string, every time.Duration) *failureLog {
	return &failureLog{log: log, msg: msg, recovered: recovered, every: every, now: time.Now}
}

// fail records one failure; attrs describe this one (the latest is what a
// summary shows).
func (f *failureLog) fail(err error, attrs ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.total++
	f.pending++
	now := f.now()
	if f.total == 1 {
		f.since = now
	}
	if f.total > 1 && now.Sub(f.last) < f.every {
		return
	}
	f.last = now
	args := append([]any{"err", err, "failures", f.pending, "failing_for", now.Sub(f.since).Round(time.Second)}, attrs...)
	f.pending = 0
	f.log.Log(context.Background(), slog.LevelError, f.msg, args...)
}

// ok records a success, ending a run of failures.
func (f *failureLog) ok() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.total == 0 {
		return
	}
	f.log.Log(context.Background(), slog.LevelWarn, f.recovered, "failures", f.total, "unreported", f.pending)
	f.total, f.pending = 0, 0
}
