package main

import (
	"flag"
	"io"
	"os"
	"strings"
	"testing"
)

// TestReadmeNamesEveryFlag: the README's flag table ("Running the broker")
// names every flag the broker has, so a new flag cannot land undocumented
// and the table cannot silently fall behind `broker --help`.
func TestReadmeNamesEveryFlag(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatalf("read README: %v", err)
	}
	text := string(readme)
	fs := newFlagSet(&options{}, io.Discard)
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		n++
		if !strings.Contains(text, "`--"+f.Name+"`") && !strings.Contains(text, "`--"+f.Name+" ") {
			t.Errorf("README.md does not name the broker flag --%s (add it to the flag table under \"Running the broker\")", f.Name)
		}
	})
	if n < 10 {
		t.Fatalf("the broker's flag set has %d flags: the test is not looking at it", n)
	}
}
