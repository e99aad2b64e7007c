package broker

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// notifier speaks systemd's readiness protocol (sd_notify(3)): one
// datagram of newline-separated KEY=VALUE pairs to the unix socket named
// by $NOTIFY_SOCKET, a path or, with a leading '@', an abstract name. A
// nil notifier (no $NOTIFY_SOCKET: not started by systemd) sends nothing.
//
// The broker sends READY=1 once the admin socket, every tenant socket and
// the metrics and health listeners accept connections; RELOADING=1 with
// MONOTONIC_USEC when a SIGHUP reload begins and READY=1 when it ends;
// STOPPING=1 when shutdown begins; STATUS= lines say what it is doing.
type notifier struct {
	addr *net.UnixAddr
}

// NewNotifier returns a Notifier for the $NOTIFY_SOCKET value socket, or
// nil when it is empty or not a unix socket name.
func NewNotifier(socket string) *notifier {
	switch {
	case socket == "":
		return nil
	case strings.HasPrefix(socket, "@"):
		// Abstract namespace: the kernel name starts with a NUL byte,
		// which Go's net package writes for a leading '@'.
	case !strings.HasPrefix(socket, "/"):
		return nil // vsock and other forms are not for a host daemon
	}
	return &notifier{addr: &net.UnixAddr{Name: socket, Net: "unixgram"}}
}

// Notify sends one state message; the pairs are joined by newlines.
func (n *notifier) Notify(pairs ...string) error {
	if n == nil {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(strings.Join(pairs, "\n") + "\n")); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, what systemd compares
// RELOADING=1's MONOTONIC_USEC against.
func monotonicUsec() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return strconv.FormatInt(time.Now().UnixMicro(), 10)
	}
	return strconv.FormatInt(ts.Sec*1e6+ts.Nsec/1e3, 10)
}
