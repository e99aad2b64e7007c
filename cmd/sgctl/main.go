// Command sgctl is the admin CLI of the sockguard broker: a thin client of the
// broker's gRPC admin API (sockguard.v1) that prints tables for people and
// protojson for scripts. It holds no state and makes no decisions: every rule
// is enforced by the broker, and client-side checks only catch typos early.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

// version is the client version, set at build time with
// -ldflags "-X main.version=...".
var version = "dev"

const (
	defaultAdminSocket = "/run/sockguard/admin.sock"
	adminSocketEnv     = "SGCTL_ADMIN_SOCKET"
	defaultTimeout     = 10 * time.Second
)

// Exit codes. check exits exitFailure when the request would be denied and
// exitCheckError when it could not get an answer.
const (
	exitOK         = 0
	exitFailure    = 1
	exitUsage      = 2
	exitCheckError = 3
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole program minus os.Exit: it parses args (without the
// program name), runs one command and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := &cli{
		stdin:  os.Stdin,
		stdout: stdout,
		stderr: stderr,
		getenv: os.Getenv,
		now:    time.Now,
	}
	return c.main(ctx, args)
}

// cli carries one invocation's I/O and global flags. Commands are methods on
// it so that tests can run many invocations side by side.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	now            func() time.Time

	// Global flags.
	adminSocket     string
	contextName     string // --context
	allContextsFlag bool   // --all-contexts
	// target is the context commands go to (nil: the unix socket
	// adminSocket); fanOut is every context, for --context all.
	target  *sgContext
	fanOut  []sgContext
	output  string // "table", "json" or "yaml"
	timeout time.Duration
}

// runFunc runs a command with its positional arguments, after its flags have
// been parsed.
type runFunc func(ctx context.Context, c *cli, args []string) error

// command is one entry of the dispatch table.
type command struct {
	name    string
	aliases []string
	// usage is the synopsis after "sgctl ".
	usage string
	// short is the one-line summary shown by sgctl --help.
	short string
	// long is the paragraph shown by sgctl COMMAND -h.
	long string
	// setup registers the command's flags on fs and returns the function
	// that runs the command once fs is parsed. It is also called by help,
	// which only prints the flags.
	setup func(fs *flag.FlagSet) runFunc
}

// commands is the dispatch table, in the order sgctl --help lists it.
func commands() []*command {
	return []*command{
		createSocketCommand(),
		listSocketsCommand(),
		inspectSocketCommand(),
		updateSocketCommand(),
		deleteSocketCommand(),
		presetsCommand(),
		presetCommand(),
		checkCommand(),
		denialsCommand(),
		eventsCommand(),
		suggestPolicyCommand(),
		statusCommand(),
		backupCommand(),
		contextCommand(),
		versionCommand(),
		completionCommand(),
		helpCommand(),
	}
}

func lookupCommand(name string) *command {
	for _, cmd := range commands() {
		if cmd.name == name {
			return cmd
		}
		for _, a := range cmd.aliases {
			if a == name {
				return cmd
			}
		}
	}
	return nil
}

// usageError is a mistake on the command line. It exits exitUsage.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// exitCodeError ends the program with its code and prints nothing more; the
// command has already said what it had to say (check's "deny").
type exitCodeError int

func (e exitCodeError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// codedError is an error printed like any other that exits with its own
// code.
type codedError struct {
	code int
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }

func (c *cli) main(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("sgctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	defSocket := c.getenv(adminSocketEnv)
	if defSocket == "" {
		defSocket = defaultAdminSocket
	}
	fs.StringVar(&c.adminSocket, "admin-socket", defSocket, "")
	fs.StringVar(&c.output, "o", "table", "")
	fs.StringVar(&c.output, "output", "table", "")
	fs.DurationVar(&c.timeout, "timeout", defaultTimeout, "")
	fs.StringVar(&c.contextName, "context", "", "")
	fs.BoolVar(&c.allContextsFlag, "all-contexts", false, "")
	var showVersion bool
	fs.BoolVar(&showVersion, "version", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			c.printMainUsage(c.stdout)
			return exitOK
		}
		return c.fail(usagef("%v (run 'sgctl --help' for usage)", err))
	}
	if showVersion {
		// Client only, offline, like docker --version: "version" also asks
		// the broker.
		fmt.Fprintf(c.stdout, "sgctl version %s\n", version)
		return exitOK
	}
	if err := checkOutputFormat(c.output); err != nil {
		return c.fail(err)
	}
	if c.timeout <= 0 {
		return c.fail(usagef("--timeout %s: want a positive duration such as 10s", c.timeout))
	}
	if c.adminSocket == "" {
		return c.fail(usagef("--admin-socket is empty"))
	}
	rest := fs.Args()
	if len(rest) == 0 {
		c.printMainUsage(c.stderr)
		return exitUsage
	}
	cmd := lookupCommand(rest[0])
	if cmd == nil {
		return c.fail(usagef("unknown command %q (run 'sgctl --help' for the list)", rest[0]))
	}
	if cmd.name != "context" && cmd.name != "help" {
		if err := c.resolveTarget(flagsSet(fs)["admin-socket"]); err != nil {
			return c.fail(err)
		}
		// Allowlist: only read-only commands fan out over every context.
		if c.fanOut != nil && !slices.Contains(fanOutCommands, cmd.name) {
			return c.fail(usagef("%s does not run on all contexts (--context all is for %s); pick one with --context NAME",
				cmd.name, strings.Join(fanOutCommands, ", ")))
		}
	}
	return c.exec(ctx, cmd, rest[1:])
}

// exec parses a command's flags and runs it.
func (c *cli) exec(ctx context.Context, cmd *command, args []string) int {
	fs := flag.NewFlagSet("sgctl "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	runCmd := cmd.setup(fs)
	// -o is global, but "sgctl denials --socket x -o json" reads naturally
	// too: accept it after the command as well.
	if fs.Lookup("o") == nil {
		fs.StringVar(&c.output, "o", c.output, aliasPrefix+"output")
		fs.StringVar(&c.output, "output", c.output, "output `format`: table, json or yaml (same as the global -o)")
	}
	pos, err := parseInterspersed(fs, args)
	if err == nil {
		err = checkOutputFormat(c.output)
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printCommandUsage(c.stdout, cmd, fs)
			return exitOK
		}
		err = usagef("%s: %v", cmd.name, err)
	} else {
		err = runCmd(ctx, c, pos)
	}
	var uerr *usageError
	if errors.As(err, &uerr) && cmd.name != "help" {
		err = usagef("%s (run 'sgctl %s -h' for usage)", uerr.msg, cmd.name)
	}
	return c.fail(err)
}

// fail prints err as one line and returns the exit code it calls for.
func (c *cli) fail(err error) int {
	if err == nil {
		return exitOK
	}
	var code exitCodeError
	if errors.As(err, &code) {
		return int(code)
	}
	fmt.Fprintf(c.stderr, "sgctl: %s\n", oneLine(err.Error()))
	var uerr *usageError
	if errors.As(err, &uerr) {
		return exitUsage
	}
	var coded *codedError
	if errors.As(err, &coded) {
		return coded.code
	}
	return exitFailure
}

// parseInterspersed parses fs over args and returns the positional
// arguments, allowing flags after them ("create-socket runner-1 --preset x"):
// the flag package stops at the first positional argument, so take it and
// parse the rest again. Everything after "--" is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// wantArgs checks the number of positional arguments; names says what they
// are, for the error message.
func wantArgs(args []string, names ...string) error {
	switch {
	case len(args) < len(names):
		return usagef("missing %s", names[len(args)])
	case len(args) > len(names):
		return usagef("unexpected argument %q", args[len(names)])
	}
	return nil
}
