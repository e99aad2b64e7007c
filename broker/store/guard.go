package store

import (
	"errors"
	"fmt"
	"runtime/debug"
)

// errCorrupt means the state database failed a consistency check or a
// read of it hit a damaged page.
var errCorrupt = errors.New("state database is damaged")

// guard runs fn and turns a panic, including a memory fault on the
// database's mapping (a truncated or damaged file), into an error wrapping
// ErrCorrupt. bbolt panics on pages it cannot interpret; every read of
// the store goes through here so that such a file gets a message, never a
// crash.
func guard(what string, fn func() error) (err error) {
	// A fault on mapped memory is fatal unless the goroutine asks for a
	// panic instead; the setting is per goroutine and restored on return.
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s: %v", errCorrupt, what, r)
		}
	}()
	return fn()
}
