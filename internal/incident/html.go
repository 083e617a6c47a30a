package incident

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
)

// The page is self-contained: inline CSS and SVG, no script, no font, no
// image, nothing fetched. html/template escapes every process-controlled
// string (comm, argv) for the context it lands in, after the escaping
// rule (events.Escape) made it printable.
//
// Each incident's picture is as wide as the page (layout.go): lanes for
// each holder, each failing process and the kernel's view of the port,
// then the incident's durations as labelled spans, then the time axis. A
// lane is its title, its bar with the marks on it, and rows of labels
// below the bar, packed so that no two overlap at any width the page is
// read or printed at.

// Vertical geometry of a picture, in pixels.
const (
	chartTop   = 6.0
	titleRow   = 19.0 // a lane's title
	barHeight  = 22.0
	barGap     = 4.0  // between a bar and its first row of labels
	labelRow   = 17.0 // a row of labels
	laneGap    = 8.0
	spanRow    = 30.0 // a row of the durations lane: a bracket and its label
	axisHeight = 26.0
	maxLanes   = 4 // holders, and failing processes, shown each
	// lead and trail are the chart's margins, in percent of its width.
	lead  = 1.5
	trail = 1.5
)

type page struct {
	Generated string
	Sources   string
	Skipped   string
	Spreads   []string // SpreadLine of each incident seen on several hosts
	Summary   []summaryRow
	Incidents []htmlIncident
}

// summaryRow is an incident's line in the table at the top of a page of
// two incidents or more.
type summaryRow struct {
	ID, Host, Port, Netns, State, Cause string
	Attempts                            uint64
	Contention, Unserved                string
}

type htmlIncident struct {
	ID       string
	Title    string
	Proto    string
	Port     uint16
	State    string
	Chart    chart
	Timeline []events.TimelineEntry
	Offsets  []string
	Omitted  string // OmittedLine
	Why, Fix string
	FixLabel string // "fix", or "next time" once the holder let go
	Clients  string // what clients met, clientsLine without its label
}

// chart is one incident's picture.
type chart struct {
	Height float64
	Lanes  []chartLane
	// The axis: a line from AxisFrom to AxisTo at AxisY, and its ticks.
	AxisY            float64
	AxisFrom, AxisTo string
	Ticks            []axisTick
	Label            string // aria-label
}

// axisTick is a tick on the axis at X, and its label.
type axisTick struct {
	X     string
	Y, Y2 float64
	Label svgText
}

type chartLane struct {
	Kind  string // holder, failing, kernel, durations
	Title svgText
	Bars  []svgBar
	Marks []svgMark
	Spans []svgSpan
	Texts []svgText
}

// svgText is a label: at X (a percentage) and DX pixels more.
type svgText struct {
	X      string
	DX, Y  float64
	Anchor string
	Class  string
	Text   string
}

// svgBar is a lane's bar from X over W (percentages).
type svgBar struct {
	Class string
	X, W  string
	Y     float64
}

// svgMark is a mark on a lane's bar, drawn in its own coordinates at X.
type svgMark struct {
	Kind  string // failure, repeats, signal, released, recovered, took, port_free, abandoned, end
	X     string
	W     string // repeats: the band's width (a percentage)
	Y     float64
	AtMS  int64
	Count uint64
	First string // repeats: the span, in ms since the first failure
	Last  string
	Title string // the full line, shown on hover (and in the list below)
}

// svgSpan is a duration drawn as a bracket from X over W.
type svgSpan struct {
	Kind  string // contention, drain, unserved, time_wait
	X, W  string
	Y     float64
	MS    int64
	Title string
}

// markTook is the recovery on the lane of the process that took the
// port; the kernel's lane carries the recovery mark itself.
const markTook = "took"

// WriteHTML writes one page with a timeline picture per incident, a
// legend, and — for two incidents or more — a summary table first.
func WriteHTML(w io.Writer, incidents []*events.Incident, sources string, skipped Skipped) error {
	p := page{Generated: time.Now().UTC().Format(time.RFC3339), Sources: sources}
	if skipped.Any() {
		p.Skipped = skipped.String()
	}
	for _, s := range Spreads(incidents) {
		p.Spreads = append(p.Spreads, SpreadLine(s))
	}
	for i, in := range incidents {
		h := picture(i, in)
		p.Incidents = append(p.Incidents, h)
		if len(incidents) > 1 {
			row := Summarize(in)
			p.Summary = append(p.Summary, summaryRow{
				ID: h.ID, Host: row.Host, Port: row.Port, Netns: row.Netns, State: row.State, Cause: row.Cause,
				Attempts: row.Attempts, Contention: row.Contention, Unserved: row.Unserved,
			})
		}
	}
	return pageTemplate().Execute(w, p)
}

// scale maps milliseconds since the first failure to a place on the
// chart.
type scale struct{ lo, hi float64 }

func (s scale) at(ms float64) pos {
	f := (ms - s.lo) / (s.hi - s.lo)
	return pos{pct: math.Round((lead+f*(100-lead-trail))*1000) / 1000}
}

// time is where t is on the chart: at its edge when it is beyond (the
// caller says so where that can be: a TIME_WAIT's far expiry, an
// abandonment the quiet gap declared long after the last attempt).
func (s scale) time(in *events.Incident, t time.Time) pos {
	p := s.at(float64(t.Sub(in.Start)) / float64(time.Millisecond))
	p.pct = math.Max(s.left().pct, math.Min(p.pct, s.right().pct))
	return p
}

// beyond tells whether t is after the chart's right edge.
func (s scale) beyond(in *events.Incident, t time.Time) bool {
	return s.at(float64(t.Sub(in.Start))/float64(time.Millisecond)).pct > s.right().pct
}

// left and right are the chart's edges, where what began before (or goes
// on after) the window shown is cut.
func (s scale) left() pos  { return pos{pct: lead} }
func (s scale) right() pos { return pos{pct: 100 - trail} }

func pct(v float64) string { return fmt.Sprintf("%.3f%%", v) }

// laneBuilder collects one lane: its bar and marks at the bar's height,
// its labels packed in rows below it.
type laneBuilder struct {
	lane   chartLane
	labels []pendingLabel
}

type pendingLabel struct {
	at     pos
	anchor string
	text   string
	class  string
	b      box
}

// centeredLabel is a label of text centred on p (kept inside the chart).
func centeredLabel(p pos, text, class string) pendingLabel {
	at, anchor, w := centeredAt(p, text, labelPX)
	return pendingLabel{at: at, anchor: anchor, text: text, class: class, b: box{parts: [][2]pos{textBox(at, anchor, w)}}}
}

// label adds a label for something at p, after it or before it.
func (lb *laneBuilder) label(p pos, text, class string) {
	at, anchor, text, w := labelAt(p, text, labelPX)
	lb.labels = append(lb.labels, pendingLabel{at: at, anchor: anchor, text: text, class: class, b: box{parts: [][2]pos{textBox(at, anchor, w)}}})
}

// finish lays the lane out from y: its title, its bar, its rows of
// labels; it returns where the next lane begins.
func (lb *laneBuilder) finish(y float64) (chartLane, float64) {
	l := lb.lane
	l.Title.Y = y + 13
	y += titleRow
	for i := range l.Bars {
		l.Bars[i].Y = y
	}
	for i := range l.Marks {
		l.Marks[i].Y = y
	}
	y += barHeight + barGap
	// Labels in the order of their left edge at the narrowest, each in
	// the first row where it overlaps nothing.
	sort.SliceStable(lb.labels, func(i, j int) bool {
		a, _ := lb.labels[i].b.span(minChartPX)
		b, _ := lb.labels[j].b.span(minChartPX)
		return a < b
	})
	var r rows
	for _, pl := range lb.labels {
		row := r.place(pl.b)
		l.Texts = append(l.Texts, svgText{X: pl.at.X(), DX: pl.at.off, Y: y + 13 + float64(row)*labelRow, Anchor: pl.anchor, Class: pl.class, Text: pl.text})
	}
	y += float64(len(r.rows)) * labelRow
	return l, y + laneGap
}

// title makes a lane's title, cut to the chart's narrowest width.
func title(text string) svgText {
	return svgText{X: "0%", DX: 8, Anchor: anchorStart, Class: "lane-label", Text: cutToWidth(text, minChartPX-16, titlePX, true)}
}

func mark(kind string, p pos, atMS int64, title string) svgMark {
	return svgMark{Kind: kind, X: p.X(), AtMS: atMS, Title: title}
}

func picture(i int, in *events.Incident) htmlIncident {
	out := htmlIncident{
		ID: fmt.Sprintf("incident-%d", i+1), Title: Title(in), Proto: in.Proto, Port: in.Port,
		State: in.State, Timeline: in.Timeline, Omitted: OmittedLine(in), Why: in.Diagnosis,
	}
	out.FixLabel, out.Fix = Advice(in)
	out.Clients = strings.TrimPrefix(clientsLine(in), "clients: ")
	for _, e := range in.Timeline {
		out.Offsets = append(out.Offsets, Offset(e.AtMS))
	}
	out.Chart = drawChart(in)
	out.Chart.Label = "timeline of " + out.Title
	return out
}

// timeWait is the TIME_WAIT of an incident's holder: when its sockets
// entered it (TimeWaitLen before they expire), and when they expired —
// seen (a released record) or foreseen.
type timeWait struct {
	start, expiry time.Time
	seen          bool
}

func timeWaitOf(in *events.Incident, h *events.IncidentHolder) *timeWait {
	if h.State != "TIME_WAIT" {
		return nil
	}
	var tw timeWait
	for _, r := range in.Released {
		if r.How == events.HowExpired {
			tw.expiry, tw.seen = r.Time, true
		}
	}
	if !h.Expires.IsZero() {
		tw.start = h.Expires.Add(-events.TimeWaitLen)
		if !tw.seen {
			tw.expiry = h.Expires
		}
	}
	if tw.start.IsZero() && tw.expiry.IsZero() {
		return nil
	}
	return &tw
}

// chartScale is the window a chart shows: the incident, from its first
// failure to its end, with room after a recovery for the port held
// again, and what is near it (a TIME_WAIT's start or expiry within half
// the incident's length); what is further is cut at the edges.
func chartScale(in *events.Incident) scale {
	span := math.Max(float64(in.ContentionMS), 1)
	lo, hi := 0.0, span
	near := func(t time.Time) {
		if t.IsZero() {
			return
		}
		ms := float64(t.Sub(in.Start)) / float64(time.Millisecond)
		if ms >= -span/2 && ms <= span*1.5 {
			lo, hi = math.Min(lo, ms), math.Max(hi, ms)
		}
	}
	for _, r := range in.Released {
		near(r.Time)
	}
	for _, e := range in.Timeline {
		if e.Kind == events.MarkAbandoned || e.Kind == events.MarkEnd {
			near(e.Time)
		}
	}
	for hi := range in.Holders {
		if tw := timeWaitOf(in, &in.Holders[hi]); tw != nil {
			near(tw.start)
			near(tw.expiry)
		}
	}
	width := hi - lo
	after := width * 0.04
	if in.Recovered != nil {
		after = width * 0.14 // the port held again
	}
	return scale{lo: lo - width*0.02, hi: hi + after}
}

func drawChart(in *events.Incident) chart {
	sc := chartScale(in)
	msOf := func(t time.Time) int64 { return t.Sub(in.Start).Milliseconds() }
	release := releaseTime(in)
	var lanes []*laneBuilder

	// The holders: held from before the incident until released.
	for hi := range in.Holders {
		if hi == maxLanes {
			break
		}
		h := &in.Holders[hi]
		lb := &laneBuilder{lane: chartLane{Kind: "holder", Title: title("holder: " + holderLabel(h) + " — " + h.Kind)}}
		from, to, class := sc.left(), sc.right(), "held"
		if r := releaseOf(in, h); r != nil {
			to = sc.time(in, r.Time)
		} else if release != nil {
			to = sc.time(in, release.Time)
		}
		if tw := timeWaitOf(in, h); tw != nil {
			class = "time_wait"
			if !tw.start.IsZero() {
				since := "TIME_WAIT since " + signedOffset(msOf(tw.start))
				if p := sc.at(float64(msOf(tw.start))); p.pct >= sc.left().pct {
					from = p
					lb.label(p, since, "bar-label")
				} else {
					lb.label(sc.left(), "← "+since, "bar-label")
				}
			}
			if !tw.expiry.IsZero() {
				word := "expires at "
				if tw.seen {
					word = "expired at "
				}
				if !sc.beyond(in, tw.expiry) {
					p := sc.time(in, tw.expiry)
					to = p
					lb.label(p, word+signedOffset(msOf(tw.expiry)), "bar-label")
				} else {
					to = sc.right()
					lb.label(sc.right(), word+signedOffset(msOf(tw.expiry))+" →", "bar-label")
				}
			}
		}
		lb.lane.Bars = append(lb.lane.Bars, svgBar{Class: class, X: from.X(), W: pct(math.Max(to.pct-from.pct, 0))})
		for _, s := range in.Signals {
			if holds(h, s.Target.PID) || len(in.Holders) == 1 {
				lb.signal(sc, in, s)
			}
		}
		for _, r := range in.Released {
			if r.Holder == nil || holds(h, r.Holder.PID) || len(in.Holders) == 1 {
				lb.released(sc, in, r)
			}
		}
		lanes = append(lanes, lb)
	}
	if len(in.Holders) == 0 && (len(in.Signals) > 0 || len(in.Released) > 0) {
		lb := &laneBuilder{lane: chartLane{Kind: "holder", Title: title("holder: unknown")}}
		for _, s := range in.Signals {
			lb.signal(sc, in, s)
		}
		for _, r := range in.Released {
			lb.released(sc, in, r)
		}
		lanes = append(lanes, lb)
	}

	// The failing processes: a mark per reported failure, a band per
	// folded count over the span its failures happened in; the recovery
	// on the lane of whoever recovered.
	recoveredShown := false
	for fi, f := range in.Failing {
		if fi == maxLanes {
			break
		}
		lb := &laneBuilder{lane: chartLane{Kind: "failing", Title: title(fmt.Sprintf("failing: %s — %d attempt%s (%s)",
			processLabel(&f.Process), f.Attempts, events.Plural(f.Attempts), strings.Join(f.Errnos, "/")))}}
		lb.failures(sc, in, &f)
		if r := in.Recovered; r != nil && r.Process.PID == f.Process.PID {
			p := sc.time(in, r.Time)
			lb.lane.Marks = append(lb.lane.Marks, mark(markTook, p, msOf(r.Time), recoveredLineOf(in)))
			lb.label(p, "took the port", "mark-label")
			recoveredShown = true
		}
		lanes = append(lanes, lb)
	}
	if r := in.Recovered; r != nil && !recoveredShown {
		lb := &laneBuilder{lane: chartLane{Kind: "failing", Title: title("new: " + processLabel(&r.Process) + " — did not fail, took the port")}}
		p := sc.time(in, r.Time)
		lb.lane.Marks = append(lb.lane.Marks, mark(markTook, p, msOf(r.Time), recoveredLineOf(in)))
		lb.label(p, "took the port", "mark-label")
		lanes = append(lanes, lb)
	}

	lanes = append(lanes, kernelLane(sc, in, release))
	durations := durationsLane(sc, in, release)

	var c chart
	y := chartTop
	for _, lb := range lanes {
		var l chartLane
		l, y = lb.finish(y)
		c.Lanes = append(c.Lanes, l)
	}
	if durations != nil {
		c.Lanes = append(c.Lanes, durations.finishSpans(&y))
	}
	c.AxisY = y + 2
	c.AxisFrom, c.AxisTo = sc.left().X(), sc.right().X()
	c.Ticks = axisTicks(sc, in, c.AxisY)
	c.Height = c.AxisY + axisHeight
	return c
}

// signal marks a signal to the holder, labelled with what it was and who
// sent it.
func (lb *laneBuilder) signal(sc scale, in *events.Incident, s *events.Signal) {
	p := sc.time(in, s.Time)
	lb.lane.Marks = append(lb.lane.Marks, mark(events.MarkSignal, p, s.Time.Sub(in.Start).Milliseconds(), signalLine(s)))
	text := s.Signal + " from " + processLabel(&s.Sender)
	if s.Result != "delivered" {
		text += " (" + s.Result + ")"
	}
	lb.label(p, text, "mark-label")
}

// released marks a holder letting go, labelled with how.
func (lb *laneBuilder) released(sc scale, in *events.Incident, r *events.Released) {
	p := sc.time(in, r.Time)
	lb.lane.Marks = append(lb.lane.Marks, mark(events.MarkReleased, p, r.Time.Sub(in.Start).Milliseconds(), releasedLine(r)))
	how := r.How
	switch r.How {
	case events.HowExit:
		how = "exited"
		if r.KilledBy != "" {
			how = "killed by " + r.KilledBy
		}
	case events.HowExpired:
		how = "TIME_WAIT expired"
	case events.HowClose:
		how = "closed"
	}
	lb.label(p, "released: "+how, "mark-label")
}

// failures marks a failing process's reported failures, and a band for
// each repeats entry over the span its failures happened in: the
// record's first and last where it says them; in older logs, since the
// process's previous repeats (or its first failure) until the record.
// Repeats harvested together (the same moment) are one band.
func (lb *laneBuilder) failures(sc scale, in *events.Incident, f *events.IncidentProcess) {
	since := f.First
	var band *svgMark
	var bandFirst, bandLast time.Time
	var bandLabel int
	for _, e := range in.Timeline {
		if e.PID != f.Process.PID {
			continue
		}
		switch e.Kind {
		case events.MarkFailure:
			lb.lane.Marks = append(lb.lane.Marks, svgMark{Kind: e.Kind, X: sc.time(in, e.Time).X(), AtMS: e.AtMS, Count: 1, Title: e.Text})
		case events.MarkRepeats:
			first, last, ok := RepeatsSpan(e.First, e.Last, f.First, e.Time)
			if !ok {
				first, last = since, e.Time
			}
			since = e.Time
			if band != nil && band.AtMS == e.AtMS { // harvested together: one band
				band.Count += e.Count
				band.Title += "; " + e.Text
				bandFirst, bandLast = minTime(bandFirst, first), maxTime(bandLast, last)
			} else {
				lb.lane.Marks = append(lb.lane.Marks, svgMark{Kind: e.Kind, AtMS: e.AtMS, Count: e.Count, Title: e.Text})
				band = &lb.lane.Marks[len(lb.lane.Marks)-1] // no append follows until the next band
				bandFirst, bandLast = first, last
				lb.labels = append(lb.labels, pendingLabel{})
				bandLabel = len(lb.labels) - 1
			}
			p0, p1 := sc.time(in, bandFirst), sc.time(in, bandLast)
			band.X, band.W = p0.X(), pct(p1.pct-p0.pct)
			band.First, band.Last = fmt.Sprint(bandFirst.Sub(in.Start).Milliseconds()), fmt.Sprint(bandLast.Sub(in.Start).Milliseconds())
			lb.labels[bandLabel] = centeredLabel(pos{pct: (p0.pct + p1.pct) / 2}, fmt.Sprintf("×%d folded", band.Count), "mark-label")
		}
	}
}

// kernelLane is the port as the kernel saw it: held, free (nothing
// listened) from the last release, held again from the recovery; the
// checks that found it free, and how the incident ended if it did not
// recover.
func kernelLane(sc scale, in *events.Incident, release *events.Released) *laneBuilder {
	lb := &laneBuilder{lane: chartLane{Kind: "kernel", Title: title(fmt.Sprintf("port %s %s — as the kernel saw it", in.Proto, events.HostPort(in.Addr, in.Port)))}}
	left, right := sc.left(), sc.right()
	freeFrom, freeTo := right, right
	if release != nil {
		freeFrom = sc.time(in, release.Time)
	}
	if r := in.Recovered; r != nil {
		freeTo = sc.time(in, r.Time)
		if release == nil {
			freeFrom = freeTo // released unseen: held until recovered, by someone
		}
	}
	lb.lane.Bars = append(lb.lane.Bars, svgBar{Class: "held", X: left.X(), W: pct(freeFrom.pct - left.pct)})
	lb.label(left, "held", "bar-label")
	if release != nil {
		lb.lane.Bars = append(lb.lane.Bars, svgBar{Class: "free", X: freeFrom.X(), W: pct(math.Max(freeTo.pct-freeFrom.pct, 0))})
		lb.label(freeFrom, "free: nothing listened", "bar-label")
	}
	for _, e := range in.Timeline {
		p := sc.time(in, e.Time)
		switch e.Kind {
		case events.MarkPortFree:
			lb.lane.Marks = append(lb.lane.Marks, mark(e.Kind, p, e.AtMS, e.Text))
			lb.label(p, "port free (a check)", "mark-label")
		case events.MarkAbandoned, events.MarkEnd:
			text := "abandoned: nobody tried any more"
			if e.Kind == events.MarkEnd {
				text = "trace ended"
			}
			if sc.beyond(in, e.Time) { // the quiet gap after the last attempt
				text += " (at " + Offset(e.AtMS) + ") →"
			}
			lb.lane.Marks = append(lb.lane.Marks, mark(e.Kind, p, e.AtMS, e.Text))
			lb.label(p, text, "mark-label")
		}
	}
	if r := in.Recovered; r != nil {
		lb.lane.Bars = append(lb.lane.Bars, svgBar{Class: "held again", X: freeTo.X(), W: pct(right.pct - freeTo.pct)})
		lb.lane.Marks = append(lb.lane.Marks, mark(events.MarkRecovered, freeTo, r.Time.Sub(in.Start).Milliseconds(), recoveredLineOf(in)))
		lb.label(freeTo, "held again", "bar-label")
	}
	lb.clients(sc, in)
	return lb
}

// Kinds of the client impact's marks on the kernel's lane.
const (
	markRefused = "refused" // connection attempts refused: a band from the first to the last
	markDropped = "dropped" // datagrams dropped for no socket: likewise
	markReset   = "reset"   // connections in a closing listener's queue reset: at its release
)

// clients draws on the kernel's lane what clients met, as the kernel
// counted it: the connection attempts it refused (or the datagrams it
// dropped) while nothing listened, a band from the first to the last
// labelled "37 refused"; and the connections reset in the old listener's
// queue at each release, labelled "3 reset" there ("resets not known"
// where the queue may have migrated). Nothing is drawn for a count of 0
// or one not measured (the clients line says which).
func (lb *laneBuilder) clients(sc scale, in *events.Incident) {
	band := func(kind string, c *events.ImpactCount, word, hover string) {
		if c == nil || c.Count == 0 || c.First.IsZero() {
			return
		}
		last := c.Last
		if last.Before(c.First) {
			last = c.First
		}
		p0, p1 := sc.time(in, c.First), sc.time(in, last)
		m := svgMark{Kind: kind, X: p0.X(), W: pct(p1.pct - p0.pct), AtMS: c.First.Sub(in.Start).Milliseconds(), Count: c.Count,
			First: fmt.Sprint(c.First.Sub(in.Start).Milliseconds()), Last: fmt.Sprint(last.Sub(in.Start).Milliseconds()),
			Title: fmt.Sprintf("%d %s, the first at %s, the last at %s", c.Count, hover, Offset(c.First.Sub(in.Start).Milliseconds()), Offset(last.Sub(in.Start).Milliseconds()))}
		lb.lane.Marks = append(lb.lane.Marks, m)
		lb.labels = append(lb.labels, centeredLabel(pos{pct: (p0.pct + p1.pct) / 2}, fmt.Sprintf("%d %s", c.Count, word), "mark-label"))
	}
	band(markRefused, in.RefusedConnections, "refused", "connection attempts refused while nothing listened (the clients got ECONNREFUSED)")
	band(markDropped, in.DroppedDatagrams, "dropped", "datagrams dropped for no socket (ICMP port unreachable)")
	for _, r := range in.Released {
		if r.ResetUnknown != "" { // the queue may have moved to another listener
			p := sc.time(in, r.Time)
			lb.lane.Marks = append(lb.lane.Marks, mark(markReset, p, r.Time.Sub(in.Start).Milliseconds(), "resets not known: "+r.ResetUnknown))
			lb.label(p, "resets not known", "mark-label")
			continue
		}
		c := r.ResetConnections
		if c == nil || c.Count == 0 {
			continue
		}
		p := sc.time(in, r.Time)
		m := mark(markReset, p, r.Time.Sub(in.Start).Milliseconds(),
			fmt.Sprintf("%d connection%s in the old listener's queue reset at release (the clients got ECONNRESET)", c.Count, events.Plural(c.Count)))
		m.Count = c.Count
		lb.lane.Marks = append(lb.lane.Marks, m)
		lb.label(p, fmt.Sprintf("%d reset", c.Count), "mark-label")
	}
}

// spanBuilder is the durations lane: a bracket per duration, packed in
// rows, each labelled.
type spanBuilder struct {
	lane  chartLane
	spans []pendingSpan
}

type pendingSpan struct {
	span  svgSpan
	label pendingLabel
	b     box
}

// durationsLane draws the incident's durations — contention, drain,
// outage (unserved: nothing listened) — as labelled spans, or nil when
// there is no span to draw.
func durationsLane(sc scale, in *events.Incident, release *events.Released) *spanBuilder {
	sb := &spanBuilder{lane: chartLane{Kind: "durations", Title: title("durations")}}
	add := func(kind string, from, to time.Time, ms int64, text, hover string) {
		p0, p1 := sc.time(in, from), sc.time(in, to)
		mid := pos{pct: (p0.pct + p1.pct) / 2}
		w := textWidth(text, labelPX, false)
		var pl pendingLabel
		if (p1.pct-p0.pct)/100*minChartPX >= w+8 { // inside the bracket
			pl = centeredLabel(mid, text, "span-label")
		} else {
			at, anchor, text, w := labelAt(p1, text, labelPX)
			if anchor == anchorEnd {
				at, anchor, text, w = labelAt(p0, text, labelPX)
			}
			pl = pendingLabel{at: at, anchor: anchor, text: text, class: "span-label", b: box{parts: [][2]pos{textBox(at, anchor, w)}}}
		}
		b := box{parts: [][2]pos{{p0, p1}, pl.b.parts[0]}}
		sb.spans = append(sb.spans, pendingSpan{span: svgSpan{Kind: kind, X: p0.X(), W: pct(math.Max(p1.pct-p0.pct, 0)), MS: ms, Title: hover}, label: pl, b: b})
	}
	contention := "contention " + events.Millis(in.ContentionMS)
	switch {
	case in.State == events.IncidentRecovered:
		contention += ": someone could not get the port"
	case in.Untracked != "":
		contention += ", recovery not tracked"
	default:
		contention += ", not recovered"
	}
	add("contention", in.Start, in.End, in.ContentionMS, contention,
		"contention: from the first failure to the "+map[bool]string{true: "recovery", false: "incident's end"}[in.Recovered != nil])
	if in.DrainMS != nil {
		var first *events.Signal
		for _, s := range in.Signals {
			if first == nil || s.Time.Before(first.Time) {
				first = s
			}
		}
		if first != nil {
			add("drain", first.Time, first.Time.Add(time.Duration(*in.DrainMS)*time.Millisecond), *in.DrainMS,
				"drain "+events.Millis(*in.DrainMS), "drain: from the first signal to the holder until it let go of the port")
		}
	}
	if in.UnservedMS != nil && in.Recovered != nil {
		add("unserved", in.Recovered.Time.Add(-time.Duration(*in.UnservedMS)*time.Millisecond), in.Recovered.Time, *in.UnservedMS,
			"outage "+events.Millis(*in.UnservedMS)+" (nothing listened)", "outage (unserved): from the last holder's release to the recovery")
	}
	return sb
}

// finishSpans lays the durations lane out from *y.
func (sb *spanBuilder) finishSpans(y *float64) chartLane {
	l := sb.lane
	l.Title.Y = *y + 13
	*y += titleRow
	var r rows
	for _, ps := range sb.spans {
		row := r.place(ps.b)
		top := *y + float64(row)*spanRow
		s := ps.span
		s.Y = top + 2
		l.Spans = append(l.Spans, s)
		l.Texts = append(l.Texts, svgText{X: ps.label.at.X(), DX: ps.label.at.off, Y: top + 23, Anchor: ps.label.anchor, Class: ps.label.class, Text: ps.label.text})
	}
	*y += float64(len(r.rows))*spanRow + laneGap
	return l
}

// axisTicks are 4–8 round offsets from the first failure to the end,
// each labelled where its label overlaps no other.
func axisTicks(sc scale, in *events.Incident, y float64) []axisTick {
	span := math.Max(float64(in.ContentionMS), 1)
	var out []axisTick
	var r rows
	for _, t := range ticks(span) {
		p := sc.at(t)
		if p.pct > sc.right().pct { // the last round offset can lie past the end
			continue
		}
		text := Offset(int64(t))
		at, anchor, w := centeredAt(p, text, tickPX)
		b := box{parts: [][2]pos{textBox(at, anchor, w)}}
		if !r.fitsFirst(b) {
			continue
		}
		r.place(b)
		out = append(out, axisTick{X: p.X(), Y: y, Y2: y + 5, Label: svgText{X: at.X(), DX: at.off, Y: y + 17, Anchor: anchor, Class: "tick", Text: text}})
	}
	return out
}

// signedOffset is a time relative to the first failure, before it too:
// "-0.200s", "+58.800s".
func signedOffset(ms int64) string {
	if ms < 0 {
		return "-" + strings.TrimPrefix(Offset(-ms), "+")
	}
	return Offset(ms)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func recoveredLineOf(in *events.Incident) string {
	return recoveredLine(in, in.Recovered)
}

// releaseTime is the incident's last release (the one that freed the
// port), if any was seen.
func releaseTime(in *events.Incident) *events.Released {
	if len(in.Released) == 0 {
		return nil
	}
	return in.Released[len(in.Released)-1]
}

func releaseOf(in *events.Incident, h *events.IncidentHolder) *events.Released {
	for _, r := range in.Released {
		if r.Holder != nil && holds(h, r.Holder.PID) {
			return r
		}
	}
	return nil
}

func holds(h *events.IncidentHolder, pid int) bool {
	for _, p := range h.Processes {
		if p.PID == pid {
			return true
		}
	}
	return h.BoundBy != nil && h.BoundBy.PID == pid
}

func holderLabel(h *events.IncidentHolder) string {
	if len(h.Processes) == 0 {
		if h.State == "TIME_WAIT" {
			return "TIME_WAIT " + h.Addr + " (no process)"
		}
		return h.State
	}
	return processLabel(&h.Processes[0])
}

// processLabel is the chart's short name for a process, "4242 nginx", at
// most 24 bytes: the comm cut by the escaping rule's cut, never inside an
// escape.
func processLabel(p *events.Process) string {
	pid := fmt.Sprintf("%d ", p.PID)
	return pid + events.EscapeCut(p.Comm, max(24-len(pid), 4))
}

// ticks are 4–8 round offsets from 0 to span.
func ticks(span float64) []float64 {
	step := math.Pow(10, math.Floor(math.Log10(span/4)))
	for _, m := range []float64{1, 2, 5, 10} {
		if span/(step*m) <= 8 {
			step *= m
			break
		}
	}
	var out []float64
	for t := 0.0; t <= span+step/2; t += step {
		out = append(out, t)
	}
	return out
}

// pageTemplate is parsed on first use: parsing it costs ~0.3 ms, which
// every bindwatch command would otherwise pay at start.
var pageTemplate = sync.OnceValue(func() *template.Template {
	return template.Must(template.New("page").Parse(pageHTML))
})

const pageHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>bindwatch incidents</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1d2330; background: #fff; }
h1 { font-size: 1.3em; } h2 { font-size: 1.05em; margin: 1.6em 0 .4em; }
.meta { color: #5b6475; }
.skipped { color: #8a4b00; }
table.summary { border-collapse: collapse; margin: .6em 0 1em; font-size: .93em; }
table.summary th, table.summary td { border-bottom: 1px solid #d8dce3; padding: .2em .8em .2em 0; text-align: left; vertical-align: top; }
table.summary td.num { text-align: right; white-space: nowrap; }
table.summary td.host { overflow-wrap: anywhere; }
table.summary td.port { white-space: nowrap; }
table.summary .netns { color: #5b6475; font-size: .85em; }
ul.legend { list-style: none; padding: 0; margin: .4em 0 1em; display: flex; flex-wrap: wrap; gap: .3em 1.4em; color: #3a4252; }
ul.legend li { display: inline-flex; align-items: center; gap: .4em; }
ul.legend svg { flex: none; }
svg.timeline { display: block; width: 100%; background: #f7f8fa; border: 1px solid #d8dce3; overflow: hidden; }
svg text { font: 12px system-ui, sans-serif; fill: #1d2330; }
svg text.lane-label { font-weight: 600; }
svg text.bar-label, svg text.span-label { fill: #3a4252; }
svg text.tick { font-size: 11px; fill: #5b6475; }
.bar.held { fill: #9bb7e0; } .bar.free { fill: #f2a7a0; } .bar.held.again { fill: #98d4a6; } .bar.time_wait { fill: #c9b3e6; }
.mark.failure circle { fill: #d33a2c; }
.mark.repeats rect { fill: #d33a2c; fill-opacity: .28; stroke: #d33a2c; stroke-opacity: .5; stroke-width: 2; }
.mark.signal path { fill: #e0a100; stroke: #8a6200; stroke-width: 1; }
.mark.released line { stroke: #1d2330; stroke-width: 2; }
.mark.port_free line { stroke: #5b6475; stroke-width: 1.5; stroke-dasharray: 2 2; }
.mark.abandoned path, .mark.end path { stroke: #5b6475; stroke-width: 2.5; fill: none; }
.mark.recovered path, .mark.took path { fill: #1e8e3e; }
.mark.refused rect, .mark.dropped rect { fill: #7a1f16; fill-opacity: .55; } .mark.refused line, .mark.dropped line { stroke: #7a1f16; stroke-width: 1.5; }
.mark.reset path { fill: #7a1f16; } .mark.reset line { stroke: #7a1f16; stroke-width: 1.5; stroke-dasharray: 3 2; }
.span line { stroke-width: 2; }
.span.contention line { stroke: #7a1f16; } .span.drain line { stroke: #b07800; } .span.unserved line { stroke: #d33a2c; }
.axis line { stroke: #9aa3b2; }
ol.events { font: 12px ui-monospace, monospace; padding-left: 1.5em; }
ol.events .at { display: inline-block; min-width: 6em; color: #5b6475; }
.why, .fix, .clients { max-width: 60em; }
@media print {
  body { margin: 0; font-size: 10pt; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  svg.timeline { background: #fff; break-inside: avoid; }
  section.incident { break-before: auto; }
  h2 { break-after: avoid; }
  table.summary, ul.legend { break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
}
</style>
</head>
<body>
<h1>bindwatch incidents</h1>
<p class="meta">{{len .Incidents}} incident(s) from {{.Sources}}; generated {{.Generated}}.</p>
{{if .Skipped}}<p class="skipped">Skipped: {{.Skipped}}</p>{{end}}
{{if .Summary}}<table class="summary">
<thead><tr><th>host</th><th>port</th><th>state</th><th>cause</th><th>attempts</th><th>contention</th><th>unserved (outage)</th><th></th></tr></thead>
<tbody>
{{range .Summary}}<tr><td class="host">{{.Host}}</td><td class="port">{{.Port}}{{if .Netns}}<br><span class="netns">{{.Netns}}</span>{{end}}</td><td>{{.State}}</td><td>{{.Cause}}</td><td class="num">{{.Attempts}}</td><td class="num">{{.Contention}}</td><td class="num">{{.Unserved}}</td><td><a href="#{{.ID}}">timeline</a></td></tr>
{{end}}</tbody>
</table>{{end}}
{{if .Spreads}}<section class="spreads"><h2>Same incident on several hosts</h2>
<ul>{{range .Spreads}}<li class="spread">{{.}}</li>
{{end}}</ul></section>{{end}}
{{if .Incidents}}<ul class="legend" aria-label="legend">
<li><svg width="28" height="14" aria-hidden="true"><rect class="bar held" x="0" y="2" width="28" height="10" rx="2"></rect></svg>port held</li>
<li><svg width="28" height="14" aria-hidden="true"><rect class="bar free" x="0" y="2" width="28" height="10" rx="2"></rect></svg>free: nothing listened</li>
<li><svg width="28" height="14" aria-hidden="true"><rect class="bar held again" x="0" y="2" width="28" height="10" rx="2"></rect></svg>held again</li>
<li><svg width="28" height="14" aria-hidden="true"><rect class="bar time_wait" x="0" y="2" width="28" height="10" rx="2"></rect></svg>TIME_WAIT (60 s)</li>
<li><svg class="mark failure" width="14" height="14" aria-hidden="true"><circle cx="7" cy="7" r="5"></circle></svg>failure</li>
<li><svg class="mark repeats" width="28" height="14" aria-hidden="true"><rect x="1" y="2" width="26" height="10" rx="2"></rect></svg>folded failures, over the span they happened in</li>
<li><svg class="mark signal" width="16" height="14" aria-hidden="true"><path d="M8 13 L15 1 L1 1 Z"></path></svg>signal to the holder, and its sender</li>
<li><svg class="mark released" width="8" height="16" aria-hidden="true"><line x1="4" x2="4" y1="0" y2="16"></line></svg>holder let go</li>
<li><svg class="mark recovered" width="16" height="16" aria-hidden="true"><path d="M8 0 L16 8 L8 16 L0 8 Z"></path></svg>recovered: the port taken</li>
<li><svg class="mark refused" width="28" height="12" aria-hidden="true"><rect x="1" y="3" width="26" height="5"></rect><line x1="1" x2="1" y1="1" y2="10"></line><line x1="27" x2="27" y1="1" y2="10"></line></svg>clients refused (or datagrams dropped) while nothing listened: first to last, counted by the kernel</li>
<li><svg class="mark reset" width="12" height="16" aria-hidden="true"><path d="M6 7 L11 1 L1 1 Z"></path><line x1="6" x2="6" y1="7" y2="16"></line></svg>connections in the old listener's queue reset at its release</li>
<li><svg class="span contention" width="28" height="10" aria-hidden="true"><line x1="1" x2="27" y1="5" y2="5"></line><line x1="1" x2="1" y1="0" y2="10"></line><line x1="27" x2="27" y1="0" y2="10"></line></svg>contention: first failure to recovery</li>
<li><svg class="span drain" width="28" height="10" aria-hidden="true"><line x1="1" x2="27" y1="5" y2="5"></line><line x1="1" x2="1" y1="0" y2="10"></line><line x1="27" x2="27" y1="0" y2="10"></line></svg>drain: signal to release</li>
<li><svg class="span unserved" width="28" height="10" aria-hidden="true"><line x1="1" x2="27" y1="5" y2="5"></line><line x1="1" x2="1" y1="0" y2="10"></line><line x1="27" x2="27" y1="0" y2="10"></line></svg>outage: release to recovery (nothing listened)</li>
</ul>{{end}}
{{range .Incidents}}
<section class="incident" id="{{.ID}}" data-proto="{{.Proto}}" data-port="{{.Port}}" data-state="{{.State}}">
<h2>{{.Title}}</h2>
<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="100%" height="{{.Chart.Height}}" role="img" aria-label="{{.Chart.Label}}">
{{range .Chart.Lanes}}<g class="lane" data-lane="{{.Kind}}">
<text class="{{.Title.Class}}" x="{{.Title.X}}" dx="{{.Title.DX}}" y="{{.Title.Y}}">{{.Title.Text}}</text>
{{range .Bars}}<rect class="bar {{.Class}}" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="22" rx="3"></rect>
{{end}}{{range .Spans}}<svg class="span {{.Kind}}" data-kind="{{.Kind}}" data-ms="{{.MS}}" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="10" overflow="visible"><title>{{.Title}}</title><line x1="0" x2="100%" y1="5" y2="5"></line><line x1="0" x2="0" y1="0" y2="10"></line><line x1="100%" x2="100%" y1="0" y2="10"></line></svg>
{{end}}{{range .Marks}}<svg class="mark {{.Kind}}" data-kind="{{.Kind}}" data-at-ms="{{.AtMS}}"{{if .Count}} data-count="{{.Count}}"{{end}}{{if .First}} data-first-ms="{{.First}}" data-last-ms="{{.Last}}"{{end}} x="{{.X}}" y="{{.Y}}"{{if .W}} width="{{.W}}"{{end}} height="22" overflow="visible"><title>{{.Title}}</title>
{{if eq .Kind "failure"}}<circle cx="0" cy="11" r="5"></circle>
{{else if eq .Kind "repeats"}}<rect x="0" y="4" width="100%" height="14" rx="2"></rect>
{{else if eq .Kind "signal"}}<path d="M0 12 L7 0 L-7 0 Z"></path>
{{else if eq .Kind "released"}}<line x1="0" x2="0" y1="-3" y2="25"></line>
{{else if eq .Kind "port_free"}}<line x1="0" x2="0" y1="0" y2="22"></line>
{{else if or (eq .Kind "abandoned") (eq .Kind "end")}}<path d="M-5 6 L5 16 M5 6 L-5 16"></path>
{{else if or (eq .Kind "refused") (eq .Kind "dropped")}}<rect x="0" y="15" width="100%" height="5"></rect><line x1="0" x2="0" y1="11" y2="22"></line><line x1="100%" x2="100%" y1="11" y2="22"></line>
{{else if eq .Kind "reset"}}<path d="M0 7 L5 0 L-5 0 Z"></path><line x1="0" x2="0" y1="7" y2="22"></line>
{{else}}<path d="M0 3 L8 11 L0 19 L-8 11 Z"></path>
{{end}}</svg>
{{end}}{{range .Texts}}<text class="{{.Class}}" x="{{.X}}" dx="{{.DX}}" y="{{.Y}}" text-anchor="{{.Anchor}}">{{.Text}}</text>
{{end}}</g>
{{end}}<g class="axis"><line x1="{{.Chart.AxisFrom}}" x2="{{.Chart.AxisTo}}" y1="{{.Chart.AxisY}}" y2="{{.Chart.AxisY}}"></line>
{{range .Chart.Ticks}}<line x1="{{.X}}" x2="{{.X}}" y1="{{.Y}}" y2="{{.Y2}}"></line><text class="{{.Label.Class}}" x="{{.Label.X}}" dx="{{.Label.DX}}" y="{{.Label.Y}}" text-anchor="{{.Label.Anchor}}">{{.Label.Text}}</text>
{{end}}</g>
</svg>
<ol class="events">
{{$offs := .Offsets}}{{range $i, $e := .Timeline}}<li class="event {{$e.Kind}}"><span class="at">{{index $offs $i}}</span> <b>{{$e.Kind}}</b> {{$e.Text}}</li>
{{end}}</ol>
{{if .Omitted}}<p class="omitted">{{.Omitted}}</p>{{end}}
{{if .Clients}}<p class="clients"><b>clients:</b> {{.Clients}}</p>{{end}}
{{if .Why}}<p class="why"><b>why:</b> {{.Why}}</p>{{end}}
{{if .Fix}}<p class="fix"><b>{{.FixLabel}}:</b> {{.Fix}}</p>{{end}}
</section>
{{end}}
</body>
</html>
`
