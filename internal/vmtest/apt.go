package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// aptIndex is a private apt state in dir: its own sources list, package
// lists and cache, so that apt-get update for another release never touches
// the host's.
type aptIndex struct{ dir string }

func (a aptIndex) options() []string {
	return []string{
		"-o", "Dir::Etc::sourcelist=" + filepath.Join(a.dir, "sources.list"),
		"-o", "Dir::Etc::sourceparts=/dev/null",
		"-o", "Dir::Etc::preferences=/dev/null",
		"-o", "Dir::Etc::preferencesparts=/dev/null",
		"-o", "Dir::State::Lists=" + filepath.Join(a.dir, "lists"),
		"-o", "Dir::Cache=" + filepath.Join(a.dir, "cache"),
		"-o", "Acquire::Languages=none",
		// Downloads land in a directory the _apt user cannot write.
		"-o", "APT::Sandbox::User=root",
	}
}

func (a aptIndex) update(ctx context.Context, sources string) error {
	for _, d := range []string{"lists/partial", "cache/archives/partial"} {
		if err := os.MkdirAll(filepath.Join(a.dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(a.dir, "sources.list"), []byte(sources), 0o644); err != nil {
		return err
	}
	// Without --error-on=any, apt-get update succeeds when it could not
	// fetch anything.
	_, err := output(exec.CommandContext(ctx, "apt-get", append(a.options(), "-q", "update", "--error-on=any")...))
	return err
}

// newest returns the package matching pattern with the highest candidate
// version.
func (a aptIndex) newest(ctx context.Context, pattern *regexp.Regexp) (pkg, version string, err error) {
	out, err := output(exec.CommandContext(ctx, "apt-cache", append(a.options(), "pkgnames", "linux-image-")...))
	if err != nil {
		return "", "", err
	}
	var names []string
	for _, name := range strings.Fields(string(out)) {
		if pattern.MatchString(name) {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return "", "", fmt.Errorf("no package matches %s (check the sources in %s)", pattern, a.dir)
	}
	out, err = output(exec.CommandContext(ctx, "apt-cache", append(append(a.options(), "policy"), names...)...))
	if err != nil {
		return "", "", err
	}
	candidates := parseCandidates(string(out))
	for _, name := range slices.Sorted(maps.Keys(candidates)) {
		candidate := candidates[name]
		newer, err := debVersionNewer(ctx, candidate, version)
		if err != nil {
			return "", "", err
		}
		if newer {
			pkg, version = name, candidate
		}
	}
	if pkg == "" {
		return "", "", fmt.Errorf("no installable candidate among %s", strings.Join(names, ", "))
	}
	return pkg, version, nil
}

// parseCandidates maps package names to their candidate versions in
// `apt-cache policy` output, leaving out packages without one.
func parseCandidates(policy string) map[string]string {
	candidates := map[string]string{}
	var pkg string
	for _, line := range strings.Split(policy, "\n") {
		if name, ok := strings.CutSuffix(line, ":"); ok && !strings.HasPrefix(line, " ") {
			pkg = name
			continue
		}
		field, value, _ := strings.Cut(strings.TrimSpace(line), ":")
		value = strings.TrimSpace(value)
		if field == "Candidate" && pkg != "" && value != "(none)" {
			candidates[pkg] = value
		}
	}
	return candidates
}

// debVersionNewer reports whether Debian version a sorts after b; anything
// is newer than "".
func debVersionNewer(ctx context.Context, a, b string) (bool, error) {
	if b == "" {
		return true, nil
	}
	err := exec.CommandContext(ctx, "dpkg", "--compare-versions", a, "gt", b).Run()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) && exitErr.ExitCode() == 1 {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("dpkg --compare-versions %s gt %s: %w", a, b, err)
	}
	return true, nil
}

// download fetches pkg=version into dir and returns the .deb's path.
func (a aptIndex) download(ctx context.Context, pkg, version, dir string) (string, error) {
	cmd := exec.CommandContext(ctx, "apt-get", append(a.options(), "-q", "download", pkg+"="+version)...)
	cmd.Dir = dir
	if _, err := output(cmd); err != nil {
		return "", err
	}
	debs, err := filepath.Glob(filepath.Join(dir, pkg+"_*.deb"))
	if err != nil || len(debs) != 1 {
		return "", fmt.Errorf("apt-get download %s=%s left %d .deb files in %s, want 1", pkg, version, len(debs), dir)
	}
	return debs[0], nil
}
