// Package bounded owns the two ways the broker repeats input it did not
// choose: Quote for error messages and logs, Clip for stored fields. Both
// bound what they return, whatever the input's length.
package bounded

import (
	"strconv"
	"unicode/utf8"
)

// maxQuoted bounds how much of a caller's input an error message repeats.
const maxQuoted = 64

// Quote quotes at most the first MaxQuoted bytes of s, saying how long it
// really was when it was cut: error messages and logs repeat bad input,
// never all of it.
func Quote(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:maxQuoted]) + "... (" + strconv.Itoa(len(s)) + " bytes)"
}

// Clip returns s if it has at most n bytes, else a prefix of it cut at a
// UTF-8 boundary and marked with the original length, n bytes at most in
// all. n must be at least 32.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	mark := "...(" + strconv.Itoa(len(s)) + " bytes)"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
