package main

import (
	"strings"
	"testing"
)

func TestKernelPatterns(t *testing.T) {
	tests := map[string][]string{
		"5.10": {"linux-image-5.10.0-46-amd64"},
		"6.1":  {"linux-image-6.1.0-56-amd64"},
		"6.12": {"linux-image-6.12.117+deb12-amd64"},
	}
	others := []string{
		"linux-image-amd64", "linux-image-6.1.0-56-cloud-amd64", "linux-image-6.1.0-56-rt-amd64",
		"linux-image-6.1.0-56-amd64-dbg", "linux-image-6.1.0-56-amd64-unsigned", "linux-image-6.12-amd64",
		"linux-image-6.12.117+deb12-amd64-unsigned", "linux-image-5.10.0-46-cloud-amd64",
	}
	for series, matching := range tests {
		spec, err := lookupKernelSpec(series, guestArches["amd64"])
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
	arm64, err := lookupKernelSpec("6.1", guestArches["arm64"])
	if err != nil || !arm64.pattern.MatchString("linux-image-6.1.0-50-arm64") || arm64.pattern.MatchString("linux-image-6.1.0-50-amd64") || arm64.pattern.MatchString("linux-image-6.1.0-50-rt-arm64") {
		t.Errorf("arm64 6.1 pattern %v (%v): want linux-image-6.1.0-N-arm64 only", arm64.pattern, err)
	}
	if _, err := lookupKernelSpec("4.19", guestArches["amd64"]); err == nil || !strings.Contains(err.Error(), "known: 5.10, 6.1, 6.12") {
		t.Errorf("lookupKernelSpec(4.19) = %v, want an error listing the known kernels", err)
	}
}
