package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	sockguardv1 "github.com/sockguard/sockguard/proto/sockguard/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// newTable returns a tabwriter for ctr-style columns; the caller flushes it.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
}

// kv is one "key: value" line.
type kv struct{ key, value string }

// printKV writes aligned "key: value" lines.
func printKV(w io.Writer, lines []kv) error {
	tw := tabwriter.NewWriter(w, 0, 8, 1, ' ', 0)
	for _, l := range lines {
		v := cell(l.value)
		if v == "" {
			v = "-"
		}
		fmt.Fprintf(tw, "%s:\t%s\n", l.key, v)
	}
	return tw.Flush()
}

// cell makes s safe for one table cell on a terminal: control characters
// (tabs, newlines, escape sequences) are shown escaped. Denial records carry
// paths and reasons that a tenant chose, and must not be able to rewrite the
// operator's terminal or the table's layout.
func cell(s string) string {
	clean := true
	for _, r := range s {
		if unicode.IsControl(r) || r == utf8.RuneError {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	q := strconv.QuoteToGraphic(s)
	return q[1 : len(q)-1]
}

// oneLine folds a message onto one line, safe for a terminal: error
// messages come from the broker (or whatever answers at a context's
// address), so control characters are shown escaped as in cell.
func oneLine(s string) string {
	return cell(strings.Join(strings.Fields(s), " "))
}

// text makes a multi-line document (a preset's YAML source) safe for a
// terminal: lines and tabs stay, every other control character is shown
// escaped as in cell.
func text(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		parts := strings.Split(l, "\t")
		for j, p := range parts {
			parts[j] = cell(p)
		}
		lines[i] = strings.Join(parts, "\t")
	}
	return strings.Join(lines, "\n")
}

// truncate shortens s to at most n runes, marking the cut with "...".
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-3]) + "..."
}

func formatTime(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return ts.AsTime().Local().Format("2006-01-02 15:04:05")
}

func formatTimeLong(ts *timestamppb.Timestamp, now time.Time) string {
	if ts == nil {
		return "-"
	}
	t := ts.AsTime()
	s := t.Local().Format(time.RFC3339)
	if d := now.Sub(t); d >= 0 {
		s += fmt.Sprintf(" (%s ago)", d.Round(time.Second))
	}
	return s
}

func formatMode(m uint32) string { return fmt.Sprintf("%#04o", m) }

func policyModeName(m sockguardv1.PolicyMode) string {
	switch m {
	case sockguardv1.PolicyMode_POLICY_MODE_ENFORCE, sockguardv1.PolicyMode_POLICY_MODE_UNSPECIFIED:
		return "enforce"
	case sockguardv1.PolicyMode_POLICY_MODE_AUDIT:
		return "audit"
	}
	return m.String()
}

func parsePolicyMode(s string) (sockguardv1.PolicyMode, error) {
	switch strings.ToLower(s) {
	case "enforce":
		return sockguardv1.PolicyMode_POLICY_MODE_ENFORCE, nil
	case "audit":
		return sockguardv1.PolicyMode_POLICY_MODE_AUDIT, nil
	}
	return 0, usagef("--policy-mode %q: want enforce or audit", s)
}

func socketStateName(s sockguardv1.SocketState) string {
	switch s {
	case sockguardv1.SocketState_SOCKET_STATE_SERVING:
		return "serving"
	case sockguardv1.SocketState_SOCKET_STATE_FAILED:
		return "failed"
	case sockguardv1.SocketState_SOCKET_STATE_DELETING:
		return "deleting"
	case sockguardv1.SocketState_SOCKET_STATE_UNSPECIFIED:
		return "unknown"
	}
	return s.String()
}

const reasonEnumPrefix = "DENIAL_REASON_"

// reasonName is the lower-kebab form of a denial reason: rule-denied,
// host-namespace, ...
func reasonName(r sockguardv1.DenialReason) string {
	if r == sockguardv1.DenialReason_DENIAL_REASON_UNSPECIFIED {
		return "-"
	}
	name, ok := sockguardv1.DenialReason_name[int32(r)]
	if !ok {
		return strconv.Itoa(int(r))
	}
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(name, reasonEnumPrefix)), "_", "-")
}

// reasonNames lists the accepted --reason values.
func reasonNames() []string {
	var names []string
	for i := int32(1); ; i++ {
		if _, ok := sockguardv1.DenialReason_name[i]; !ok {
			return names
		}
		names = append(names, reasonName(sockguardv1.DenialReason(i)))
	}
}

// parseReason accepts the kebab form (rule-denied) and the enum name
// (DENIAL_REASON_RULE_DENIED).
func parseReason(s string) (sockguardv1.DenialReason, error) {
	enum := strings.ToUpper(strings.ReplaceAll(s, "-", "_"))
	if !strings.HasPrefix(enum, reasonEnumPrefix) {
		enum = reasonEnumPrefix + enum
	}
	if v, ok := sockguardv1.DenialReason_value[enum]; ok && v != 0 {
		return sockguardv1.DenialReason(v), nil
	}
	return 0, usagef("--reason %q: want one of %s", s, strings.Join(reasonNames(), ", "))
}

func formatPeers(p *sockguardv1.AllowedPeers) string {
	if len(p.GetUids()) == 0 && len(p.GetGids()) == 0 {
		return "any process that can open the socket file (owner/mode are the only gate)"
	}
	var parts []string
	if len(p.GetUids()) > 0 {
		parts = append(parts, "uid "+joinIDs(p.GetUids()))
	}
	if len(p.GetGids()) > 0 {
		parts = append(parts, "gid "+joinIDs(p.GetGids()))
	}
	return strings.Join(parts, "; ")
}

func joinIDs(ids []uint32) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatUint(uint64(id), 10)
	}
	return strings.Join(s, ", ")
}

func formatBindRoots(o *sockguardv1.SocketOverrides) string {
	roots := o.GetAllowedBindRoots()
	if len(roots) == 0 {
		return "none beyond the preset"
	}
	s := make([]string, len(roots))
	for i, r := range roots {
		s[i] = r.GetPath()
		if r.GetReadOnly() {
			s[i] += " (read-only)"
		}
	}
	return strings.Join(s, ", ")
}

// socketDetails is the key: value view of a socket shared by inspect,
// update and create.
func (c *cli) socketDetails(s *sockguardv1.Socket) []kv {
	state := socketStateName(s.GetState())
	if s.GetStateMessage() != "" {
		state += ": " + s.GetStateMessage()
	}
	cnt := s.GetCounters()
	return []kv{
		{"name", s.GetName()},
		{"tenant id", s.GetTenantId()},
		{"path", s.GetPath()},
		{"preset", s.GetPreset()},
		{"policy mode", policyModeName(s.GetPolicyMode())},
		{"bind roots", formatBindRoots(s.GetOverrides())},
		{"owner", fmt.Sprintf("%d:%d", s.GetOwnerUid(), s.GetOwnerGid())},
		{"file mode", formatMode(s.GetFileMode())},
		{"peers", formatPeers(s.GetAllowedPeers())},
		{"state", state},
		{"created", formatTimeLong(s.GetCreateTime(), c.now())},
		{"requests", fmt.Sprintf("%d allowed, %d denied", cnt.GetRequestsAllowed(), cnt.GetRequestsDenied())},
		{"connections", fmt.Sprintf("%d open", cnt.GetActiveConnections())},
	}
}

// dockerHostHint is the line a runner needs to use its socket.
func dockerHostHint(path string) string {
	return "export DOCKER_HOST=unix://" + path
}
