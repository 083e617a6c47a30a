package incident

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"sync"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
)

// The page is self-contained: inline CSS and SVG, no script, no font, no
// image, nothing fetched. html/template escapes every process-controlled
// string (comm, argv) for the context it lands in.

// Geometry of a timeline picture, in SVG user units.
const (
	svgWidth   = 1000
	plotLeft   = 230
	plotRight  = 980
	laneHeight = 34
	laneTop    = 28
	maxLanes   = 4 // holders, and failing processes, shown each
)

type page struct {
	Generated string
	Sources   string
	Skipped   string
	Spreads   []string // SpreadLine of each incident seen on several hosts
	Incidents []htmlIncident
}

type htmlIncident struct {
	ID       string
	Title    string
	Proto    string
	Port     uint16
	State    string
	Height   int
	Lanes    []lane
	Ticks    []tick
	AxisY    int
	Timeline []events.TimelineEntry
	Offsets  []string
	Omitted  string // OmittedLine
	Why, Fix string
	FixLabel string // "fix", or "next time" once the holder let go
}

type lane struct {
	Kind  string // holder, failing, kernel
	Label string
	Y     int
	Bars  []bar
	Marks []mark
}

type bar struct {
	Class string // held, free, unknown
	X, W  float64
	Label string
}

type mark struct {
	Kind  string // failure, repeats, signal, released, recovered
	X     float64
	W     float64 // repeats: the band's width
	Mid   float64 // and its middle
	AtMS  int64
	Count uint64
	Label string // drawn next to the mark: "×9", "SIGTERM"
	Title string // the full line, shown on hover
}

// markTook is the recovery on the lane of the process that took the
// port; the kernel's lane carries the recovery mark itself.
const markTook = "took"

type tick struct {
	X     float64
	Label string
}

// WriteHTML writes one page with a timeline picture per incident.
func WriteHTML(w io.Writer, incidents []*events.Incident, sources string, skipped Skipped) error {
	p := page{Generated: time.Now().UTC().Format(time.RFC3339), Sources: sources}
	if skipped.Any() {
		p.Skipped = skipped.String()
	}
	for _, s := range Spreads(incidents) {
		p.Spreads = append(p.Spreads, SpreadLine(s))
	}
	for i, in := range incidents {
		p.Incidents = append(p.Incidents, picture(i, in))
	}
	return pageTemplate().Execute(w, p)
}

// scale maps milliseconds since the first failure to x.
type scale struct{ lo, hi float64 }

func (s scale) x(ms float64) float64 {
	return math.Round((plotLeft+(ms-s.lo)/(s.hi-s.lo)*(plotRight-plotLeft))*10) / 10
}

func picture(i int, in *events.Incident) htmlIncident {
	span := math.Max(float64(in.ContentionMS), 1)
	pad := math.Max(span*0.06, 1)
	if in.Recovered != nil {
		pad = math.Max(span*0.15, 1) // room to show the port held again
	}
	sc := scale{lo: -span * 0.06, hi: span + pad}
	at := func(t time.Time) float64 { return sc.x(float64(t.Sub(in.Start).Milliseconds())) }
	out := htmlIncident{
		ID: fmt.Sprintf("incident-%d", i+1), Title: Title(in), Proto: in.Proto, Port: in.Port,
		State: in.State, Timeline: in.Timeline, Omitted: OmittedLine(in), Why: in.Diagnosis,
	}
	out.FixLabel, out.Fix = Advice(in)
	for _, e := range in.Timeline {
		out.Offsets = append(out.Offsets, Offset(e.AtMS))
	}
	release := releaseTime(in)
	var lanes []lane

	// The holders: held from before the incident until released.
	for hi, h := range in.Holders {
		if hi == maxLanes {
			break
		}
		l := lane{Kind: "holder", Label: "holder: " + holderLabel(&h)}
		end, class := sc.x(span+pad), "held"
		if r := releaseOf(in, &h); r != nil {
			end = at(r.Time)
		} else if release != nil {
			end = at(release.Time)
		}
		l.Bars = append(l.Bars, bar{Class: class, X: plotLeft, W: end - plotLeft, Label: h.Kind})
		for _, s := range in.Signals {
			if holds(&h, s.Target.PID) || len(in.Holders) == 1 {
				l.Marks = append(l.Marks, mark{Kind: events.MarkSignal, X: at(s.Time), AtMS: ms(in, s.Time), Label: s.Signal, Title: signalLine(s)})
			}
		}
		for _, r := range in.Released {
			if r.Holder == nil || holds(&h, r.Holder.PID) || len(in.Holders) == 1 {
				l.Marks = append(l.Marks, mark{Kind: events.MarkReleased, X: at(r.Time), AtMS: ms(in, r.Time), Label: "released", Title: releasedLine(r)})
			}
		}
		lanes = append(lanes, l)
	}
	if len(in.Holders) == 0 && (len(in.Signals) > 0 || len(in.Released) > 0) {
		l := lane{Kind: "holder", Label: "holder: unknown"}
		for _, s := range in.Signals {
			l.Marks = append(l.Marks, mark{Kind: events.MarkSignal, X: at(s.Time), AtMS: ms(in, s.Time), Label: s.Signal, Title: signalLine(s)})
		}
		for _, r := range in.Released {
			l.Marks = append(l.Marks, mark{Kind: events.MarkReleased, X: at(r.Time), AtMS: ms(in, r.Time), Label: "released", Title: releasedLine(r)})
		}
		lanes = append(lanes, l)
	}

	// The failing processes: a mark per reported failure, and per folded
	// count; the recovery on the lane of whoever recovered.
	recoveredShown := false
	for fi, f := range in.Failing {
		if fi == maxLanes {
			break
		}
		l := lane{Kind: "failing", Label: fmt.Sprintf("failing: %s ×%d", processLabel(&f.Process), f.Attempts)}
		// A repeats record says N failures were folded since the
		// process's previous repeats (or its first failure): drawn as a
		// band over that window, as the kernel knows no closer.
		since := f.First
		var band *mark
		for _, e := range in.Timeline {
			if e.PID != f.Process.PID {
				continue
			}
			switch e.Kind {
			case events.MarkFailure:
				l.Marks = append(l.Marks, mark{Kind: e.Kind, X: at(e.Time), AtMS: e.AtMS, Count: 1, Title: e.Text})
			case events.MarkRepeats:
				if band != nil && band.AtMS == e.AtMS { // harvested together: one band
					band.Count += e.Count
					band.Label = fmt.Sprintf("×%d", band.Count)
					band.Title += "; " + e.Text
					band.W = math.Max(at(e.Time)-band.X, 4)
					band.Mid = band.W / 2
					continue
				}
				x0 := at(since)
				l.Marks = append(l.Marks, mark{Kind: e.Kind, X: x0, W: math.Max(at(e.Time)-x0, 4), Mid: math.Max(at(e.Time)-x0, 4) / 2, AtMS: e.AtMS, Count: e.Count, Label: fmt.Sprintf("×%d", e.Count), Title: e.Text})
				band = &l.Marks[len(l.Marks)-1] // no append follows until the next band
				since = e.Time
			}
		}
		if r := in.Recovered; r != nil && r.Process.PID == f.Process.PID {
			l.Marks = append(l.Marks, mark{Kind: markTook, X: at(r.Time), AtMS: ms(in, r.Time), Label: "got it", Title: recoveredLineOf(in)})
			recoveredShown = true
		}
		lanes = append(lanes, l)
	}
	if r := in.Recovered; r != nil && !recoveredShown {
		l := lane{Kind: "failing", Label: "new: " + processLabel(&r.Process)}
		l.Marks = append(l.Marks, mark{Kind: markTook, X: at(r.Time), AtMS: ms(in, r.Time), Label: "got it", Title: recoveredLineOf(in)})
		lanes = append(lanes, l)
	}

	// The kernel's view of the port: held, free, held again.
	k := lane{Kind: "kernel", Label: fmt.Sprintf("kernel: %s port %d", in.Proto, in.Port)}
	right := sc.x(span + pad)
	freeFrom := right
	if release != nil {
		freeFrom = at(release.Time)
	}
	k.Bars = append(k.Bars, bar{Class: "held", X: plotLeft, W: freeFrom - plotLeft, Label: "held"})
	freeTo := right
	if r := in.Recovered; r != nil {
		freeTo = at(r.Time)
	}
	if release != nil {
		label := "free"
		if in.UnservedMS != nil { // "outage" means this, and only this
			label = "outage " + events.Millis(*in.UnservedMS)
		}
		k.Bars = append(k.Bars, bar{Class: "free", X: freeFrom, W: math.Max(freeTo-freeFrom, 0), Label: label})
	} else if in.Recovered != nil {
		freeFrom = freeTo // released unseen: held until recovered, by someone
	}
	// Checks that saw the port free (port_free): notes on the port's lane,
	// never a process's.
	for _, e := range in.Timeline {
		if e.Kind == events.MarkPortFree {
			k.Marks = append(k.Marks, mark{Kind: e.Kind, X: at(e.Time), AtMS: e.AtMS, Label: "free", Title: e.Text})
		}
	}
	if r := in.Recovered; r != nil {
		k.Bars = append(k.Bars, bar{Class: "held again", X: freeTo, W: right - freeTo, Label: "   held again"})
		k.Marks = append(k.Marks, mark{Kind: events.MarkRecovered, X: at(r.Time), AtMS: ms(in, r.Time), Title: recoveredLineOf(in)})
	}
	lanes = append(lanes, k)

	for li := range lanes {
		lanes[li].Y = laneTop + li*laneHeight
	}
	out.Lanes = lanes
	out.AxisY = laneTop + len(lanes)*laneHeight + 4
	out.Height = out.AxisY + 22
	for _, t := range ticks(span) {
		out.Ticks = append(out.Ticks, tick{X: sc.x(t), Label: Offset(int64(t))})
	}
	return out
}

func ms(in *events.Incident, t time.Time) int64 { return t.Sub(in.Start).Milliseconds() }

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
		return h.State
	}
	return processLabel(&h.Processes[0])
}

// processLabel is a lane's short name for a process, "4242 nginx", at
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
<title>bindwatch incidents</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #1d2330; background: #fff; }
h1 { font-size: 1.3em; } h2 { font-size: 1.05em; margin: 1.6em 0 .4em; }
.meta { color: #5b6475; }
.skipped { color: #8a4b00; }
svg.timeline { width: 100%; max-width: 1000px; height: auto; background: #f7f8fa; border: 1px solid #d8dce3; }
svg text { font: 11px system-ui, sans-serif; fill: #1d2330; }
.lane-label { font-weight: 600; }
.bar.held { fill: #9bb7e0; } .bar.free { fill: #f2a7a0; } .bar.held.again { fill: #98d4a6; }
.bar-label { fill: #1d2330; font-size: 10px; }
.mark.failure circle { fill: #d33a2c; }
.mark.repeats rect { fill: #d33a2c; opacity: .25; }
.mark.signal path { fill: #e0a100; }
.mark.released line { stroke: #1d2330; stroke-width: 2; }
.mark.port_free line { stroke: #5b6475; stroke-width: 1; stroke-dasharray: 2 2; }
.mark.recovered path, .mark.took path { fill: #1e8e3e; }
.axis line { stroke: #9aa3b2; } .axis text { fill: #5b6475; }
ol.events { font: 12px ui-monospace, monospace; padding-left: 1.5em; }
ol.events .at { display: inline-block; min-width: 6em; color: #5b6475; }
.why, .fix { max-width: 1000px; }
</style>
</head>
<body>
<h1>bindwatch incidents</h1>
<p class="meta">{{len .Incidents}} incident(s) from {{.Sources}}; generated {{.Generated}}.</p>
{{if .Skipped}}<p class="skipped">Skipped: {{.Skipped}}</p>{{end}}
{{if .Spreads}}<section class="spreads"><h2>Same incident on several hosts</h2>
<ul>{{range .Spreads}}<li class="spread">{{.}}</li>
{{end}}</ul></section>{{end}}
{{range .Incidents}}
<section class="incident" id="{{.ID}}" data-proto="{{.Proto}}" data-port="{{.Port}}" data-state="{{.State}}">
<h2>{{.Title}}</h2>
<svg class="timeline" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 1000 {{.Height}}" role="img" aria-label="timeline of {{.Title}}">
{{range .Lanes}}<g class="lane" data-lane="{{.Kind}}">
<text class="lane-label" x="8" y="{{.Y}}" dy="15">{{.Label}}</text>
{{$y := .Y}}{{range .Bars}}<rect class="bar {{.Class}}" x="{{.X}}" y="{{$y}}" width="{{.W}}" height="22" rx="3"></rect><text class="bar-label" x="{{.X}}" y="{{$y}}" dx="4" dy="15">{{.Label}}</text>
{{end}}{{range .Marks}}<g class="mark {{.Kind}}" data-kind="{{.Kind}}" data-at-ms="{{.AtMS}}"{{if .Count}} data-count="{{.Count}}"{{end}} transform="translate({{.X}} {{$y}})"><title>{{.Title}}</title>
{{if eq .Kind "failure"}}<circle cx="0" cy="11" r="5"></circle>
{{else if eq .Kind "repeats"}}<rect x="0" y="3" width="{{.W}}" height="16" rx="3"></rect><text x="{{.Mid}}" y="15" text-anchor="middle">{{.Label}}</text>
{{else if eq .Kind "signal"}}<path d="M0 12 L7 0 L-7 0 Z"></path><text x="8" y="-1">{{.Label}}</text>
{{else if eq .Kind "released"}}<line x1="0" x2="0" y1="-3" y2="26"></line><text x="4" y="32">{{.Label}}</text>
{{else if eq .Kind "port_free"}}<line x1="0" x2="0" y1="2" y2="20"></line><text x="3" y="-1">{{.Label}}</text>
{{else}}<path d="M0 3 L8 11 L0 19 L-8 11 Z"></path><text x="10" y="15">{{.Label}}</text>
{{end}}</g>
{{end}}</g>
{{end}}<g class="axis"><line x1="230" x2="980" y1="{{.AxisY}}" y2="{{.AxisY}}"></line>
{{$ay := .AxisY}}{{range .Ticks}}<g class="tick" transform="translate({{.X}} {{$ay}})"><line x1="0" x2="0" y1="0" y2="5"></line><text x="0" y="17" text-anchor="middle">{{.Label}}</text></g>
{{end}}</g>
</svg>
<ol class="events">
{{$offs := .Offsets}}{{range $i, $e := .Timeline}}<li class="event {{$e.Kind}}"><span class="at">{{index $offs $i}}</span> <b>{{$e.Kind}}</b> {{$e.Text}}</li>
{{end}}</ol>
{{if .Omitted}}<p class="omitted">{{.Omitted}}</p>{{end}}
{{if .Why}}<p class="why"><b>why:</b> {{.Why}}</p>{{end}}
{{if .Fix}}<p class="fix"><b>{{.FixLabel}}:</b> {{.Fix}}</p>{{end}}
</section>
{{end}}
</body>
</html>
`
