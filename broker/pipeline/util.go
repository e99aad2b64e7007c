package pipeline

import (
	"strconv"
	"unicode/utf8"
)

// clip bounds s to n bytes for a reason or a log, marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	mark := "...(" + strconv.Itoa(len(s)) + " bytes)"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	if cut < 0 {
		cut = 0
	}
	return s[:cut] + mark
}
