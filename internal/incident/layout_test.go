package incident

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
)

// placed is a label of a chart at a width, by the layout's own estimate
// of its text.
type placed struct {
	text        string
	left, right float64
	y           float64
}

func place(x string, dx float64, anchor, text string, px float64, bold bool, y, width float64) placed {
	pct, _ := strconv.ParseFloat(strings.TrimSuffix(x, "%"), 64)
	w := textWidth(text, px, bold)
	left := pct/100*width + dx
	switch anchor {
	case anchorMiddle:
		left -= w / 2
	case anchorEnd:
		left -= w
	}
	return placed{text, left, left + w, y}
}

// labels are every text of a chart as laid out at width.
func labels(c chart, width float64) []placed {
	var out []placed
	for _, l := range c.Lanes {
		out = append(out, place(l.Title.X, l.Title.DX, anchorStart, l.Title.Text, titlePX, true, l.Title.Y, width))
		for _, t := range l.Texts {
			out = append(out, place(t.X, t.DX, t.Anchor, t.Text, labelPX, false, t.Y, width))
		}
	}
	for _, t := range c.Ticks {
		out = append(out, place(t.Label.X, t.Label.DX, t.Label.Anchor, t.Label.Text, tickPX, false, t.Label.Y, width))
	}
	return out
}

// rollingRestart is an incident built from the records of a rolling
// restart lasting span: a failure, folded retries, a signal at 60 % of
// it, the release gap before the end (3 connections reset in the old
// listener's queue, 1037 refused during it), and the recovery — or, when
// it does not recover, a last failure; with a TIME_WAIT holder when tw.
func rollingRestart(span, gap time.Duration, tw, recovers bool) *events.Incident {
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	holder := events.Process{PID: 4242, Comm: "nginx"}
	f := failure(t0, 80, 7)
	f.Holders = []events.Holder{{State: "LISTEN", Addr: "0.0.0.0", Port: 80, Processes: []events.Process{holder}}}
	if tw {
		f.Holders = []events.Holder{{State: "TIME_WAIT", Addr: "0.0.0.0", Port: 80, RemainingMS: 59000, Processes: []events.Process{}}}
	}
	recs := []events.Record{f}
	for i := 1; i < 4; i++ {
		recs = append(recs, &events.Repeats{Header: events.Header{Type: events.TypeRepeats, Version: 1, Time: at(span * time.Duration(i) / 5), Host: "h"}, Count: uint64(i), PID: 7, Comm: "app",
			Proto: "tcp", Port: 80, First: at(span * time.Duration(i-1) / 5), Last: at(span * time.Duration(i) / 5)})
	}
	recs = append(recs,
		&events.Signal{Header: events.Header{Type: events.TypeSignal, Version: 1, Time: at(span * 6 / 10), Host: "h"}, Signal: "SIGTERM", Result: "delivered", Proto: "tcp", Netns: 1, Port: 80,
			Sender: events.Process{PID: 999, Comm: "deploy-with-a-long-name"}, Target: holder},
		&events.PortFree{Header: events.Header{Type: events.TypePortFree, Version: 1, Time: at(span - gap/2), Host: "h"}, Proto: "tcp", Netns: 1, Port: 80, Process: events.Process{PID: 55, Comm: "bindwatch"}},
		&events.Released{Header: events.Header{Type: events.TypeReleased, Version: 1, Time: at(span - gap), Host: "h"}, Proto: "tcp", Netns: 1, Port: 80, How: events.HowExit, KilledBy: "SIGTERM", Holder: &holder,
			ResetConnections: &events.ImpactCount{Count: 3, First: at(span - gap), Last: at(span - gap)}})
	if recovers {
		recs = append(recs, &events.Recovered{Header: events.Header{Type: events.TypeRecovered, Version: 1, Time: at(span), Host: "h"}, Proto: "tcp", Netns: 1, Port: 80, Process: events.Process{PID: 7, Comm: "app"},
			ClientImpact: events.ClientImpact{RefusedConnections: &events.ImpactCount{Count: 1037, First: at(span - gap*9/10), Last: at(span - gap/10)}}})
	} else {
		recs = append(recs, failure(at(span), 80, 7))
	}
	return Build(recs)[0]
}

// The layout's promise, checked by its own estimate of the text: at
// every width from the narrowest to the widest, no two labels of a chart
// overlap and none leaves the chart — for incidents from a millisecond
// to a day long, with a release gap from nothing to most of it. (The
// browser test, TestReportTimelineLayout, measures the real fonts.)
func TestTimelineLabelsNeverOverlap(t *testing.T) {
	var spans []time.Duration
	for d := time.Millisecond; d < 30*time.Hour; d = d * 9 / 8 {
		spans = append(spans, d)
	}
	for _, span := range spans {
		for _, gapFrac := range []float64{0, 0.001, 0.02, 0.3} {
			for _, v := range []struct{ tw, recovers, resetsUnknown bool }{{false, true, false}, {true, true, false}, {false, false, false}, {false, true, true}} {
				gap := time.Duration(float64(span) * gapFrac)
				in := rollingRestart(span, gap, v.tw, v.recovers)
				if v.resetsUnknown && len(in.Released) > 0 {
					in.Released[0].ResetConnections, in.Released[0].ResetUnknown = nil, events.ResetMigratable(3)
				}
				c := drawChart(in)
				name := fmt.Sprintf("span %v gap %v time_wait %v recovers %v resets unknown %v", span, gap, v.tw, v.recovers, v.resetsUnknown)
				for _, width := range []float64{minChartPX, 700, 803, 1100, 1358, 2000, maxChartPX} {
					ls := labels(c, width)
					for i, a := range ls {
						if a.left < -0.01 || a.right > width+0.01 || math.IsNaN(a.left) {
							t.Errorf("%s at %.0f px: %q at %.1f–%.1f leaves the chart", name, width, a.text, a.left, a.right)
						}
						for _, b := range ls[i+1:] {
							if math.Abs(a.y-b.y) < labelRow-1 && a.left < b.right && b.left < a.right {
								t.Errorf("%s at %.0f px: %q (%.1f–%.1f) and %q (%.1f–%.1f) overlap", name, width, a.text, a.left, a.right, b.text, b.left, b.right)
							}
						}
					}
				}
			}
		}
	}
}

// The kernel's lane draws what clients met: the refused connection
// attempts as a band from the first to the last, labelled with their
// count, and the connections reset in the old listener's queue at the
// release, labelled too; a count not measured is not drawn.
func TestKernelLaneDrawsClientImpact(t *testing.T) {
	span, gap := 10*time.Second, 2*time.Second
	in := rollingRestart(span, gap, false, true)
	c := drawChart(in)
	var kernel *chartLane
	for i := range c.Lanes {
		if c.Lanes[i].Kind == "kernel" {
			kernel = &c.Lanes[i]
		}
	}
	if kernel == nil {
		t.Fatal("no kernel lane")
	}
	sc := chartScale(in)
	marks := map[string]svgMark{}
	for _, m := range kernel.Marks {
		marks[m.Kind] = m
	}
	r := in.RefusedConnections
	if m, ok := marks[markRefused]; !ok || m.Count != 1037 || m.X != sc.time(in, r.First).X() ||
		m.W != pct(sc.time(in, r.Last).pct-sc.time(in, r.First).pct) || m.First != "8200" || m.Last != "9800" {
		t.Errorf("refused band %+v (ok %v): want 1037 from +8.200s to +9.800s", m, ok)
	}
	if m, ok := marks[markReset]; !ok || m.Count != 3 || m.X != sc.time(in, in.Released[0].Time).X() {
		t.Errorf("reset mark %+v (ok %v): want 3 at the release", m, ok)
	}
	var texts []string
	for _, tx := range kernel.Texts {
		texts = append(texts, tx.Text)
	}
	for _, want := range []string{"1037 refused", "3 reset"} {
		if !slices.Contains(texts, want) {
			t.Errorf("kernel lane labels %q: no %q", texts, want)
		}
	}
	// Not measured (an old kernel's log): nothing drawn.
	in.RefusedConnections, in.Released[0].ResetConnections = nil, nil
	for _, l := range drawChart(in).Lanes {
		for _, m := range l.Marks {
			if m.Kind == markRefused || m.Kind == markReset || m.Kind == markDropped {
				t.Errorf("a count not measured is drawn: %+v", m)
			}
		}
	}
	// A queue that may have migrated (tcp_migrate_req): said, not counted.
	in = rollingRestart(span, gap, false, true)
	in.Released[0].ResetConnections, in.Released[0].ResetUnknown = nil, events.ResetMigratable(3)
	found := false
	for _, l := range drawChart(in).Lanes {
		for _, tx := range l.Texts {
			found = found || (l.Kind == "kernel" && tx.Text == "resets not known")
		}
	}
	if !found {
		t.Error("a release whose resets are not known: the kernel's lane does not say so")
	}
	// The page carries them.
	var b strings.Builder
	if err := WriteHTML(&b, []*events.Incident{rollingRestart(span, gap, false, true)}, "test", Skipped{}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`class="mark refused" data-kind="refused"`, `data-count="1037"`, `>1037 refused</text>`, `class="mark reset"`, `>3 reset</text>`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("the page has no %q", want)
		}
	}
}
