package broker

import (
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
)

// ErrStateCorrupt means the state database failed a consistency check or a
// read of it hit a damaged page.
var ErrStateCorrupt = errors.New("state database is damaged")

// guard runs fn and turns a panic, including a memory fault on the
// database's mapping (a truncated or damaged file), into an error wrapping
// ErrStateCorrupt. bbolt panics on pages it cannot interpret; every read of
// the store goes through here so that such a file gets a message, never a
// crash.
func guard(what string, fn func() error) (err error) {
	// A fault on mapped memory is fatal unless the goroutine asks for a
	// panic instead; the setting is per goroutine and restored on return.
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s: %v", ErrStateCorrupt, what, r)
		}
	}()
	return fn()
}

// maxQuoted bounds how much of a caller's input an error message repeats.
const maxQuoted = 64

// quoteBounded quotes at most the first maxQuoted bytes of s, saying how
// long it really was when it was cut: error messages and logs repeat bad
// input, never all of it.
func quoteBounded(s string) string {
	if len(s) <= maxQuoted {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:maxQuoted]) + "... (" + strconv.Itoa(len(s)) + " bytes)"
}
