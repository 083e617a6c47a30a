package main

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/urfave/cli/v2"
)

// usageError is a mistake in how bindwatch was called: exit code 2, one
// line saying what is wrong, and where to read how it is done.
type usageError struct {
	err error
	// cmd is the command it was made in ("who"), "" for bindwatch itself.
	cmd string
}

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

func usagef(format string, args ...any) error {
	return usageError{err: fmt.Errorf(format, args...)}
}

// commandLine is how a command is called: "bindwatch", "bindwatch who".
func commandLine(cmd string) string {
	if cmd == "" {
		return "bindwatch"
	}
	return "bindwatch " + cmd
}

// usageErrors makes every usage error of app, whether the flag parser's
// or an action's, a usageError that knows its command: the flag parser's
// are reworded (an unknown flag, a flag of another command, a flag
// without its value) and never followed by the whole help page.
func usageErrors(app *cli.App) {
	app.OnUsageError = func(_ *cli.Context, err error, _ bool) error {
		return flagError(app, "", err)
	}
	app.Action = inCommand("", app.Action)
	for _, cmd := range app.Commands {
		name := cmd.Name
		cmd.OnUsageError = func(_ *cli.Context, err error, _ bool) error {
			return flagError(app, name, err)
		}
		cmd.Action = inCommand(name, cmd.Action)
	}
}

// inCommand names cmd in the usage errors action returns.
func inCommand(cmd string, action cli.ActionFunc) cli.ActionFunc {
	return func(c *cli.Context) error {
		err := action(c)
		var ue usageError
		if errors.As(err, &ue) && ue.cmd == "" {
			ue.cmd = cmd
			return ue
		}
		return err
	}
}

var (
	undefinedFlag = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^flag provided but not defined: -+(.+)$`) })
	flagNeedsArg  = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^flag needs an argument: -+(.+)$`) })
)

// flagError rewords the flag parser's err for command cmd of app.
func flagError(app *cli.App, cmd string, err error) error {
	msg := err.Error()
	if m := undefinedFlag().FindStringSubmatch(msg); m != nil {
		msg = unknownFlag(app, cmd, m[1])
	} else if m := flagNeedsArg().FindStringSubmatch(msg); m != nil {
		msg = fmt.Sprintf("%s needs a value", dashed(m[1]))
	} else {
		return usageError{err: explainFlagValue(err), cmd: cmd}
	}
	return usageError{err: errors.New(msg), cmd: cmd}
}

// unknownFlag says that --name is not a flag of cmd: whose flag it is, if
// another command's, or which of cmd's it may have meant.
func unknownFlag(app *cli.App, cmd, name string) string {
	var owners []string
	if cmd != "" && hasFlag(globalFlags(app), name) {
		owners = append(owners, "`bindwatch`")
	}
	for _, c := range app.Commands {
		if c.Name != cmd && hasFlag(c.Flags, name) {
			owners = append(owners, "`bindwatch "+c.Name+"`")
		}
	}
	if len(owners) > 0 {
		return fmt.Sprintf("%s is a flag of %s, not of `%s`", dashed(name), joinOr(owners), commandLine(cmd))
	}
	msg := "unknown flag " + dashed(name)
	own := globalFlags(app)
	if c := findCommand(app.Commands, cmd); c != nil {
		own = c.Flags
	}
	if near := closest(name, flagNames(own)); near != "" {
		return msg + fmt.Sprintf(" (did you mean %s?)", dashed(near))
	}
	if cmd == "run" {
		msg += " (hint: put the command after --: bindwatch run [flags] -- CMD [ARGS...])"
	}
	return msg
}

func hasFlag(flags []cli.Flag, name string) bool {
	return slices.Contains(flagNames(flags), name)
}

func flagNames(flags []cli.Flag) []string {
	var names []string
	for _, f := range flags {
		names = append(names, f.Names()...)
	}
	return names
}

// dashed is a flag as it is typed: -p, --port.
func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

func joinOr(s []string) string {
	if len(s) <= 1 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

// closest is the candidate nearest to word — within two edits, or one it
// begins — or "".
func closest(word string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if len(c) < 2 {
			continue
		}
		d := editDistance(word, c)
		if len(word) >= 2 && strings.HasPrefix(c, word) {
			d = min(d, 1)
		}
		if d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

// unexpectedArgument is the usage error of an argument bindwatch itself
// does not take: a command misspelled, or a port given without --port.
func unexpectedArgument(app *cli.App, arg string) error {
	port, _, _ := strings.Cut(arg, "/")
	if n, err := strconv.Atoi(port); err == nil && n >= 0 && n <= 65535 {
		return usagef("%q is not a command: to trace failures on port %s, `bindwatch --port %s`; to see who holds it, `bindwatch who %s`", arg, port, port, arg)
	}
	if arg == "help" {
		return usagef("there is no help command: `bindwatch --help`, or `bindwatch COMMAND --help`")
	}
	var names []string
	for _, c := range app.Commands {
		if !c.Hidden {
			names = append(names, c.Name)
		}
	}
	if near := closest(arg, names); near != "" {
		return usagef("unknown command %q: did you mean `bindwatch %s`?", arg, near)
	}
	return usagef("unknown command %q (commands: %s)", arg, strings.Join(names, ", "))
}

// flagValueError is how Go's flag package words a value it cannot parse.
var flagValueError = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^invalid value "(.*)" for flag -([\w-]+): (.*)$`) })

// flagValueWants says, for each flag whose value the flag package parses,
// what a good value looks like.
var flagValueWants = map[string]string{
	"fold":             "a duration such as 500ms, 1s or 2m; 0 reports every failure",
	"grace":            "a duration such as 500ms, 5s or 1m",
	"timeout":          "a duration such as 500ms, 30s or 5m",
	"ring-size":        "a number of bytes, a power of two such as 1048576 (1 MiB)",
	"output-max-files": "a whole number of files",
	"pid":              "a process id: a positive whole number",
}

// explainFlagValue rewrites the flag package's "invalid value ... parse
// error" into what is wrong with the value and what a good one looks like.
func explainFlagValue(err error) error {
	m := flagValueError().FindStringSubmatch(err.Error())
	if m == nil {
		return err
	}
	value, name, why := m[1], m[2], m[3]
	switch {
	case why == "parse error", strings.HasSuffix(why, "invalid syntax"):
		why = "not understood"
	case strings.HasSuffix(why, "value out of range"):
		why = "out of range"
	}
	if want, ok := flagValueWants[name]; ok {
		return fmt.Errorf("--%s %s: %s (want %s)", name, value, why, want)
	}
	return fmt.Errorf("--%s %s: %s", name, value, why)
}
