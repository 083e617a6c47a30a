package main

import (
	"reflect"
	"testing"
)

func TestParseCandidates(t *testing.T) {
	policy := `linux-image-6.1.0-47-amd64:
  Installed: (none)
  Candidate: 6.1.158-1
  Version table:
     6.1.158-1 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
linux-image-6.1.0-56-amd64:
  Installed: (none)
  Candidate: 6.1.192-2
  Version table:
     6.1.192-2 500
        500 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
linux-image-6.1.0-9-amd64:
  Installed: (none)
  Candidate: (none)
  Version table:
`
	want := map[string]string{"linux-image-6.1.0-47-amd64": "6.1.158-1", "linux-image-6.1.0-56-amd64": "6.1.192-2"}
	if got := parseCandidates(policy); !reflect.DeepEqual(got, want) {
		t.Errorf("parseCandidates = %v, want %v", got, want)
	}
}

func TestCommandLine(t *testing.T) {
	args := append([]string{"apt-get"}, aptIndex{dir: "/c"}.options()...)
	if got, want := commandLine(append(args, "-q", "update")), "apt-get -q update"; got != want {
		t.Errorf("commandLine = %q, want %q", got, want)
	}
}
