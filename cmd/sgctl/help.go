package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
)

func helpCommand() *command {
	return &command{
		name:  "help",
		usage: "help [COMMAND]",
		short: "Show help for sgctl or one command",
		long:  "Without an argument, lists every command and the global flags. With a command name, prints that command's usage and every flag, like 'sgctl COMMAND -h'.",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error {
				return c.runHelp(args)
			}
		},
	}
}

func (c *cli) runHelp(args []string) error {
	switch len(args) {
	case 0:
		c.printMainUsage(c.stdout)
		return nil
	case 1:
		cmd := lookupCommand(args[0])
		if cmd == nil {
			return usagef("unknown command %q (run 'sgctl --help' for the list)", args[0])
		}
		fs := flag.NewFlagSet("sgctl "+cmd.name, flag.ContinueOnError)
		cmd.setup(fs)
		printCommandUsage(c.stdout, cmd, fs)
		return nil
	default:
		return usagef("help takes at most one command name")
	}
}

func (c *cli) printMainUsage(w io.Writer) {
	fmt.Fprint(w, `sgctl manages the sockguard broker: one policy-filtered Docker socket per
CI runner, and a log of everything the broker refused.

Usage:
  sgctl [global flags] COMMAND [flags] [arguments]

Commands:
`)
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	for _, cmd := range commands() {
		name := cmd.name
		if len(cmd.aliases) > 0 {
			name += " (" + strings.Join(cmd.aliases, ", ") + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s\n", name, cmd.short)
	}
	tw.Flush()
	fmt.Fprintf(w, `
Global flags (before the command):
  --admin-socket PATH
        admin socket of the broker (default $%s, else the
        current context's broker (see 'sgctl context'), else
        %s; now %s)
  -o, --output FORMAT
        table (for people), json or yaml (for scripts: protojson's field
        names, enums spelled as the flags spell them, file modes in octal)
        (default table)
  --timeout DURATION
        how long to wait for the broker to answer (default %s)
  --context NAME
        send the command to the broker of context NAME (see 'sgctl context');
        "all" runs list-sockets, denials or status on every context (HOST column)
  --all-contexts
        the same as --context all
  --version
        print the sgctl version and exit ('sgctl version' also asks the broker)
  -h, --help
        show this help

Example session (the admin socket is for root and the broker's admin group):
  $ sudo sgctl create-socket runner-1 --preset github-actions-runner \
        --owner 1001:1001 --allow-uid 1001 --allow-bind /srv/cache:ro
  $ export DOCKER_HOST=unix:///run/sockguard/runner-1/sockguard.sock  # as the runner
  $ sudo sgctl ls
  $ sudo sgctl check --socket runner-1 POST /containers/create --body create.json
  $ sudo sgctl denials --socket runner-1 --since 1h
  $ sudo sgctl denials --follow
  $ sudo sgctl delete-socket runner-1 --purge

Run 'sgctl help COMMAND' or 'sgctl COMMAND -h' for a command's flags, and
'sgctl completion bash|zsh|fish' for a shell completion script.
`, adminSocketEnv, defaultAdminSocket, c.helpTarget(), defaultTimeout)
}

// helpTarget names where a command would go now, for the help text: the
// admin socket, or the current context when it decides (neither
// $SGCTL_ADMIN_SOCKET nor --admin-socket given). A config that does not
// load is left for the command itself to report.
func (c *cli) helpTarget() string {
	if c.getenv == nil || c.contextName != "" || c.allContextsFlag || c.getenv(adminSocketEnv) != "" || c.adminSocket != defaultAdminSocket {
		return c.adminSocket
	}
	cfg, err := loadConfig(c.configPath())
	if err != nil || cfg.CurrentContext == "" {
		return c.adminSocket
	}
	x, ok := cfg.find(cfg.CurrentContext)
	if !ok {
		return c.adminSocket
	}
	return "context " + x.Name + ", " + x.Address
}

// aliasPrefix marks a flag registered as the short form of another; help
// prints the two together.
const aliasPrefix = "short for --"

// boolVarP registers a boolean flag with a long and a one-letter name.
func boolVarP(fs *flag.FlagSet, p *bool, name, short, usage string) {
	fs.BoolVar(p, name, false, usage)
	fs.BoolVar(p, short, false, aliasPrefix+name)
}

func printCommandUsage(w io.Writer, cmd *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage:\n  sgctl [global flags] %s\n", cmd.usage)
	if len(cmd.aliases) > 0 {
		fmt.Fprintf(w, "\nAliases: %s\n", strings.Join(cmd.aliases, ", "))
	}
	fmt.Fprintf(w, "\n%s\n", wrap(cmd.long, 78))
	shorts := map[string]string{}
	var flags []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) {
		if long, ok := strings.CutPrefix(f.Usage, aliasPrefix); ok {
			shorts[long] = f.Name
			return
		}
		flags = append(flags, f)
	})
	if len(flags) == 0 {
		fmt.Fprint(w, "\nThis command has no flags. Global flags: see 'sgctl --help'.\n")
		return
	}
	sort.Slice(flags, func(i, j int) bool { return flags[i].Name < flags[j].Name })
	fmt.Fprint(w, "\nFlags:\n")
	for _, f := range flags {
		name, usage := flag.UnquoteUsage(f)
		head := "--" + f.Name
		if s, ok := shorts[f.Name]; ok {
			head = "-" + s + ", " + head
		}
		if name != "" {
			head += " " + name
		}
		fmt.Fprintf(w, "  %s\n", head)
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "[]" {
			usage += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		for _, line := range strings.Split(wrap(usage, 70), "\n") {
			fmt.Fprintf(w, "        %s\n", line)
		}
	}
	fmt.Fprint(w, "\nGlobal flags (--admin-socket, -o, --timeout, --context) go before the command: see 'sgctl --help'.\n")
}

// wrap breaks text into lines of at most width columns at spaces.
func wrap(text string, width int) string {
	var b strings.Builder
	for i, para := range strings.Split(text, "\n") {
		if i > 0 {
			b.WriteByte('\n')
		}
		n := 0
		for j, word := range strings.Fields(para) {
			if j > 0 && n+1+len(word) > width {
				b.WriteByte('\n')
				n = 0
			} else if j > 0 {
				b.WriteByte(' ')
				n++
			}
			b.WriteString(word)
			n += len(word)
		}
	}
	return b.String()
}
