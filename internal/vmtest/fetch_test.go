package main

import (
	"reflect"
	"strings"
	"testing"
)

func TestKernelPatterns(t *testing.T) {
	tests := map[string][]string{
		"5.10": {"linux-image-5.10.0-46-amd64"},
		"6.1":  {"linux-image-6.1.0-56-amd64"},
		"6.12": {"linux-image-6.12.117+deb12-amd64", "linux-image-6.12.12+bpo-amd64"},
	}
	others := []string{
		"linux-image-amd64", "linux-image-6.1.0-56-cloud-amd64", "linux-image-6.1.0-56-rt-amd64",
		"linux-image-6.1.0-56-amd64-dbg", "linux-image-6.1.0-56-amd64-unsigned", "linux-image-6.12-amd64",
		"linux-image-6.12.117+deb12-amd64-unsigned", "linux-image-5.10.0-46-cloud-amd64",
	}
	for series, matching := range tests {
		spec, err := lookupKernelSpec(series)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range matching {
			if !spec.pattern.MatchString(name) {
				t.Errorf("kernel %s does not match %s", series, name)
			}
		}
		for _, name := range others {
			if spec.pattern.MatchString(name) {
				t.Errorf("kernel %s matches %s", series, name)
			}
		}
	}
	if _, err := lookupKernelSpec("4.19"); err == nil || !strings.Contains(err.Error(), "known: 5.10, 6.1, 6.12") {
		t.Errorf("lookupKernelSpec(4.19) = %v, want an error listing the known kernels", err)
	}
}

func TestMissingConfig(t *testing.T) {
	var config strings.Builder
	for _, name := range requiredConfig {
		config.WriteString(name + "=y\n")
	}
	if got := missingConfig(config.String()); got != nil {
		t.Errorf("missingConfig(all built in) = %v, want none", got)
	}
	broken := strings.Replace(config.String(), "CONFIG_IPV6=y", "CONFIG_IPV6=m", 1)
	broken = strings.Replace(broken, "CONFIG_DEBUG_INFO_BTF=y\n", "# CONFIG_DEBUG_INFO_BTF is not set\n", 1)
	want := []string{"CONFIG_IPV6", "CONFIG_DEBUG_INFO_BTF"}
	if got := missingConfig(broken); !reflect.DeepEqual(got, want) {
		t.Errorf("missingConfig = %v, want %v", got, want)
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
