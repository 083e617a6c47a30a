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
	args := append([]string{"apt-get"}, aptIndex{dir: "/c", arch: "amd64"}.options()...)
	if got, want := commandLine(append(args, "-q", "update")), "apt-get -q update"; got != want {
		t.Errorf("commandLine = %q, want %q", got, want)
	}
}

func TestParseMirrors(t *testing.T) {
	deb822 := `Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
`
	oneLine := "# deb http://commented.example/debian bookworm main\n" +
		"deb [arch=amd64 signed-by=/k.gpg] https://other.example/debian bookworm main\n" +
		"deb https://packages.cloud.example/apt cloud-sdk main\n"
	tests := []struct {
		name  string
		texts []string
		want  mirrors
	}{
		{"deb822", []string{deb822}, mirrors{"http://mirror.example/debian", "http://mirror.example/debian-security"}},
		{"first wins", []string{oneLine, deb822}, mirrors{"https://other.example/debian", "http://mirror.example/debian-security"}},
		{"no security", []string{oneLine}, mirrors{"https://other.example/debian", "https://other.example/debian-security"}},
		{"nothing", nil, mirrors{"http://deb.debian.org/debian", "http://deb.debian.org/debian-security"}},
	}
	for _, tt := range tests {
		if got := parseMirrors(tt.texts); got != tt.want {
			t.Errorf("%s: parseMirrors = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestSourcesList(t *testing.T) {
	got := mirrors{"http://m/debian", "http://m/debian-security"}.sourcesList("bullseye")
	want := "deb [signed-by=" + archiveKeyring + "] http://m/debian bullseye main\n" +
		"deb [signed-by=" + archiveKeyring + "] http://m/debian bullseye-updates main\n" +
		"deb [signed-by=" + archiveKeyring + "] http://m/debian-security bullseye-security main\n"
	if got != want {
		t.Errorf("sourcesList =\n%s\nwant\n%s", got, want)
	}
}
