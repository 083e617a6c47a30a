package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// guestInitPkg is the guest's /init.
const guestInitPkg = "github.com/bindwatch/bindwatch/internal/vmtest/guestinit"

// module is the Go module the harness runs in.
type module struct{ path, dir string }

func currentModule(ctx context.Context) (module, error) {
	out, err := output(exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Path}}\t{{.Dir}}"))
	if err != nil {
		return module{}, fmt.Errorf("find the Go module: %w (run from inside the bindwatch checkout)", err)
	}
	path, dir, _ := strings.Cut(strings.TrimSpace(string(out)), "\t")
	return module{path: path, dir: dir}, nil
}

// testPackage is a package whose compiled tests go into the initramfs.
type testPackage struct {
	importPath string
	dir        string // source directory, whose testdata goes along
	name       string // import path within the module, for reports
	binary     string // compiled test binary on the host
	run        string // the tests to run (-test.run); "" for all
	skip       string // the tests not to run (-test.skip)
	once       bool   // run once per kernel, not once per backend
}

// label names the package in reports: its name, with "@once" for a
// package run once per kernel (one package may be in both lists, with
// different tests).
func (p testPackage) label() string {
	if p.once {
		return p.name + "@once"
	}
	return p.name
}

// fileName is the label flattened into one path element.
func (p testPackage) fileName() string { return strings.ReplaceAll(p.label(), "/", "_") }

// buildTests compiles the tests of the packages matching patterns into
// outDir as static binaries. A pattern may end in =REGEXP: only the tests
// it matches run in the guest; or in !REGEXP: those it matches do not.
func buildTests(ctx context.Context, mod module, patterns []string, once bool, outDir, goarch string) ([]testPackage, error) {
	var pkgs []testPackage
	for _, pattern := range patterns {
		pattern, run, _ := strings.Cut(pattern, "=")
		pattern, skip, _ := strings.Cut(pattern, "!")
		out, err := output(exec.CommandContext(ctx, "go", "list", "-f", "{{.ImportPath}}\t{{.Dir}}", pattern))
		if err != nil {
			return nil, fmt.Errorf("list test packages %s: %w (check -pkgs and -once-pkgs)", pattern, err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			importPath, dir, _ := strings.Cut(line, "\t")
			p := testPackage{importPath: importPath, dir: dir, name: strings.TrimPrefix(importPath, mod.path+"/"), run: run, skip: skip, once: once}
			p.binary = filepath.Join(outDir, p.fileName()+".test")
			if err := buildTest(ctx, p, goarch); err != nil {
				return nil, err
			}
			pkgs = append(pkgs, p)
		}
	}
	return pkgs, nil
}

// buildBindwatch compiles the bindwatch command for the guest, for the
// tests that drive it (cmd/bindwatch: the guest has no Go to build it).
func buildBindwatch(ctx context.Context, mod module, outDir, goarch string) error {
	if err := goBuild(ctx, goarch, "build", "-o", filepath.Join(outDir, "bindwatch"), mod.path+"/cmd/bindwatch"); err != nil {
		return fmt.Errorf("compile bindwatch: %w", err)
	}
	return nil
}

func buildTest(ctx context.Context, p testPackage, goarch string) error {
	if err := os.Remove(p.binary); err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := goBuild(ctx, goarch, "test", "-c", "-o", p.binary, p.importPath); err != nil {
		return fmt.Errorf("compile tests of %s: %w", p.name, err)
	}
	if _, err := os.Stat(p.binary); err != nil {
		return fmt.Errorf("compile tests of %s: no test binary (does the package have _test.go files?)", p.name)
	}
	return nil
}

// buildGuestInit compiles the guest's /init into outDir.
func buildGuestInit(ctx context.Context, outDir, goarch string) (string, error) {
	bin := filepath.Join(outDir, "init")
	if err := goBuild(ctx, goarch, "build", "-o", bin, guestInitPkg); err != nil {
		return "", fmt.Errorf("compile guest init: %w", err)
	}
	return bin, nil
}

// goBuild runs a go command that produces a static binary for the guest's
// architecture.
func goBuild(ctx context.Context, goarch string, args ...string) error {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	_, err := output(cmd)
	return err
}
