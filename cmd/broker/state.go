package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"

	"github.com/sockguard/sockguard/broker"
	"github.com/sockguard/sockguard/broker/store"
)

const stateUsage = `Usage: broker state check|restore|compact [flags] [FILE]

Offline operations on a stopped broker's state directory. Each takes the
directory's lock, so they refuse to run while a broker uses it.

  check     check state.db the way a start would (marker, consistency,
            every tenant record) and report; changes nothing.
            Exit 0: the broker starts with every tenant; 1: it would refuse
            to start or mark a tenant failed.
  restore FILE
            install FILE (from sgctl backup) as state.db. The file is
            checked first; a state.db already there is kept as
            state.db.replaced-TIME; the marker is set to FILE's broker id.
            Every tenant comes back with the id it has in FILE.
  compact   rewrite state.db with only live data (the file never shrinks on
            its own, e.g. after a deny flood) and rename it into place.

Flags:
`

func runState(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, stateUsage)
		stateFlags(new(stateOptions), stderr).PrintDefaults()
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	verb := args[0]
	var o stateOptions
	fs := stateFlags(&o, stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, stateUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	want := 0
	if verb == "restore" {
		want = 1
	}
	if fs.NArg() != want {
		fmt.Fprintf(stderr, "broker state %s: want %d argument(s), got %d (see broker state --help)\n", verb, want, fs.NArg())
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	switch verb {
	case "check":
		return stateCheck(o, stdout, stderr)
	case "restore":
		rep, replaced, err := store.Restore(o.stateDir, fs.Arg(0), log)
		if err != nil {
			fmt.Fprintf(stderr, "broker state restore: %s\n", graphic(err.Error()))
			return 1
		}
		if replaced != "" {
			fmt.Fprintf(stdout, "kept the previous state.db as %s\n", replaced)
		}
		fmt.Fprintf(stdout, "restored %s into %s: broker %s, %d tenants, %d deny-log records\n",
			fs.Arg(0), o.stateDir, printable(rep.BrokerID), len(rep.Tenants), rep.Denials)
		for _, t := range rep.Tenants {
			if t.Tenant != nil {
				fmt.Fprintf(stdout, "  %s\t%s\n", printable(t.Key), printable(t.Tenant.ID))
			}
		}
		return 0
	case "compact":
		before, after, err := store.Compact(o.stateDir)
		if err != nil {
			fmt.Fprintf(stderr, "broker state compact: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "compacted %s/state.db: %d -> %d bytes\n", o.stateDir, before, after)
		return 0
	}
	fmt.Fprintf(stderr, "broker state: unknown operation %q: use check, restore or compact\n", verb)
	return 2
}

type stateOptions struct {
	stateDir  string
	presetDir string
}

func stateFlags(o *stateOptions, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("broker state", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&o.stateDir, "state-dir", "/var/lib/sockguard", "the stopped broker's state `directory`")
	fs.StringVar(&o.presetDir, "preset-dir", "", "check: the broker's --preset-dir, so tenants on operator presets are judged too")
	return fs
}

func stateCheck(o stateOptions, stdout, stderr io.Writer) int {
	catalog, err := broker.LoadCatalog(o.presetDir)
	if err != nil {
		fmt.Fprintf(stderr, "broker state check: %s\n", graphic(err.Error()))
		return 1
	}
	c, err := broker.CheckState(o.stateDir, catalog)
	if err != nil {
		fmt.Fprintf(stderr, "broker state check: the broker would refuse to start: %s\n", graphic(err.Error()))
		return 1
	}
	r := c.Report
	fmt.Fprintf(stdout, "file:      %s (%d bytes)\nbroker id: %s\nschema:    %s\ntenants:   %d\ndenials:   %d\n",
		r.Path, r.Size, printable(r.BrokerID), printable(r.Schema), len(c.Tenants), r.Denials)
	bad := 0
	for _, t := range c.Tenants {
		if t.Err != nil {
			bad++
			fmt.Fprintf(stdout, "  %-24s FAILED  %v\n", printable(t.Name), t.Err)
			continue
		}
		fmt.Fprintf(stdout, "  %-24s ok      %s\n", t.Name, t.ID)
	}
	for _, p := range c.Problems {
		fmt.Fprintf(stdout, "note: %s\n", graphic(p))
	}
	if bad > 0 {
		fmt.Fprintf(stdout, "%d tenant record(s) would be marked failed\n", bad)
		return 1
	}
	fmt.Fprintln(stdout, "ok")
	return 0
}

// graphic shows text read from a state file (an error naming a damaged or
// crafted record, a note) with control characters escaped, whole.
func graphic(s string) string {
	q := strconv.QuoteToGraphic(s)
	return q[1 : len(q)-1]
}

// printable shows a stored key safely: a damaged one can hold anything.
func printable(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	q := strconv.QuoteToGraphic(s)
	return q[1 : len(q)-1]
}
