// Command bindwatch catches every failed bind()/listen() on a Linux host
// and names both sides: the process that failed and the one that holds the
// address. See `bindwatch --help`.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

// version is set at build time (-ldflags "-X main.version=…").
var version = "dev"

func main() {
	app := newApp()
	args, err := permute(app, os.Args)
	if err == nil {
		err = leanFor(app, args)
	}
	if err == nil {
		err = app.Run(args)
	}
	os.Exit(exitCode(err))
}

// exitCode prints err, if any, and chooses the exit code: 2 for usage
// errors, the code an action asked for, 1 for any other failure.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ue usageError
	if errors.As(err, &ue) {
		msg := strings.NewReplacer("\r", " ", "\n", " ").Replace(explainFlagValue(ue.err).Error()) // one line
		fmt.Fprintf(os.Stderr, "%s: %s\nsee `%s --help`\n", commandLine(ue.cmd), msg, commandLine(ue.cmd))
		return 2
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		if msg := ec.Error(); msg != "" {
			fmt.Fprintln(os.Stderr, "bindwatch: "+msg)
		}
		return ec.ExitCode()
	}
	fmt.Fprintf(os.Stderr, "bindwatch: %v\n", err)
	return 1
}
