package main

import (
	"slices"
	"testing"

	"github.com/urfave/cli/v2"
)

func TestPermuteArgs(t *testing.T) {
	app := &cli.App{
		Flags: []cli.Flag{&cli.StringFlag{Name: "format"}, &cli.BoolFlag{Name: "debug"}},
		Commands: []*cli.Command{
			{Name: "who", Flags: []cli.Flag{&cli.StringFlag{Name: "format"}, &cli.BoolFlag{Name: "all-netns"}}},
			{Name: "run", Flags: []cli.Flag{&cli.StringSliceFlag{Name: "port"}}},
		},
	}
	for _, c := range []struct{ in, want []string }{
		{[]string{"bw", "who", "8080", "--format", "json"}, []string{"bw", "who", "--format", "json", "8080"}},
		{[]string{"bw", "who", "8080", "--all-netns", "9090/udp"}, []string{"bw", "who", "--all-netns", "8080", "9090/udp"}},
		{[]string{"bw", "--debug", "who", "8080", "--format=json"}, []string{"bw", "--debug", "who", "--format=json", "8080"}},
		{[]string{"bw", "run", "--port", "80", "--", "sh", "-c", "x --port 1"}, []string{"bw", "run", "--port", "80", "--", "sh", "-c", "x --port 1"}},
		{[]string{"bw", "--format", "json"}, []string{"bw", "--format", "json"}},
	} {
		if got := permuteArgs(app, c.in); !slices.Equal(got, c.want) {
			t.Errorf("permuteArgs(%q)\n got %q\nwant %q", c.in, got, c.want)
		}
	}
}

func TestParsePortRange(t *testing.T) {
	for in, want := range map[string][2]uint16{"8080": {8080, 8080}, "8000-8100": {8000, 8100}, "0": {0, 0}, "65535": {65535, 65535}} {
		r, err := parsePortRange(in)
		if err != nil || r.Lo != want[0] || r.Hi != want[1] {
			t.Errorf("parsePortRange(%q) = %+v, %v", in, r, err)
		}
	}
	for _, bad := range []string{"70000", "-1", "http", "9000-8000", "1-", ""} {
		if _, err := parsePortRange(bad); err == nil {
			t.Errorf("parsePortRange(%q) accepted", bad)
		}
	}
}
