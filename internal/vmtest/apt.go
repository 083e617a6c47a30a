package main

import (
	"bufio"
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
type aptIndex struct {
	dir  string
	arch string // Debian architecture of the packages: amd64, arm64
}

func (a aptIndex) options() []string {
	return []string{
		"-o", "APT::Architecture=" + a.arch,
		"-o", "APT::Architectures=" + a.arch,
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

// download fetches pkg=version (version "": the candidate) into dir and
// returns the .deb's path.
func (a aptIndex) download(ctx context.Context, pkg, version, dir string) (string, error) {
	want := pkg
	if version != "" {
		want += "=" + version
	}
	cmd := exec.CommandContext(ctx, "apt-get", append(a.options(), "-q", "download", want)...)
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

// mirrors are the Debian archive URLs of the host's apt sources. The kernel
// suites are fetched from the same places the machine already uses.
type mirrors struct{ main, security string }

func (m mirrors) sourcesList(release string) string {
	opt := "[signed-by=" + archiveKeyring + "]"
	return fmt.Sprintf("deb %[1]s %[2]s %[4]s main\ndeb %[1]s %[2]s %[4]s-updates main\ndeb %[1]s %[3]s %[4]s-security main\n",
		opt, m.main, m.security, release)
}

func hostMirrors() (mirrors, error) {
	files, err := filepath.Glob("/etc/apt/sources.list.d/*")
	if err != nil {
		return mirrors{}, err
	}
	var texts []string
	for _, name := range append([]string{"/etc/apt/sources.list"}, files...) {
		if !strings.HasSuffix(name, ".list") && !strings.HasSuffix(name, ".sources") {
			continue
		}
		data, err := os.ReadFile(name)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return mirrors{}, fmt.Errorf("read apt sources: %w", err)
		}
		texts = append(texts, string(data))
	}
	return parseMirrors(texts), nil
}

// parseMirrors picks the first Debian archive and security archive URIs
// from sources.list and deb822 .sources texts. Without a main archive it
// falls back to deb.debian.org; without a security archive it assumes the
// main archive's host serves one next to it.
func parseMirrors(texts []string) mirrors {
	var m mirrors
	for _, text := range texts {
		for _, uri := range sourceURIs(text) {
			uri = strings.TrimSuffix(uri, "/")
			switch {
			case m.main == "" && strings.HasSuffix(uri, "/debian"):
				m.main = uri
			case m.security == "" && strings.HasSuffix(uri, "/debian-security"):
				m.security = uri
			}
		}
	}
	if m.main == "" {
		m.main = "http://deb.debian.org/debian"
	}
	if m.security == "" {
		m.security = m.main + "-security"
	}
	return m
}

// sourceURIs returns the archive URIs of "deb" lines and "URIs:" fields.
func sourceURIs(text string) []string {
	var uris []string
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		switch fields[0] {
		case "URIs:":
			uris = append(uris, fields[1:]...)
		case "deb":
			if uri := skipOptions(fields[1:]); uri != "" {
				uris = append(uris, uri)
			}
		}
	}
	return uris
}

// skipOptions returns the first field after a "[...]" option block.
func skipOptions(fields []string) string {
	inOptions := false
	for _, f := range fields {
		switch {
		case !inOptions && strings.HasPrefix(f, "["):
			inOptions = !strings.HasSuffix(f, "]")
		case inOptions:
			inOptions = !strings.HasSuffix(f, "]")
		default:
			return f
		}
	}
	return ""
}
