package host

import (
	"strings"
	"testing"
)

func TestConfigHZ(t *testing.T) {
	for _, c := range []struct {
		config string
		want   int
	}{
		{"CONFIG_HZ_250=y\nCONFIG_HZ=250\n", 250},
		{"# CONFIG_HZ_1000 is not set\nCONFIG_HZ=1000", 1000},
		{"CONFIG_HZ_PERIODIC=y\n", 0},
		{"CONFIG_HZ=abc\n", 0},
		{"CONFIG_HZ=-5\n", 0},
		{"", 0},
	} {
		if got := configHZ(strings.NewReader(c.config)); got != c.want {
			t.Errorf("configHZ(%q) = %d, want %d", c.config, got, c.want)
		}
	}
}

// The kernel this runs on: /proc/config.gz or /boot/config-RELEASE, when
// either is there, gives one of the tick rates Kconfig offers.
func TestKernelHZ(t *testing.T) {
	hz := KernelHZ()
	t.Logf("CONFIG_HZ = %d", hz)
	switch hz {
	case 0, 100, 250, 300, 1000:
	default:
		t.Errorf("KernelHZ() = %d: not a tick rate Kconfig offers", hz)
	}
}
