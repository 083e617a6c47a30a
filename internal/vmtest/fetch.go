package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
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

// kernelSpecs name the image packages without their architecture suffix,
// which lookupKernelSpec appends.
var kernelSpecs = []struct{ series, release, pattern string }{
	{"5.10", "bullseye", `^linux-image-5\.10\.0-[0-9]+-`},
	{"6.1", "bookworm", `^linux-image-6\.1\.0-[0-9]+-`},
	{"6.12", "bookworm", `^linux-image-6\.12\.[0-9]+\+deb12-`},
}

func lookupKernelSpec(series string, arch guestArch) (kernelSpec, error) {
	var known []string
	for _, s := range kernelSpecs {
		if s.series == series {
			return kernelSpec{s.series, s.release, regexp.MustCompile(s.pattern + regexp.QuoteMeta(arch.name) + "$")}, nil
		}
		known = append(known, s.series)
	}
	return kernelSpec{}, fmt.Errorf("unknown kernel %q (known: %s)", series, strings.Join(known, ", "))
}

// archiveKeyring holds the Debian archive keys of every supported release.
const archiveKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

// fetcher downloads kernel packages with apt, using its own sources list
// and index per Debian release under cache, so the host's apt setup is
// neither needed nor touched.
type fetcher struct {
	cache   string
	arch    guestArch
	mirrors mirrors
	updated map[string]bool
	log     io.Writer
}

func newFetcher(cache string, arch guestArch, log io.Writer) (*fetcher, error) {
	if _, err := os.Stat(archiveKeyring); err != nil {
		return nil, fmt.Errorf("debian archive keyring: %w (apt-get install debian-archive-keyring)", err)
	}
	m, err := hostMirrors()
	if err != nil {
		return nil, err
	}
	return &fetcher{cache: cache, arch: arch, mirrors: m, updated: map[string]bool{}, log: log}, nil
}

// fetch returns the cached kernel for spec, downloading the newest matching
// package first if there is none or refresh is set.
func (f *fetcher) fetch(ctx context.Context, spec kernelSpec, refresh bool) (kernel, error) {
	dir := filepath.Join(f.cache, "kernels", spec.series)
	cached, cacheErr := loadKernel(dir, f.arch)
	if cacheErr == nil && !refresh {
		return cached, nil
	}
	idx := f.index(spec.release)
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
	return loadKernel(dir, f.arch)
}

// index is the apt index of release for the guests' architecture.
func (f *fetcher) index(release string) aptIndex {
	return aptIndex{dir: filepath.Join(f.cache, "apt", release), arch: f.arch.name}
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
	if err := extractKernel(ctx, deb, staged); err != nil {
		return err
	}
	if _, err := checkKernelDir(staged, f.arch); err != nil {
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

func loadKernel(dir string, arch guestArch) (kernel, error) {
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
	k.modules, err = checkKernelDir(dir, arch)
	return k, err
}
