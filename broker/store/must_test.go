package store

import "testing"

// must stops the test at a failed setup step: a fixture that silently
// failed would let the assertions after it pass for the wrong reason.
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
