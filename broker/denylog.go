package broker

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// DenyLog records refusals off the request path. Record never blocks: it
// hands the record to a buffered channel and, when the buffer is full,
// drops it and counts the drop. One writer goroutine commits whatever has
// queued up in a single transaction, so a storm of denials becomes a few
// large batches instead of one fsync per request.
type DenyLog struct {
	store    *Store
	log      *slog.Logger
	maxCount int
	maxAge   time.Duration

	ch      chan Denial
	dropped atomic.Uint64
	written atomic.Uint64

	mu     sync.Mutex
	notify chan struct{} // mu guards notify; closed and replaced after each commit

	sincePrune int // records committed since the last prune; writer goroutine only
}

const (
	denyQueueLen = 8192
	denyBatchMax = 1024
	// denyBatchWait is how long the writer gathers records after the first
	// one before committing: one fsync per window instead of one per
	// denial. A crash loses at most this window.
	denyBatchWait = 20 * time.Millisecond
	pruneEvery    = 30 * time.Second
)

// NewDenyLog returns a deny log writing to store. Retention keeps at most
// maxCount records and none older than maxAge (zero disables a bound).
func NewDenyLog(store *Store, log *slog.Logger, maxCount int, maxAge time.Duration) *DenyLog {
	return &DenyLog{
		store:    store,
		log:      log,
		maxCount: maxCount,
		maxAge:   maxAge,
		ch:       make(chan Denial, denyQueueLen),
		notify:   make(chan struct{}),
	}
}

// Record queues d for writing. It never waits.
func (l *DenyLog) Record(d Denial) {
	select {
	case l.ch <- d:
	default:
		l.dropped.Add(1)
	}
}

// Dropped is the number of records dropped because the writer was behind.
func (l *DenyLog) Dropped() uint64 { return l.dropped.Load() }

// Written is the number of records committed to the store.
func (l *DenyLog) Written() uint64 { return l.written.Load() }

// Changed returns a channel that is closed after the next commit.
func (l *DenyLog) Changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.notify
}

// run writes batches until stop is closed, then drains what is queued and
// returns. Records queued before stop closes are not lost.
func (l *DenyLog) run(stop <-chan struct{}) {
	prune := time.NewTicker(pruneEvery)
	defer prune.Stop()
	l.prune()
	batch := make([]Denial, 0, denyBatchMax)
	for {
		select {
		case d := <-l.ch:
			batch = l.gather(append(batch[:0], d), stop)
			l.commit(batch)
		case <-prune.C:
			l.prune()
		case <-stop:
			for {
				batch = l.fill(batch[:0])
				if len(batch) == 0 {
					l.prune()
					return
				}
				l.commit(batch)
			}
		}
	}
}

// gather collects records for up to denyBatchWait (or until the batch is
// full, or stop closes).
func (l *DenyLog) gather(batch []Denial, stop <-chan struct{}) []Denial {
	t := time.NewTimer(denyBatchWait)
	defer t.Stop()
	for len(batch) < denyBatchMax {
		select {
		case d := <-l.ch:
			batch = append(batch, d)
		case <-t.C:
			return batch
		case <-stop:
			return l.fill(batch)
		}
	}
	return batch
}

// fill appends whatever is queued right now, up to the batch limit.
func (l *DenyLog) fill(batch []Denial) []Denial {
	for len(batch) < denyBatchMax {
		select {
		case d := <-l.ch:
			batch = append(batch, d)
		default:
			return batch
		}
	}
	return batch
}

func (l *DenyLog) commit(batch []Denial) {
	if err := l.store.AppendDenials(batch); err != nil {
		l.dropped.Add(uint64(len(batch)))
		l.log.Error("deny_log_write_failed", "records", len(batch), "err", err)
		return
	}
	l.written.Add(uint64(len(batch)))
	l.mu.Lock()
	close(l.notify)
	l.notify = make(chan struct{})
	l.mu.Unlock()
	// Under a flood, enforce the count bound every tenth of it rather than
	// waiting for the timer, so the store stays near its bound.
	l.sincePrune += len(batch)
	if l.maxCount > 0 && l.sincePrune >= max(l.maxCount/10, denyBatchMax) {
		l.prune()
	}
}

func (l *DenyLog) prune() {
	if l.maxCount <= 0 && l.maxAge <= 0 {
		return
	}
	l.sincePrune = 0
	n, err := l.store.PruneDenials(l.maxCount, l.maxAge, time.Now())
	if err != nil {
		l.log.Error("deny_log_prune_failed", "err", err)
	} else if n > 0 {
		l.log.Debug("deny_log_pruned", "records", n)
	}
}
