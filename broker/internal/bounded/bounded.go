// Package bounded owns the bounds on input the broker did not choose:
// Quote for error messages and logs, Clip for stored fields, ReadAll for
// bodies. Each bounds what it returns, whatever the input's length.
package bounded

import (
	"errors"
	"io"
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

// ErrTooLarge is returned by ReadAll for input over its limit.
var ErrTooLarge = errors.New("body too large")

// ReadAll reads all of r but never more than limit bytes (a nil r reads as
// empty): beyond the limit it returns ErrTooLarge, whatever Content-Length
// or the sender claimed.
func ReadAll(r io.Reader, limit int64) ([]byte, error) {
	if r == nil {
		return nil, nil
	}
	buf, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(buf)) > limit {
		return nil, ErrTooLarge
	}
	return buf, nil
}
