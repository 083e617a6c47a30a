package main

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
)

// kernelSpec pins a kernel series to a Debian release and a package name
// pattern; the newest matching package is fetched on first use.
type kernelSpec struct {
	series  string // what -kernels names, e.g. "6.1"
	release string // Debian release whose suites carry it
	pattern *regexp.Regexp
}

var kernelSpecs = []kernelSpec{
	{"5.10", "bullseye", regexp.MustCompile(`^linux-image-5\.10\.0-[0-9]+-amd64$`)},
	{"6.1", "bookworm", regexp.MustCompile(`^linux-image-6\.1\.0-[0-9]+-amd64$`)},
	{"6.12", "bookworm", regexp.MustCompile(`^linux-image-6\.12\.[0-9]+\+(deb12|bpo)-amd64$`)},
}

func lookupKernelSpec(series string) (kernelSpec, error) {
	var known []string
	for _, s := range kernelSpecs {
		if s.series == series {
			return s, nil
		}
		known = append(known, s.series)
	}
	return kernelSpec{}, fmt.Errorf("unknown kernel %q (known: %s)", series, strings.Join(known, ", "))
}

// requiredConfig must be built in (=y): the initramfs carries no modules.
var requiredConfig = []string{
	"CONFIG_BLK_DEV_INITRD", "CONFIG_DEVTMPFS", "CONFIG_SERIAL_8250_CONSOLE",
	"CONFIG_INET", "CONFIG_IPV6", "CONFIG_CGROUPS",
	"CONFIG_BPF_SYSCALL", "CONFIG_BPF_JIT", "CONFIG_DEBUG_INFO_BTF", "CONFIG_BPF_EVENTS",
	"CONFIG_KPROBES", "CONFIG_KPROBE_EVENTS", "CONFIG_TRACEPOINTS",
	"CONFIG_FTRACE", "CONFIG_FUNCTION_TRACER", "CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS",
}

// archiveKeyring holds the Debian archive keys of every supported release.
const archiveKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

// kernel is a fetched kernel, cached in dir as vmlinuz, config and
// kernel.json.
type kernel struct {
	Series  string `json:"series"`
	Package string `json:"package"`
	Version string `json:"version"`
	dir     string
}

// Release is the kernel's uname -r, as Debian names its image packages.
func (k kernel) Release() string { return strings.TrimPrefix(k.Package, "linux-image-") }

func (k kernel) vmlinuz() string { return filepath.Join(k.dir, "vmlinuz") }

func (k kernel) String() string { return k.Package + " " + k.Version }

// fetcher downloads kernel packages with apt, using its own sources list
// and index per Debian release under cache, so the host's apt setup is
// neither needed nor touched.
type fetcher struct {
	cache   string
	mirrors mirrors
	updated map[string]bool
	log     io.Writer
}

func newFetcher(cache string, log io.Writer) (*fetcher, error) {
	if _, err := os.Stat(archiveKeyring); err != nil {
		return nil, fmt.Errorf("debian archive keyring: %w (apt-get install debian-archive-keyring)", err)
	}
	m, err := hostMirrors()
	if err != nil {
		return nil, err
	}
	return &fetcher{cache: cache, mirrors: m, updated: map[string]bool{}, log: log}, nil
}

// fetch returns the cached kernel for spec, downloading the newest matching
// package first if there is none or refresh is set.
func (f *fetcher) fetch(ctx context.Context, spec kernelSpec, refresh bool) (kernel, error) {
	dir := filepath.Join(f.cache, "kernels", spec.series)
	cached, cacheErr := loadKernel(dir)
	if cacheErr == nil && !refresh {
		return cached, nil
	}
	idx := aptIndex{dir: filepath.Join(f.cache, "apt", spec.release)}
	if err := f.update(ctx, idx, spec.release); err != nil {
		return kernel{}, err
	}
	pkg, version, err := idx.newest(ctx, spec.pattern)
	if err != nil {
		return kernel{}, err
	}
	if cacheErr == nil && cached.Package == pkg && cached.Version == version {
		return cached, nil
	}
	fmt.Fprintf(f.log, "vmtest: downloading %s %s\n", pkg, version)
	k := kernel{Series: spec.series, Package: pkg, Version: version, dir: dir}
	if err := f.install(ctx, idx, k); err != nil {
		return kernel{}, err
	}
	return k, nil
}

func (f *fetcher) update(ctx context.Context, idx aptIndex, release string) error {
	if f.updated[release] {
		return nil
	}
	if err := idx.update(ctx, f.mirrors.sourcesList(release)); err != nil {
		return fmt.Errorf("apt index for %s: %w (is %s reachable from here?)", release, err, f.mirrors.main)
	}
	f.updated[release] = true
	return nil
}

// install downloads k's package and unpacks vmlinuz and config into k.dir,
// replacing what was there only once everything succeeded.
func (f *fetcher) install(ctx context.Context, idx aptIndex, k kernel) error {
	if err := os.MkdirAll(filepath.Dir(k.dir), 0o755); err != nil {
		return fmt.Errorf("fetch %s: %w", k.Package, err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(k.dir), "fetch-")
	if err != nil {
		return fmt.Errorf("fetch %s: %w", k.Package, err)
	}
	defer os.RemoveAll(tmp)
	deb, err := idx.download(ctx, k.Package, k.Version, tmp)
	if err != nil {
		return err
	}
	staged := filepath.Join(tmp, "kernel")
	if err := extractBoot(ctx, deb, staged); err != nil {
		return err
	}
	if err := checkConfig(filepath.Join(staged, "config")); err != nil {
		return fmt.Errorf("%s: %w", k, err)
	}
	meta, err := json.Marshal(k)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(staged, "kernel.json"), meta, 0o644); err != nil {
		return err
	}
	if err := os.RemoveAll(k.dir); err != nil {
		return err
	}
	return os.Rename(staged, k.dir)
}

func loadKernel(dir string) (kernel, error) {
	var k kernel
	data, err := os.ReadFile(filepath.Join(dir, "kernel.json"))
	if err != nil {
		return k, err
	}
	if err := json.Unmarshal(data, &k); err != nil {
		return k, fmt.Errorf("%s: %w", dir, err)
	}
	k.dir = dir
	if _, err := os.Stat(k.vmlinuz()); err != nil {
		return k, err
	}
	return k, nil
}

// extractBoot writes the package's /boot/vmlinuz-* and /boot/config-* to
// dst/vmlinuz and dst/config.
func extractBoot(ctx context.Context, deb, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "dpkg-deb", "--fsys-tarfile", deb)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("dpkg-deb: %w (apt-get install dpkg)", err)
	}
	found, readErr := extractFromTar(pipe, dst)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("dpkg-deb --fsys-tarfile %s: %w: %s", deb, err, strings.TrimSpace(stderr.String()))
	}
	if readErr != nil {
		return fmt.Errorf("unpack %s: %w", deb, readErr)
	}
	for _, want := range []string{"vmlinuz", "config"} {
		if !found[want] {
			return fmt.Errorf("unpack %s: no /boot/%s-* in the package (is it a kernel image package?)", deb, want)
		}
	}
	return nil
}

func extractFromTar(r io.Reader, dst string) (map[string]bool, error) {
	found := map[string]bool{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return found, nil
		}
		if err != nil {
			return found, err
		}
		dir, base := path.Split(path.Clean("/" + hdr.Name))
		kind, _, _ := strings.Cut(base, "-")
		if dir != "/boot/" || hdr.Typeflag != tar.TypeReg || (kind != "vmlinuz" && kind != "config") {
			continue
		}
		if err := writeFile(filepath.Join(dst, kind), tr); err != nil {
			return found, err
		}
		found[kind] = true
	}
}

func writeFile(name string, r io.Reader) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func checkConfig(name string) error {
	data, err := os.ReadFile(name)
	if err != nil {
		return err
	}
	if missing := missingConfig(string(data)); len(missing) > 0 {
		return fmt.Errorf("kernel config lacks built-in %s (the initramfs has no modules; pick another kernel package)", strings.Join(missing, ", "))
	}
	return nil
}

// missingConfig returns the requiredConfig options not set to y in config.
func missingConfig(config string) []string {
	builtin := map[string]bool{}
	for _, line := range strings.Split(config, "\n") {
		if name, ok := strings.CutSuffix(strings.TrimSpace(line), "=y"); ok {
			builtin[name] = true
		}
	}
	var missing []string
	for _, name := range requiredConfig {
		if !builtin[name] {
			missing = append(missing, name)
		}
	}
	return missing
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
