// Package denylog owns the deny log's write path: the bounded queue that
// takes refusals off the request path without ever blocking it, the one
// writer goroutine that commits them in batches, and the schedule of
// retention. What a record holds, its byte bounds and how it is stored
// and read back belong to package store (Denial, AppendDenials and the
// denials buckets); this package reaches the store only through Store.
package denylog

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockguard/sockguard/broker/store"
)

// Store is what the deny log needs of the state store: one transaction
// that appends a batch and applies the count bounds, and the age bound.
// *store.Store implements it.
type Store interface {
	AppendDenials(recs []store.Denial, ret store.DenialRetention) (evicted int, err error)
	PruneDenials(ret store.DenialRetention, now time.Time) (removed int, err error)
}

var _ Store = (*store.Store)(nil)

// DenyLog records refusals off the request path. Record never blocks: it
// bounds the record's fields and hands it to a buffered channel; when the
// channel holds denyQueueLen records or the queued records hold
// QueueBytes, it drops the record and counts the drop. One writer
// goroutine commits whatever has queued up in a single transaction, so a
// storm of denials becomes a few large batches instead of one fsync per
// request, and applies the count bounds in that same transaction.
type DenyLog struct {
	store      Store
	log        *slog.Logger
	ret        store.DenialRetention
	queueBytes int64

	ch          chan store.Denial
	queued      atomic.Int64 // bytes (store.Denial.Size) in ch
	dropped     atomic.Uint64
	written     atomic.Uint64
	evicted     atomic.Uint64 // removed by the count bounds
	undecodable atomic.Uint64 // records readers skipped because they do not decode

	mu     sync.Mutex
	notify chan struct{} // mu guards notify; closed and replaced after each commit

	// writeFailures logs failed commits with back-off (a full disk under a
	// flood would otherwise be an ERROR line per batch).
	writeFailures *failureLog
}

// writeFailureLogEvery is how often a run of failed deny-log writes is
// summarized in the log.
const writeFailureLogEvery = 10 * time.Second

// Config bounds the deny log.
type Config struct {
	Retention store.DenialRetention
	// QueueBytes bounds what waits for the writer (default
	// defaultDenyQueueBytes).
	QueueBytes int64
}

const defaultDenyQueueBytes = 4 << 20

const (
	denyQueueLen = 8192
	denyBatchMax = 1024
	// denyBatchWait is how long the writer gathers records after the first
	// one before committing: one fsync per window instead of one per
	// denial. A crash loses at most this window.
	denyBatchWait = 20 * time.Millisecond
	// pruneEvery paces the age bound; the count bounds are applied with
	// every commit.
	pruneEvery = 30 * time.Second
)

// New returns a deny log writing to st. Run starts its writer.
func New(st Store, log *slog.Logger, cfg Config) *DenyLog {
	if cfg.QueueBytes <= 0 {
		cfg.QueueBytes = defaultDenyQueueBytes
	}
	return &DenyLog{
		store:      st,
		log:        log,
		ret:        cfg.Retention,
		queueBytes: cfg.QueueBytes,
		ch:         make(chan store.Denial, denyQueueLen),
		notify:     make(chan struct{}),

		writeFailures: newFailureLog(log, "deny_log_write_failed", "deny_log_write_recovered", writeFailureLogEvery),
	}
}

// Record queues d for writing. It never waits. Its fields are clipped to
// their bounds first, so the queue holds at most QueueBytes whatever the
// requests looked like.
func (l *DenyLog) Record(d store.Denial) {
	d.Bound()
	n := int64(d.Size())
	if l.queued.Add(n) > l.queueBytes {
		l.queued.Add(-n)
		l.dropped.Add(1)
		return
	}
	select {
	case l.ch <- d:
	default:
		l.queued.Add(-n)
		l.dropped.Add(1)
	}
}

// take accounts for a record the writer took off the queue.
func (l *DenyLog) take(d store.Denial) store.Denial {
	l.queued.Add(-int64(d.Size()))
	return d
}

// Evicted is the number of records the count bounds removed.
func (l *DenyLog) Evicted() uint64 { return l.evicted.Load() }

// Undecodable is the number of stored records readers skipped because they
// do not decode.
func (l *DenyLog) Undecodable() uint64 { return l.undecodable.Load() }

// ReportSkipped counts and reports, once per read, the records a reader passed
// over.
func (l *DenyLog) ReportSkipped(s store.Skipped, reader string) {
	if s.N == 0 {
		return
	}
	l.undecodable.Add(uint64(s.N))
	l.log.Warn("deny_log_records_skipped", "reader", reader, "records", s.N, "first_id", s.First, "err", s.Err)
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

// Run writes batches until stop is closed, then drains what is queued and
// returns. Records queued before stop closes are not lost.
func (l *DenyLog) Run(stop <-chan struct{}) {
	prune := time.NewTicker(pruneEvery)
	defer prune.Stop()
	l.prune()
	batch := make([]store.Denial, 0, denyBatchMax)
	for {
		select {
		case d := <-l.ch:
			batch = l.gather(append(batch[:0], l.take(d)), stop)
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
func (l *DenyLog) gather(batch []store.Denial, stop <-chan struct{}) []store.Denial {
	t := time.NewTimer(denyBatchWait)
	defer t.Stop()
	for len(batch) < denyBatchMax {
		select {
		case d := <-l.ch:
			batch = append(batch, l.take(d))
		case <-t.C:
			return batch
		case <-stop:
			return l.fill(batch)
		}
	}
	return batch
}

// fill appends whatever is queued right now, up to the batch limit.
func (l *DenyLog) fill(batch []store.Denial) []store.Denial {
	for len(batch) < denyBatchMax {
		select {
		case d := <-l.ch:
			batch = append(batch, l.take(d))
		default:
			return batch
		}
	}
	return batch
}

func (l *DenyLog) commit(batch []store.Denial) {
	n, err := l.store.AppendDenials(batch, l.ret)
	if err != nil {
		l.dropped.Add(uint64(len(batch)))
		l.writeFailures.fail(err, "records", len(batch))
		return
	}
	l.writeFailures.ok()
	l.written.Add(uint64(len(batch)))
	l.evicted.Add(uint64(n))
	l.mu.Lock()
	close(l.notify)
	l.notify = make(chan struct{})
	l.mu.Unlock()
}

func (l *DenyLog) prune() {
	r := l.ret
	if r.MaxRecords <= 0 && r.MaxPerTenant <= 0 && r.MaxAge <= 0 {
		return
	}
	n, err := l.store.PruneDenials(r, time.Now())
	if err != nil {
		l.log.Error("deny_log_prune_failed", "err", err)
	} else if n > 0 {
		l.log.Debug("deny_log_pruned", "records", n)
	}
}
