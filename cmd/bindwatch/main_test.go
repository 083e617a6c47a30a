package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/bindwatch/bindwatch/internal/testenv"
)

// bindwatchBin is the real bindwatch binary, built once for the tests in
// this package, which drive it as a user would — or BINDWATCH_BIN, a
// binary built beforehand (the kernel matrix's guests have no Go).
var bindwatchBin string

func TestMain(m *testing.M) {
	testenv.RunHelperIfAsked()
	if bindwatchBin = os.Getenv("BINDWATCH_BIN"); bindwatchBin != "" {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "bindwatch-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bindwatchBin = filepath.Join(dir, "bindwatch")
	build := exec.Command("go", "build", "-o", bindwatchBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build bindwatch:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
