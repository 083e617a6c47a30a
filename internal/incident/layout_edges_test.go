package incident

import (
	"math"
	"strings"
	"testing"
)

// Widths come from the advance table for printable ASCII, its first and
// last characters included, and a whole em for anything else; bold is
// its own column.
func TestTextWidthTable(t *testing.T) {
	for _, c := range []struct {
		s    string
		bold bool
		want float64
	}{
		{" ", false, 32}, {"~", false, 84}, {"A", false, 69}, {"A", true, 78},
		{"\x7f", false, 100}, {"\x1f", false, 100}, {"é", false, 100}, {"", false, 0},
	} {
		if got := textWidth(c.s, 100, c.bold); math.Abs(got-c.want) > 1e-9 {
			t.Errorf("textWidth(%q, 100, bold %v) = %v, want %v", c.s, c.bold, got, c.want)
		}
	}
}

// A label that fits exactly is kept whole; one that does not is cut,
// whole runes only, to what fits with its "…".
func TestCutToWidth(t *testing.T) {
	s := strings.Repeat("a", 10) // 62 hundredths each at regular
	exact := textWidth(s, 10, false)
	if got := cutToWidth(s, exact, 10, false); got != s {
		t.Errorf("cutToWidth at its exact width = %q, want it whole", got)
	}
	got := cutToWidth(s, exact-0.01, 10, false)
	if !strings.HasSuffix(got, "…") || textWidth(got, 10, false) > exact-0.01 || len(got) != len("aaaaaaaa…") {
		t.Errorf("cutToWidth just under = %q, want the longest head that fits with …", got)
	}
	if got := cutToWidth("ééé", textWidth("é…", 10, false), 10, false); got != "é…" {
		t.Errorf("cutToWidth(ééé) = %q, want é…", got)
	}
}

// A box anchored at its start, middle or end; two boxes are in order only
// with the label gap between them, at both chart widths.
func TestBoxes(t *testing.T) {
	p := pos{pct: 50, off: 0}
	for anchor, want := range map[string][2]float64{anchorStart: {500, 540}, anchorMiddle: {480, 520}, anchorEnd: {460, 500}} {
		b := textBox(p, anchor, 40)
		if lo, hi := b[0].at(1000), b[1].at(1000); lo != want[0] || hi != want[1] {
			t.Errorf("%s-anchored box at 1000 px: %v–%v, want %v–%v", anchor, lo, hi, want[0], want[1])
		}
	}
	a := box{parts: [][2]pos{{{0, 10}, {0, 20}}}}
	touching := box{parts: [][2]pos{{{0, 20 + labelGap}, {0, 40}}}}
	near := box{parts: [][2]pos{{{0, 20 + labelGap - 0.5}, {0, 40}}}}
	if !before(a, touching) || before(touching, a) {
		t.Errorf("boxes %v apart: before %v, reversed %v; want in order", labelGap, before(a, touching), before(touching, a))
	}
	if before(a, near) {
		t.Errorf("boxes closer than the label gap are in order")
	}
}

// A label goes after its point when it fits there at the narrowest
// chart, before it near the right edge, and is cut to the wider side when
// it fits neither.
func TestLabelAt(t *testing.T) {
	short := "SIGTERM"
	if _, anchor, text, _ := labelAt(pos{pct: 10}, short, 12); anchor != anchorStart || text != short {
		t.Errorf("short label at 10%%: %s %q, want start and whole", anchor, text)
	}
	if _, anchor, text, _ := labelAt(pos{pct: 99}, short, 12); anchor != anchorEnd || text != short {
		t.Errorf("short label at 99%%: %s %q, want end and whole", anchor, text)
	}
	long := strings.Repeat("x", 400)
	if p, anchor, text, w := labelAt(pos{pct: 10}, long, 12); anchor != anchorStart || !strings.HasSuffix(text, "…") || p.at(minChartPX)+w > minChartPX-edgeGap {
		t.Errorf("long label at 10%%: %s %q (%v px), want it cut to the room after it", anchor, text, w)
	}
	if p, anchor, text, _ := labelAt(pos{pct: 90}, long, 12); anchor != anchorEnd || !strings.HasSuffix(text, "…") || p.at(minChartPX) > minChartPX {
		t.Errorf("long label at 90%%: %s %q, want it cut to the room before it", anchor, text)
	}
}

// A centred label stays on the chart at its narrowest: at the left edge
// it starts there (moved in by the edge gap), at the right edge it ends
// there, and in the middle it is centred.
func TestCenteredAt(t *testing.T) {
	const text = "recovered" // about 60 px at 12 px
	w := textWidth(text, 12, false)
	for _, c := range []struct {
		p      pos
		anchor string
		at     float64 // where the anchor point lands at the narrowest
	}{
		{pos{pct: 0}, anchorStart, edgeGap},
		{pos{pct: 0, off: edgeGap + 1}, anchorStart, edgeGap + 1},
		{pos{pct: 50}, anchorMiddle, minChartPX / 2},
		{pos{pct: 100}, anchorEnd, minChartPX - edgeGap},
		{pos{pct: 100, off: -edgeGap - 1}, anchorEnd, minChartPX - edgeGap - 1},
	} {
		p, anchor, gw := centeredAt(c.p, text, 12)
		if anchor != c.anchor || math.Abs(p.at(minChartPX)-c.at) > 1e-9 || gw != w {
			t.Errorf("centeredAt(%+v) = %+v (at %v px), %s, %v; want %s at %v px, width %v", c.p, p, p.at(minChartPX), anchor, gw, c.anchor, c.at, w)
		}
	}
}

// Rows take each box in the first row where it overlaps nothing.
func TestRowsPlace(t *testing.T) {
	at := func(lo, hi float64) box { return box{parts: [][2]pos{{{0, lo}, {0, hi}}}} }
	var r rows
	if !r.fitsFirst(at(0, 10)) {
		t.Errorf("an empty chart has no room in its first row")
	}
	for i, c := range []struct {
		b   box
		row int
	}{{at(0, 10), 0}, {at(5, 15), 1}, {at(10+labelGap, 30), 0}, {at(12, 14), 2}, {at(15+labelGap, 20), 1}} {
		if got := r.place(c.b); got != c.row {
			t.Errorf("box %d placed in row %d, want %d", i, got, c.row)
		}
	}
	if r.fitsFirst(at(20, 25)) || !r.fitsFirst(at(30+labelGap, 40)) {
		t.Errorf("fitsFirst disagrees with the first row's boxes")
	}
}
