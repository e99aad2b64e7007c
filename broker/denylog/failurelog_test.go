package denylog

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestFailureLogBacksOff: a run of failures is one line, then one summary
// per interval with the count, then one line when writes succeed again.
func TestFailureLogBacksOff(t *testing.T) {
	var buf bytes.Buffer
	f := newFailureLog(slog.New(slog.NewTextHandler(&buf, nil)), "write_failed", "write_recovered", 10*time.Second)
	start := time.Unix(1000, 0)
	now := start
	f.now = func() time.Time { return now }
	disk := errors.New("no space left on device")
	for range 470 { // 47 a second for 10 s
		f.fail(disk)
		now = now.Add(time.Second / 47)
	}
	now = start.Add(10 * time.Second)
	f.fail(disk) // the interval is over: the summary
	f.ok()
	f.ok()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 lines (first, summary, recovered), got %d:\n%s", len(lines), buf.String())
	}
	for i, want := range []string{"msg=write_failed err=\"no space left on device\" failures=1 ", "msg=write_failed err=\"no space left on device\" failures=470 failing_for=10s", "msg=write_recovered failures=471 unreported=0"} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("line %d: %s\nwant it to contain %s", i, lines[i], want)
		}
	}
}
