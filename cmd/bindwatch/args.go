package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

// permuteArgs moves flags ahead of positional arguments, command by
// command, so `bindwatch who 8080 --format json` means what it says:
// urfave/cli stops reading flags at the first argument. Everything after
// "--" is left alone (it is a command line for `bindwatch run`).
func permuteArgs(app *cli.App, args []string) []string {
	out, _ := permute(app, args)
	return out
}

// permute is permuteArgs, and the usage error of a flag left without its
// value at the end of a command's arguments (`who 8080 --format`), which
// moved ahead of them would take an argument for its value.
func permute(app *cli.App, args []string) ([]string, error) {
	if len(args) == 0 {
		return args, nil
	}
	out := []string{args[0]}
	flags, cmds := app.Flags, app.Commands
	rest := args[1:]
	cmd := ""
	var dangling error
	for {
		var opts, pos []string
		var sub *cli.Command
		i := 0
		for ; i < len(rest); i++ {
			a := rest[i]
			if a == "--" {
				break
			}
			if strings.HasPrefix(a, "-") && len(a) > 1 {
				opts = append(opts, a)
				if takesValue(flags, a) && !strings.Contains(a, "=") {
					if i+1 == len(rest) || rest[i+1] == "--" {
						if dangling == nil {
							dangling = usageError{err: fmt.Errorf("%s needs a value", a), cmd: cmd}
						}
						continue
					}
					i++
					opts = append(opts, rest[i])
				}
				continue
			}
			if len(pos) == 0 && sub == nil {
				if c := findCommand(cmds, a); c != nil {
					sub = c
					break
				}
			}
			pos = append(pos, a)
		}
		out = append(out, opts...)
		if sub != nil {
			out = append(out, rest[i])
			flags, cmds, rest = sub.Flags, sub.Subcommands, rest[i+1:]
			cmd = sub.Name
			continue
		}
		out = append(out, pos...)
		return append(out, rest[i:]...), dangling
	}
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// takesValue tells whether the flag arg (e.g. "--format") needs a value.
func takesValue(flags []cli.Flag, arg string) bool {
	name := strings.TrimLeft(arg, "-")
	for _, f := range flags {
		for _, n := range f.Names() {
			if n != name {
				continue
			}
			if df, ok := f.(cli.DocGenerationFlag); ok {
				return df.TakesValue()
			}
			return true
		}
	}
	return false
}
