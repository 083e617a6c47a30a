package main

import (
	"github.com/urfave/cli/v2"

	"github.com/bindwatch/bindwatch/internal/redact"
)

// redactFlags are --redact and --no-redact, on every command that reports
// processes: their secrets are removed by default.
func redactFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringSliceFlag{Name: "redact", Usage: "also replace with *** what the regular expression `REGEX` matches in a command-line argument (its capture groups if it has any; repeatable). Secrets are removed by default (--no-redact keeps them): values of --password X, --password=X, KEY=value where the name holds password, passwd, secret, token, key, credential or auth, and URL passwords"},
		&cli.BoolFlag{Name: "no-redact", Usage: "report command lines as they are, secrets included (records are often read by many)"},
	}
}

// redactRules turns --redact and --no-redact into the rules every process
// description goes through.
func redactRules(c *cli.Context) (*redact.Rules, error) {
	patterns := c.StringSlice("redact")
	if c.Bool("no-redact") {
		if len(patterns) > 0 {
			return nil, usagef("--redact and --no-redact contradict each other: use one")
		}
		return redact.Off(), nil
	}
	r, err := redact.New(patterns)
	if err != nil {
		return nil, usageError{err: err}
	}
	return r, nil
}
