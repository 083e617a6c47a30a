package incident

import (
	"fmt"
	"math"
	"unicode/utf8"
)

// The timeline picture is as wide as the page: its SVG has no viewBox, so
// its text is drawn at its CSS size whatever the width, and a moment of
// the incident is a percentage of the width. Labels are laid out once,
// here, for every width from minChartPX to maxChartPX: two labels that do
// not overlap at both ends of that range overlap at no width between
// (the gap between them changes linearly with the width, or, for a span
// and its label, as a concave function, whose minimum is at an end).

const (
	// minChartPX is the narrowest chart laid out without overlap: the
	// page in an 800 px window (less its margins), or printed on A4.
	minChartPX = 680.0
	// maxChartPX is the widest: a 4K screen.
	maxChartPX = 4000.0
	// labelGap is the least room between two labels of a row.
	labelGap = 8.0
	// edgeGap keeps a label off the chart's edges.
	edgeGap = 3.0
)

// Font sizes of the chart's text, in CSS pixels: never below 11.
const (
	labelPX = 12.0
	titlePX = 12.0 // lane titles, bold
	tickPX  = 11.0
)

// advance is the advance width of the printable ASCII characters (32–126)
// in hundredths of an em, rounded up, of DejaVu Sans Book and Bold:
// system-ui on Debian, and wider than the UI fonts of other systems
// (measured with canvas measureText in Chromium). Other characters count
// a whole em. A label estimated with it takes at most that much room.
var advance = [2][95]uint8{
	{32, 41, 46, 84, 64, 96, 78, 28, 40, 40, 50, 84, 32, 37, 32, 34, 64, 64, 64, 64, 64, 64, 64, 64, 64, 64, 34, 34, 84, 84, 84, 54, 100, 69, 69, 70, 78, 64, 58, 78, 76, 30, 30, 66, 56, 87, 75, 79, 61, 79, 70, 64, 62, 74, 69, 99, 69, 62, 69, 40, 34, 40, 84, 50, 50, 62, 64, 55, 64, 62, 36, 64, 64, 28, 28, 58, 28, 98, 64, 62, 64, 64, 42, 53, 40, 64, 60, 82, 60, 60, 53, 64, 34, 64, 84},
	{35, 46, 53, 84, 70, 101, 88, 31, 46, 46, 53, 84, 38, 42, 38, 37, 70, 70, 70, 70, 70, 70, 70, 70, 70, 70, 40, 40, 84, 84, 84, 59, 100, 78, 77, 74, 84, 69, 69, 83, 84, 38, 38, 78, 64, 100, 84, 86, 74, 86, 78, 73, 69, 82, 78, 111, 78, 73, 73, 46, 37, 46, 84, 50, 50, 68, 72, 60, 72, 68, 44, 72, 72, 35, 35, 67, 35, 105, 72, 69, 72, 72, 50, 60, 48, 72, 66, 93, 65, 66, 59, 72, 37, 72, 84},
}

// textWidth estimates how wide s is drawn at px pixels, bold or not: no
// less than it is in DejaVu Sans.
func textWidth(s string, px float64, bold bool) float64 {
	face := 0
	if bold {
		face = 1
	}
	hundredths := 0
	for _, r := range s {
		if r >= 32 && r <= 126 {
			hundredths += int(advance[face][r-32])
		} else {
			hundredths += 100
		}
	}
	return float64(hundredths) / 100 * px
}

// cutToWidth shortens s (already escaped, so cut only between runes, and
// the escaping rule's "\xNN" stays whole as a run of ASCII) until it fits
// in width at px, marking the cut with "…".
func cutToWidth(s string, width, px float64, bold bool) string {
	if textWidth(s, px, bold) <= width {
		return s
	}
	for len(s) > 0 && textWidth(s+"…", px, bold) > width {
		_, n := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-n]
	}
	return s + "…"
}

// pos is a horizontal place on the chart: pct percent of its width, and
// off pixels more.
type pos struct{ pct, off float64 }

func (p pos) at(width float64) float64 { return p.pct/100*width + p.off }

// X is the place as an SVG length: a percentage (the pixels go in dx).
func (p pos) X() string { return fmt.Sprintf("%.3f%%", p.pct) }

// Text anchors.
const (
	anchorStart  = "start"
	anchorMiddle = "middle"
	anchorEnd    = "end"
)

// box is what a label (and, for a span, its bracket) takes of a row.
type box struct {
	// parts are horizontal extents, each from one pos to another: the
	// box at a width runs from the leftmost left to the rightmost right.
	parts [][2]pos
}

func (b box) span(width float64) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for _, p := range b.parts {
		lo = math.Min(lo, p[0].at(width))
		hi = math.Max(hi, p[1].at(width))
	}
	return lo, hi
}

// textBox is the box of a label of width w anchored at p.
func textBox(p pos, anchor string, w float64) [2]pos {
	left := p
	switch anchor {
	case anchorMiddle:
		left.off -= w / 2
	case anchorEnd:
		left.off -= w
	}
	right := left
	right.off += w
	return [2]pos{left, right}
}

// before tells whether a ends, with the gap, before b begins at both
// ends of the width range (and so at every width between).
func before(a, b box) bool {
	for _, w := range []float64{minChartPX, maxChartPX} {
		_, ahi := a.span(w)
		blo, _ := b.span(w)
		if ahi+labelGap > blo {
			return false
		}
	}
	return true
}

// rows packs boxes into rows, each into the first row where it overlaps
// nothing at any width.
type rows struct {
	rows [][]box
}

// place puts b in the first row it fits in, and says which.
func (r *rows) place(b box) int {
	for i, row := range r.rows {
		fits := true
		for _, o := range row {
			if !before(o, b) && !before(b, o) {
				fits = false
				break
			}
		}
		if fits {
			r.rows[i] = append(r.rows[i], b)
			return i
		}
	}
	r.rows = append(r.rows, []box{b})
	return len(r.rows) - 1
}

// fitsFirst tells whether b would share the first row with nothing in
// the way.
func (r *rows) fitsFirst(b box) bool {
	if len(r.rows) == 0 {
		return true
	}
	for _, o := range r.rows[0] {
		if !before(o, b) && !before(b, o) {
			return false
		}
	}
	return true
}

// labelAt anchors a label at p: after it (start), or — when that would
// run off the chart's right edge at its narrowest — before it (end). A
// label that fits neither way is cut to the wider side.
func labelAt(p pos, text string, px float64) (pos, string, string, float64) {
	w := textWidth(text, px, false)
	after, end := p, p
	after.off += 4
	end.off -= 4
	right := minChartPX - edgeGap - after.at(minChartPX) // room after p, at the narrowest
	left := end.at(minChartPX) - edgeGap                 // and before it
	switch {
	case w <= right:
		return after, anchorStart, text, w
	case w <= left:
		return end, anchorEnd, text, w
	case right >= left:
		text = cutToWidth(text, right, px, false)
		return after, anchorStart, text, textWidth(text, px, false)
	}
	text = cutToWidth(text, left, px, false)
	return end, anchorEnd, text, textWidth(text, px, false)
}

// centeredAt anchors a label in the middle of p — or starting at it, or
// ending at it, when centred it would run off the chart's left or right
// edge at its narrowest. p must lie within the chart (0–100%): then what
// fits at the narrowest fits at every width.
func centeredAt(p pos, text string, px float64) (pos, string, float64) {
	w := textWidth(text, px, false)
	switch {
	case p.at(minChartPX)-w/2 < edgeGap:
		if p.at(minChartPX) < edgeGap {
			p.off += edgeGap - p.at(minChartPX)
		}
		return p, anchorStart, w
	case p.at(minChartPX)+w/2 > minChartPX-edgeGap:
		if over := p.at(minChartPX) - (minChartPX - edgeGap); over > 0 {
			p.off -= over
		}
		return p, anchorEnd, w
	}
	return p, anchorMiddle, w
}
