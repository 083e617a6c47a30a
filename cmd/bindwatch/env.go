package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// envPrefix starts the name of the environment variable of every tracing
// flag: --output-max-size is BINDWATCH_OUTPUT_MAX_SIZE.
const envPrefix = "BINDWATCH_"

func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// withEnv lets each flag also be set from its environment variable (how
// systemd units and containers configure a daemon); the command line
// wins. Only tracing's flags get one: a variable left in an environment
// must not arm `free --kill`.
func withEnv(flags []cli.Flag) []cli.Flag {
	for _, f := range flags {
		env := []string{envName(f.Names()[0])}
		switch f := f.(type) {
		case *cli.StringFlag:
			f.EnvVars = env
		case *cli.StringSliceFlag:
			f.EnvVars = env
		case *cli.IntSliceFlag:
			f.EnvVars = env
		case *cli.BoolFlag:
			f.EnvVars = env
		case *cli.IntFlag:
			f.EnvVars = env
		case *cli.DurationFlag:
			f.EnvVars = env
		default:
			panic("withEnv: add a case for " + f.Names()[0])
		}
	}
	return flags
}
