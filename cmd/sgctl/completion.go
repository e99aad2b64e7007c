package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

func completionCommand() *command {
	return &command{
		name:  "completion",
		usage: "completion bash|zsh|fish",
		short: "Print a shell completion script",
		long: "Prints a completion script for the shell, generated from sgctl's own command table, so it completes " +
			"every command, alias and flag of this sgctl version. It completes words only and never contacts the broker.\n\n" +
			"bash:  source <(sgctl completion bash)   (or save it as /etc/bash_completion.d/sgctl)\n" +
			"zsh:   sgctl completion zsh > \"${fpath[1]}/_sgctl\"\n" +
			"fish:  sgctl completion fish > ~/.config/fish/completions/sgctl.fish",
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, c *cli, args []string) error {
				if err := wantArgs(args, "shell (bash, zsh or fish)"); err != nil {
					return err
				}
				return writeCompletion(c.stdout, args[0])
			}
		},
	}
}

// compFlag is one flag as a completion script sees it.
type compFlag struct {
	name  string // without dashes
	short string // one-letter alias, or ""
	help  string // first sentence of the usage
	// values are the words the flag's argument completes to; file means
	// file names. A boolean flag takes no argument.
	boolean bool
	file    bool
	values  []string
}

// compCommand is one command as a completion script sees it.
type compCommand struct {
	name    string
	aliases []string
	short   string
	flags   []compFlag
}

// flagValues are the fixed vocabularies of flags, by flag name; shells
// offer them after the flag. Every other flag takes a free word.
func flagValues() map[string][]string {
	return map[string][]string{
		"output":      outputFormats,
		"o":           outputFormats,
		"policy-mode": {"enforce", "audit"},
		"reason":      reasonNames(),
	}
}

// fileFlags take a file name ("-" for standard input where documented).
var fileFlags = map[string]bool{"body": true, "admin-socket": true, "file": true, "out": true}

// completionModel reads the command table and each command's flag set.
func completionModel() (global []compFlag, cmds []compCommand) {
	fs := flag.NewFlagSet("sgctl", flag.ContinueOnError)
	fs.String("admin-socket", "", "admin socket of the broker")
	fs.String("output", "", "output format")
	fs.String("o", "", aliasPrefix+"output")
	fs.Duration("timeout", 0, "how long to wait for the broker to answer")
	fs.String("context", "", "send the command to the broker of context NAME")
	fs.Bool("all-contexts", false, "the same as --context all")
	fs.Bool("version", false, "print the sgctl version and exit")
	fs.Bool("help", false, "show help")
	fs.Bool("h", false, aliasPrefix+"help")
	global = compFlags(fs)
	for _, cmd := range commands() {
		cfs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
		cmd.setup(cfs)
		cfs.Bool("help", false, "show this command's help")
		cfs.Bool("h", false, aliasPrefix+"help")
		cmds = append(cmds, compCommand{name: cmd.name, aliases: cmd.aliases, short: cmd.short, flags: compFlags(cfs)})
	}
	return global, cmds
}

func compFlags(fs *flag.FlagSet) []compFlag {
	shorts := map[string]string{}
	var out []compFlag
	values := flagValues()
	fs.VisitAll(func(f *flag.Flag) {
		if long, ok := strings.CutPrefix(f.Usage, aliasPrefix); ok {
			shorts[long] = f.Name
		}
	})
	fs.VisitAll(func(f *flag.Flag) {
		if strings.HasPrefix(f.Usage, aliasPrefix) {
			return
		}
		b, ok := f.Value.(interface{ IsBoolFlag() bool })
		_, usage := flag.UnquoteUsage(f)
		out = append(out, compFlag{
			name: f.Name, short: shorts[f.Name], help: firstSentence(usage),
			boolean: ok && b.IsBoolFlag(), file: fileFlags[f.Name], values: values[f.Name],
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// firstSentence shortens a flag's usage to a completion menu's width and
// drops the characters the shells' description syntaxes give meaning to.
func firstSentence(s string) string {
	if i := strings.IndexAny(s, ";("); i > 0 {
		s = s[:i]
	}
	s = strings.Map(func(r rune) rune {
		switch r {
		case '\'', '"', '`', '[', ']', ':', '\\', '$', '\n', '\t':
			return ' '
		}
		return r
	}, s)
	return truncate(oneLine(s), 70)
}

func writeCompletion(w io.Writer, shell string) error {
	global, cmds := completionModel()
	var err error
	switch shell {
	case "bash":
		err = writeBash(w, global, cmds)
	case "zsh":
		err = writeZsh(w, global, cmds)
	case "fish":
		err = writeFish(w, global, cmds)
	default:
		return usagef("completion %q: want bash, zsh or fish", shell)
	}
	return err
}

func dashed(f compFlag) []string {
	out := []string{"--" + f.name}
	if len(f.name) == 1 {
		out = []string{"-" + f.name}
	}
	if f.short != "" {
		out = append(out, "-"+f.short)
	}
	return out
}

// valueFlags lists the spellings of the flags that take an argument.
func valueFlags(flags []compFlag) []string {
	var out []string
	for _, f := range flags {
		if !f.boolean {
			out = append(out, dashed(f)...)
		}
	}
	return out
}

func writeBash(w io.Writer, global []compFlag, cmds []compCommand) error {
	var b strings.Builder
	b.WriteString(`# bash completion for sgctl; generated by 'sgctl completion bash'.
_sgctl() {
    local cur prev cmd i w
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD-1]}
    cmd=
    # The command is the first word that is neither a global flag nor the
    # argument of one.
    for ((i = 1; i < COMP_CWORD; i++)); do
        w=${COMP_WORDS[i]}
        case $w in
`)
	fmt.Fprintf(&b, "            %s) ((i++)) ;;\n", strings.Join(valueFlags(global), "|"))
	b.WriteString(`            -*) ;;
            *) cmd=$w; break ;;
        esac
    done
    case $prev in
`)
	// Flag arguments, by flag spelling; the same name means the same thing
	// in every command.
	seen := map[string]bool{}
	all := append([]compFlag{}, global...)
	for _, c := range cmds {
		all = append(all, c.flags...)
	}
	for _, f := range all {
		if f.boolean || seen[f.name] {
			continue
		}
		seen[f.name] = true
		switch {
		case len(f.values) > 0:
			fmt.Fprintf(&b, "        %s) mapfile -t COMPREPLY < <(compgen -W '%s' -- \"$cur\"); return ;;\n", strings.Join(dashed(f), "|"), strings.Join(f.values, " "))
		case f.file:
			fmt.Fprintf(&b, "        %s) mapfile -t COMPREPLY < <(compgen -f -- \"$cur\"); return ;;\n", strings.Join(dashed(f), "|"))
		default:
			fmt.Fprintf(&b, "        %s) COMPREPLY=(); return ;;\n", strings.Join(dashed(f), "|"))
		}
	}
	b.WriteString("    esac\n    local words\n    case $cmd in\n")
	var names []string
	for _, c := range cmds {
		names = append(names, c.name)
		names = append(names, c.aliases...)
	}
	fmt.Fprintf(&b, "        '') words='%s %s' ;;\n", strings.Join(names, " "), strings.Join(flagWords(global), " "))
	for _, c := range cmds {
		words := flagWords(c.flags)
		switch c.name {
		case "completion":
			words = append(words, "bash", "zsh", "fish")
		case "help":
			for _, o := range cmds {
				words = append(words, o.name)
			}
		}
		fmt.Fprintf(&b, "        %s) words='%s' ;;\n", strings.Join(append([]string{c.name}, c.aliases...), "|"), strings.Join(words, " "))
	}
	b.WriteString(`    esac
    mapfile -t COMPREPLY < <(compgen -W "$words" -- "$cur")
}
complete -F _sgctl sgctl
`)
	_, err := io.WriteString(w, b.String())
	return err
}

func flagWords(flags []compFlag) []string {
	var out []string
	for _, f := range flags {
		out = append(out, dashed(f)...)
	}
	return out
}

// zshSpec is one _arguments spec for f.
func zshSpec(f compFlag) string {
	arg := ""
	switch {
	case f.boolean:
	case len(f.values) > 0:
		arg = ":" + f.name + ":(" + strings.Join(f.values, " ") + ")"
	case f.file:
		arg = ":" + f.name + ":_files"
	default:
		arg = ":" + f.name + ": "
	}
	names := dashed(f)
	if len(names) == 1 {
		return "'" + names[0] + "[" + f.help + "]" + arg + "'"
	}
	return "'(" + strings.Join(names, " ") + ")'{" + strings.Join(names, ",") + "}'[" + f.help + "]" + arg + "'"
}

func writeZsh(w io.Writer, global []compFlag, cmds []compCommand) error {
	var b strings.Builder
	b.WriteString("#compdef sgctl\n# zsh completion for sgctl; generated by 'sgctl completion zsh'.\n_sgctl() {\n    local -a cmds\n    cmds=(\n")
	for _, c := range cmds {
		for _, n := range append([]string{c.name}, c.aliases...) {
			fmt.Fprintf(&b, "        '%s:%s'\n", n, firstSentence(c.short))
		}
	}
	b.WriteString("    )\n    local curcontext=$curcontext state line\n    _arguments -C \\\n")
	for _, f := range global {
		fmt.Fprintf(&b, "        %s \\\n", zshSpec(f))
	}
	b.WriteString("        '1:command:->cmd' \\\n        '*::arg:->args'\n    case $state in\n")
	b.WriteString("    cmd) _describe -t commands 'sgctl command' cmds ;;\n    args)\n        case $words[1] in\n")
	for _, c := range cmds {
		fmt.Fprintf(&b, "        %s)\n            _arguments \\\n", strings.Join(append([]string{c.name}, c.aliases...), "|"))
		for _, f := range c.flags {
			fmt.Fprintf(&b, "                %s \\\n", zshSpec(f))
		}
		switch c.name {
		case "completion":
			b.WriteString("                '1:shell:(bash zsh fish)'\n")
		case "help":
			b.WriteString("                '1:command:->cmd'\n            [[ $state == cmd ]] && _describe -t commands 'sgctl command' cmds\n")
		default:
			b.WriteString("                '*:argument: '\n")
		}
		b.WriteString("            ;;\n")
	}
	b.WriteString("        esac ;;\n    esac\n}\n_sgctl \"$@\"\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func writeFish(w io.Writer, global []compFlag, cmds []compCommand) error {
	var b strings.Builder
	b.WriteString("# fish completion for sgctl; generated by 'sgctl completion fish'.\ncomplete -c sgctl -f\n")
	var all []string
	for _, c := range cmds {
		all = append(all, c.name)
		all = append(all, c.aliases...)
	}
	fishFlag := func(cond string, f compFlag) {
		fmt.Fprintf(&b, "complete -c sgctl -n '%s'", cond)
		if len(f.name) == 1 {
			fmt.Fprintf(&b, " -s %s", f.name)
		} else {
			fmt.Fprintf(&b, " -l %s", f.name)
		}
		if f.short != "" {
			fmt.Fprintf(&b, " -s %s", f.short)
		}
		switch {
		case f.boolean:
		case len(f.values) > 0:
			fmt.Fprintf(&b, " -x -a '%s'", strings.Join(f.values, " "))
		case f.file:
			b.WriteString(" -r -F")
		default:
			b.WriteString(" -x")
		}
		fmt.Fprintf(&b, " -d '%s'\n", f.help)
	}
	for _, f := range global {
		fishFlag("__fish_use_subcommand", f)
	}
	for _, c := range cmds {
		for _, n := range append([]string{c.name}, c.aliases...) {
			fmt.Fprintf(&b, "complete -c sgctl -n '__fish_use_subcommand' -a %s -d '%s'\n", n, firstSentence(c.short))
		}
	}
	for _, c := range cmds {
		cond := "__fish_seen_subcommand_from " + strings.Join(append([]string{c.name}, c.aliases...), " ")
		for _, f := range c.flags {
			fishFlag(cond, f)
		}
		switch c.name {
		case "completion":
			fmt.Fprintf(&b, "complete -c sgctl -n '%s' -a 'bash zsh fish'\n", cond)
		case "help":
			fmt.Fprintf(&b, "complete -c sgctl -n '%s' -a '%s'\n", cond, strings.Join(all, " "))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
