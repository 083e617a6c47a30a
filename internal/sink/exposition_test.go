package sink

import (
	"bytes"
	"math"
	"os/exec"
	"strings"
	"testing"

	"github.com/bindwatch/bindwatch/internal/testenv"
)

// The hand-written exposition is what Prometheus parses: label values
// escaped (a kernel release or an output name is not bindwatch's to
// choose), labels in name order, a bucket counting the values up to and
// including its bound, floats as Prometheus' client writes them; promtool
// accepts it.
func TestExposition(t *testing.T) {
	f := newFamily(kindCounter, "test_things_total", "Things, with a \\ and a\nnewline.", "zone", "kind")
	f.add(1, "a\"b\\c\nd", "x")
	f.add(2.5, "a\"b\\c\nd", "x")
	f.add(1e9, "bad \xff utf-8", "y")
	empty := newFamily(kindGauge, "test_empty", "No series yet.", "l")
	h := newHistogram("test_seconds", "A histogram.", []float64{0.5, 1, 2.5})
	for _, v := range []float64{0.5, 0.75, 1, 3} {
		h.observe(v)
	}
	var b bytes.Buffer
	f.write(&b)
	empty.write(&b)
	h.write(&b)
	want := `# HELP test_things_total Things, with a \\ and a\nnewline.
# TYPE test_things_total counter
test_things_total{kind="x",zone="a\"b\\c\nd"} 3.5
test_things_total{kind="y",zone="bad ` + "\uFFFD" + ` utf-8"} 1e+09
# HELP test_seconds A histogram.
# TYPE test_seconds histogram
test_seconds_bucket{le="0.5"} 1
test_seconds_bucket{le="1"} 3
test_seconds_bucket{le="2.5"} 3
test_seconds_bucket{le="+Inf"} 4
test_seconds_sum 5.25
test_seconds_count 4
`
	if b.String() != want {
		t.Errorf("exposition:\n%s\nwant:\n%s", b.String(), want)
	}
	for v, want := range map[float64]string{0: "0", 1: "1", 0.04: "0.04", 1765000000.5: "1.7650000005e+09", math.Inf(1): "+Inf", math.NaN(): "NaN"} {
		if got := formatFloat(v); got != want {
			t.Errorf("formatFloat(%v) = %q, want %q", v, got, want)
		}
	}
	testenv.RequireCommand(t, "checks the exposition", "promtool")
	check := exec.Command("promtool", "check", "metrics")
	check.Stdin = strings.NewReader(b.String())
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}
