package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// The man page (docs/bindwatch.1) and the shell completions are made from
// the command definitions themselves, so they cannot drift from --help:
// `make man` writes the page with `bindwatch man`, and TestManPage fails
// when the checked-in page is not what the binary makes.

func manCommand() *cli.Command {
	return &cli.Command{
		Name:   "man",
		Usage:  "write bindwatch's man page (roff) to standard output: make man keeps docs/bindwatch.1",
		Hidden: true,
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usagef("man takes no arguments, got %q", c.Args().First())
			}
			_, err := fmt.Fprint(c.App.Writer, manPage(c.App))
			return err
		},
	}
}

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "write a shell completion script: bash, zsh or fish",
		ArgsUsage: "bash|zsh|fish",
		Description: `Writes a script that completes bindwatch's commands, their flags and
the values some flags take (--format, --backend, --errno, --signal).

Examples:
  source <(bindwatch completion bash)                 # this shell
  bindwatch completion bash > /etc/bash_completion.d/bindwatch
  bindwatch completion zsh > "${fpath[1]}/_bindwatch"  # zsh (bashcompinit)
  bindwatch completion fish > ~/.config/fish/completions/bindwatch.fish`,
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usagef("completion needs one shell: bash, zsh or fish")
			}
			var script string
			switch shell := c.Args().First(); shell {
			case "bash":
				script = bashCompletion(c.App)
			case "zsh":
				script = "#compdef bindwatch\n# bindwatch zsh completion: the bash one, through bashcompinit.\nautoload -U +X bashcompinit && bashcompinit\n" + bashCompletion(c.App)
			case "fish":
				script = fishCompletion(c.App)
			default:
				return usagef("completion %q: the shells are bash, zsh and fish", shell)
			}
			_, err := fmt.Fprint(c.App.Writer, script)
			return err
		},
	}
}

// flagValues are the values of flags that take one of a few.
var flagValues = map[string]string{
	"format":  "text json ecs",
	"backend": "auto fentry kprobe tracepoint",
	"errno":   "EADDRINUSE EADDRNOTAVAIL EACCES EINVAL EAGAIN",
	"signal":  "TERM INT HUP QUIT KILL USR1 USR2",
}

// fileFlags take a path.
var fileFlags = []string{"output", "o", "ready-file", "html"}

// visibleCommands are the commands a user is offered.
func visibleCommands(app *cli.App) []*cli.Command {
	var cmds []*cli.Command
	for _, c := range app.Commands {
		if !c.Hidden {
			cmds = append(cmds, c)
		}
	}
	return cmds
}

// dashedFlags are a command's flags as typed, and which take a value.
func dashedFlags(flags []cli.Flag) (all, valued []string) {
	for _, f := range flags {
		if vf, ok := f.(cli.VisibleFlag); ok && !vf.IsVisible() {
			continue
		}
		for _, n := range f.Names() {
			all = append(all, dashed(n))
			if takesValue(flags, "--"+n) {
				valued = append(valued, dashed(n))
			}
		}
	}
	return all, valued
}

// bashCompletion is a bash script completing commands, flags (each
// command's own) and flag values, from app's definitions.
func bashCompletion(app *cli.App) string {
	var b strings.Builder
	b.WriteString(`# bindwatch bash completion (bindwatch completion bash): commands, each
# command's flags, and the values of --format, --backend, --errno, --signal.
_bindwatch() {
    local cur prev cmd="" i
    cur="${COMP_WORDS[COMP_CWORD]}"
    prev=""
    (( COMP_CWORD > 0 )) && prev="${COMP_WORDS[COMP_CWORD-1]}"
    for (( i=1; i < COMP_CWORD; i++ )); do
        case "${COMP_WORDS[i]}" in
            --) [[ $cmd == run ]] && return 0 ;;
`)
	var names []string
	for _, c := range visibleCommands(app) {
		names = append(names, c.Name)
	}
	fmt.Fprintf(&b, "            %s) [[ -z $cmd ]] && cmd=\"${COMP_WORDS[i]}\" ;;\n", strings.Join(names, "|"))
	b.WriteString("        esac\n    done\n")
	// Values of the flag before the word.
	b.WriteString("    case \"$prev\" in\n")
	keys := make([]string, 0, len(flagValues))
	for k := range flagValues {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "        --%s) COMPREPLY=( $(compgen -W %q -- \"$cur\") ); return 0 ;;\n", k, flagValues[k])
	}
	var files []string
	for _, f := range fileFlags {
		files = append(files, dashed(f))
	}
	fmt.Fprintf(&b, "        %s) COMPREPLY=( $(compgen -f -- \"$cur\") ); return 0 ;;\n", strings.Join(files, "|"))
	// Any other flag that takes a value: nothing to offer.
	_, valued := dashedFlags(app.Flags)
	for _, c := range visibleCommands(app) {
		_, v := dashedFlags(c.Flags)
		valued = append(valued, v...)
	}
	slices.Sort(valued)
	valued = slices.Compact(valued)
	valued = slices.DeleteFunc(valued, func(f string) bool {
		_, ok := flagValues[strings.TrimLeft(f, "-")]
		return ok || slices.Contains(files, f)
	})
	fmt.Fprintf(&b, "        %s) return 0 ;;\n", strings.Join(valued, "|"))
	b.WriteString("    esac\n    local words\n    case \"$cmd\" in\n")
	all, _ := dashedFlags(app.Flags)
	fmt.Fprintf(&b, "        \"\") words=%q ;;\n", strings.Join(append(all, "--help", "--version"), " "))
	for _, c := range visibleCommands(app) {
		all, _ := dashedFlags(c.Flags)
		fmt.Fprintf(&b, "        %s) words=%q ;;\n", c.Name, strings.Join(append(all, "--help"), " "))
	}
	fmt.Fprintf(&b, `    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=( $(compgen -W "$words" -- "$cur") )
    elif [[ -z $cmd ]]; then
        COMPREPLY=( $(compgen -W %q -- "$cur") )
    elif [[ $cmd == report ]]; then
        COMPREPLY=( $(compgen -f -- "$cur") )
    elif [[ $cmd == completion ]]; then
        COMPREPLY=( $(compgen -W "bash zsh fish" -- "$cur") )
    fi
    return 0
}
complete -o default -F _bindwatch bindwatch
`, strings.Join(names, " "))
	return b.String()
}

// fishCompletion is a fish script completing the same.
func fishCompletion(app *cli.App) string {
	var b strings.Builder
	b.WriteString("# bindwatch fish completion (bindwatch completion fish)\ncomplete -c bindwatch -f\n")
	for _, c := range visibleCommands(app) {
		fmt.Fprintf(&b, "complete -c bindwatch -n '__fish_use_subcommand' -a %s -d %s\n", c.Name, fishQuote(c.Usage))
	}
	flagLines := func(cond string, flags []cli.Flag) {
		for _, f := range flags {
			df, ok := f.(cli.DocGenerationFlag)
			if !ok {
				continue
			}
			if vf, ok := f.(cli.VisibleFlag); ok && !vf.IsVisible() {
				continue
			}
			line := "complete -c bindwatch -n " + fishQuote(cond)
			for _, n := range f.Names() {
				if len(n) == 1 {
					line += " -s " + n
				} else {
					line += " -l " + n
				}
			}
			_, usage := unquoteUsage(df.GetUsage())
			if df.TakesValue() {
				line += " -r"
				if v, ok := flagValues[f.Names()[0]]; ok {
					line += " -a " + fishQuote(v)
				} else if slices.Contains(fileFlags, f.Names()[0]) {
					line += " -F"
				}
			}
			b.WriteString(line + " -d " + fishQuote(firstClause(usage)) + "\n")
		}
	}
	flagLines("__fish_use_subcommand", app.Flags)
	for _, c := range visibleCommands(app) {
		flagLines("__fish_seen_subcommand_from "+c.Name, c.Flags)
	}
	b.WriteString("complete -c bindwatch -n '__fish_seen_subcommand_from completion' -a 'bash zsh fish'\n")
	b.WriteString("complete -c bindwatch -n '__fish_seen_subcommand_from report' -F\n")
	return b.String()
}

// unquoteUsage takes the `NAME` placeholder out of a flag's usage, as
// --help does: ("PORT", "only failures on PORT ...").
func unquoteUsage(usage string) (name, text string) {
	if i := strings.Index(usage, "`"); i >= 0 {
		if j := strings.Index(usage[i+1:], "`"); j >= 0 {
			name = usage[i+1 : i+1+j]
			return name, usage[:i] + name + usage[i+1+j+1:]
		}
	}
	return "", usage
}

func fishQuote(s string) string {
	return "'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", `\'`) + "'"
}

// firstClause is a flag's usage up to its first colon or parenthesis:
// what fits beside it in a completion menu.
func firstClause(s string) string {
	if i := strings.IndexAny(s, ":("); i > 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// manPage is the man page, section 1, in roff: the description of
// bindwatch and of each command, every flag with its value, default and
// environment variable, as --help shows them.
func manPage(app *cli.App) string {
	var b strings.Builder
	b.WriteString(`.\" bindwatch(1): made by ` + "`bindwatch man`" + ` from the command definitions (make man);
.\" edit cmd/bindwatch, not this file.
.TH BINDWATCH 1 "" "bindwatch" "User Commands"
.SH NAME
bindwatch \- ` + roff(app.Usage) + `
.SH SYNOPSIS
.B bindwatch
[\fIFLAGS\fR]
`)
	for _, c := range visibleCommands(app) {
		fmt.Fprintf(&b, ".br\n.B bindwatch %s\n[\\fIFLAGS\\fR]", roff(c.Name))
		if c.ArgsUsage != "" {
			fmt.Fprintf(&b, " \\fI%s\\fR", roff(c.ArgsUsage))
		}
		b.WriteString("\n")
	}
	b.WriteString(".SH DESCRIPTION\n")
	manText(&b, app.Description)
	b.WriteString(".SH FLAGS\n")
	manFlags(&b, app.Flags)
	b.WriteString(".SH COMMANDS\n")
	for _, c := range visibleCommands(app) {
		fmt.Fprintf(&b, ".SS \"bindwatch %s", roff(c.Name))
		if c.ArgsUsage != "" {
			fmt.Fprintf(&b, " %s", roff(c.ArgsUsage))
		}
		b.WriteString("\"\n")
		manText(&b, strings.TrimSuffix(c.Usage, ".")+".")
		if c.Description != "" {
			b.WriteString(".PP\n")
			manText(&b, c.Description)
		}
		if len(c.Flags) > 0 {
			b.WriteString(".PP\nFlags of \\fBbindwatch " + roff(c.Name) + "\\fR:\n")
			manFlags(&b, c.Flags)
		}
	}
	b.WriteString(`.SH FILES
.TP
.I docs/schema.md, docs/schema.json
every field of the JSON records
.TP
.I docs/causes.md
every cause a failure is diagnosed with
.SH SEE ALSO
.BR ss (8),
.BR lsof (8),
.BR bind (2),
.BR listen (2),
.BR capabilities (7)
`)
	return b.String()
}

// manText writes text (a description: paragraphs, and indented lines
// kept as they are, such as examples) as roff.
func manText(b *strings.Builder, text string) {
	lines := strings.Split(strings.TrimSpace(text), "\n")
	verbatim := false
	for _, line := range lines {
		indented := strings.HasPrefix(line, " ") || strings.HasPrefix(line, "\t")
		switch {
		case strings.TrimSpace(line) == "":
			if verbatim {
				b.WriteString(".fi\n.RE\n")
				verbatim = false
			}
			b.WriteString(".PP\n")
			continue
		case indented && !verbatim:
			b.WriteString(".RS 2\n.nf\n")
			verbatim = true
		case !indented && verbatim:
			b.WriteString(".fi\n.RE\n")
			verbatim = false
		}
		if verbatim {
			line = strings.TrimPrefix(line, "  ")
		}
		b.WriteString(roffLine(line) + "\n")
	}
	if verbatim {
		b.WriteString(".fi\n.RE\n")
	}
}

// manFlags writes flags as a tagged list: name, value, what it does, its
// default and environment variable.
func manFlags(b *strings.Builder, flags []cli.Flag) {
	for _, f := range flags {
		df, ok := f.(cli.DocGenerationFlag)
		if !ok {
			continue
		}
		if vf, ok := f.(cli.VisibleFlag); ok && !vf.IsVisible() {
			continue
		}
		placeholder, usage := unquoteUsage(df.GetUsage())
		var names []string
		for _, n := range f.Names() {
			names = append(names, `\fB`+roff(dashed(n))+`\fR`)
		}
		tag := strings.Join(names, ", ")
		if df.TakesValue() {
			if placeholder == "" {
				placeholder = "VALUE"
			}
			tag += ` \fI` + roff(placeholder) + `\fR`
		}
		b.WriteString(".TP\n" + tag + "\n" + roffLine(usage) + "\n")
		var extra []string
		if v := df.GetValue(); df.TakesValue() && v != "" && v != `""` && v != "0" {
			extra = append(extra, "default "+v)
		}
		if env := df.GetEnvVars(); len(env) > 0 {
			extra = append(extra, "environment "+strings.Join(env, ", "))
		}
		if len(extra) > 0 {
			b.WriteString(roffLine("("+strings.Join(extra, "; ")+")") + "\n")
		}
	}
}

// roff escapes text for a roff line: the backslash, hyphens as minus
// signs (so flags can be searched and copied), and the ellipsis as three
// dots (a terminal without a UTF-8 locale has no glyph for it, and man
// warns).
func roff(s string) string {
	return strings.NewReplacer(`\`, `\e`, "-", `\-`, "…", "...").Replace(s)
}

// roffLine is roff(s), made safe at the start of a line (a leading dot
// or quote would be a request).
func roffLine(s string) string {
	s = roff(s)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}
