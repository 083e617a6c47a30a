package host

import (
	"bufio"
	"compress/gzip"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
)

// KernelHZ is the kernel's tick rate (CONFIG_HZ: jiffies per second), read
// from its build configuration, /boot/config-RELEASE or /proc/config.gz;
// 0 when neither can be read (a container without /boot, a kernel built
// without IKCONFIG_PROC). Both are root's files, written when the kernel
// was built or booted.
var KernelHZ = sync.OnceValue(func() int {
	if release := KernelRelease(); release != "" {
		if f, err := os.Open("/boot/config-" + release); err == nil {
			defer f.Close()
			if hz := configHZ(f); hz > 0 {
				return hz
			}
		}
	}
	f, err := os.Open("/proc/config.gz")
	if err != nil {
		return 0
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		return 0
	}
	return configHZ(z)
})

// configHZ finds CONFIG_HZ in a kernel configuration; 0 if it is not there.
func configHZ(r io.Reader) int {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CONFIG_HZ="); ok {
			if hz, err := strconv.Atoi(v); err == nil && hz > 0 {
				return hz
			}
			return 0
		}
	}
	return 0
}
