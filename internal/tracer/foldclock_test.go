package tracer

import (
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/host"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// A fold window lasts the fold whichever clock times it: the tick
// (jiffies, where the kernel's CONFIG_HZ is known) or the boot clock. A
// failure is reported, its repeat within the window folded, and a repeat
// after the window reported again, with the folded one counted.
func TestFoldWindowOnEitherClock(t *testing.T) {
	testenv.RequireRoot(t)
	const fold = time.Second
	clocks := []struct {
		name    string
		jiffies func(time.Duration) uint64
	}{
		{"boot", func(time.Duration) uint64 { return 0 }},
		{"jiffies", foldJiffies},
	}
	for _, c := range clocks {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "jiffies" && c.jiffies(fold) == 0 {
				t.Fatalf("the tick cannot time a %v window here (CONFIG_HZ %d from /boot/config-RELEASE or /proc/config.gz)", fold, host.KernelHZ())
			}
			forced := foldJiffies
			foldJiffies = c.jiffies
			defer func() { foldJiffies = forced }()

			port := testenv.FreePort(t)
			tr, err := Open(Config{Backend: testenv.Backend(), Fold: fold, Ports: []PortRange{{uint16(port), uint16(port)}}})
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			if got := tr.coll.Variables["fold_jiffies"]; got == nil {
				t.Fatal("BPF object has no fold_jiffies")
			}
			testenv.Hold(t, "udp", "127.0.0.1", port, testenv.Opts{})
			testenv.FailBind(t, "udp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE)
			first := readFailure(t, tr, port)
			testenv.FailBind(t, "udp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE) // folded
			time.Sleep(fold + 200*time.Millisecond)
			testenv.FailBind(t, "udp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE) // a new window
			second := readFailure(t, tr, port)
			if gap := time.Duration(second.TsNs - first.TsNs); gap < fold {
				t.Errorf("second report %v after the first: want the repeat in between folded, this one after the %v window", gap, fold)
			}
			var folded uint64
			for range 2 { // both generations
				repeats, err := tr.HarvestFolds()
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range repeats {
					if r.Port == uint16(port) {
						folded += r.Count
					}
				}
			}
			if folded != 1 {
				t.Errorf("%d failures folded, want the 1 repeat inside the first window", folded)
			}
		})
	}
}
