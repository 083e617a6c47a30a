package sink

import (
	"bytes"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// The metrics are written in Prometheus' text exposition format (0.0.4)
// by the few types below, not by prometheus' client library: its package
// initialisers cost every one-shot command (who, free) ~1–1.5 ms of CPU
// at start, and bindwatch needs only counters, gauges and two histograms.

// expositionType is the Content-Type of /metrics.
const expositionType = "text/plain; version=0.0.4; charset=utf-8"

// metricKind is a family's TYPE.
type metricKind string

const (
	kindCounter   metricKind = "counter"
	kindGauge     metricKind = "gauge"
	kindHistogram metricKind = "histogram"
	kindSummary   metricKind = "summary"
)

// family is one metric with its fixed label names, and its series by
// label values. The label values are a closed set each caller keeps
// bounded (none comes from what a user controls).
type family struct {
	name, help string
	kind       metricKind
	labels     []string

	mu     sync.Mutex
	series map[string]*series // by label values joined by 0xff
}

type series struct {
	values []string
	v      float64
}

func newFamily(kind metricKind, name, help string, labels ...string) *family {
	return &family{name: name, help: help, kind: kind, labels: labels, series: map[string]*series{}}
}

// add adds v to the series of values (one per label name), creating it
// at 0 first.
func (f *family) add(v float64, values ...string) {
	f.mu.Lock()
	f.at(values).v += v
	f.mu.Unlock()
}

// set sets the series of values to v.
func (f *family) set(v float64, values ...string) {
	f.mu.Lock()
	f.at(values).v = v
	f.mu.Unlock()
}

// at is the series of values; f.mu is held.
func (f *family) at(values []string) *series {
	if len(values) != len(f.labels) {
		panic("sink: " + f.name + " takes " + strconv.Itoa(len(f.labels)) + " label values")
	}
	key := strings.Join(values, "\xff")
	s := f.series[key]
	if s == nil {
		s = &series{values: slices.Clone(values)}
		f.series[key] = s
	}
	return s
}

// write writes the family, if it has a series yet.
func (f *family) write(b *bytes.Buffer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.series) == 0 {
		return
	}
	writeHeader(b, f.name, f.help, f.kind)
	keys := make([]string, 0, len(f.series))
	for k := range f.series {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		s := f.series[k]
		writeSample(b, f.name, f.labels, s.values, s.v)
	}
}

// histogram is a family of one series with cumulative buckets.
type histogram struct {
	name, help string
	buckets    []float64 // upper bounds, ascending; +Inf is implied

	mu     sync.Mutex
	counts []uint64 // per bucket, not cumulative
	count  uint64
	sum    float64
}

func newHistogram(name, help string, buckets []float64) *histogram {
	return &histogram{name: name, help: help, buckets: buckets, counts: make([]uint64, len(buckets))}
}

func (h *histogram) observe(v float64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if i, _ := slices.BinarySearch(h.buckets, v); i < len(h.buckets) {
		h.counts[i]++
	}
	h.count++
	h.sum += v
}

func (h *histogram) write(b *bytes.Buffer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	writeHeader(b, h.name, h.help, kindHistogram)
	var cum uint64
	for i, le := range h.buckets {
		cum += h.counts[i]
		writeSample(b, h.name+"_bucket", []string{"le"}, []string{formatFloat(le)}, float64(cum))
	}
	writeSample(b, h.name+"_bucket", []string{"le"}, []string{"+Inf"}, float64(h.count))
	writeSample(b, h.name+"_sum", nil, nil, h.sum)
	writeSample(b, h.name+"_count", nil, nil, float64(h.count))
}

// writeHeader writes a family's HELP and TYPE lines.
func writeHeader(b *bytes.Buffer, name, help string, kind metricKind) {
	b.WriteString("# HELP ")
	b.WriteString(name)
	b.WriteByte(' ')
	b.WriteString(helpEscaper.Replace(help))
	b.WriteString("\n# TYPE ")
	b.WriteString(name)
	b.WriteByte(' ')
	b.WriteString(string(kind))
	b.WriteByte('\n')
}

// The format's escaping: of a HELP text, and of a label value.
var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

// writeScalar writes a family of one sample without labels.
func writeScalar(b *bytes.Buffer, kind metricKind, name, help string, v float64) {
	writeHeader(b, name, help, kind)
	writeSample(b, name, nil, nil, v)
}

// writeSample writes one sample line: name{label="value",...} v.
func writeSample(b *bytes.Buffer, name string, labels, values []string, v float64) {
	b.WriteString(name)
	if len(labels) > 0 {
		// In label name order, as Prometheus' client writes them.
		order := make([]int, len(labels))
		for i := range order {
			order[i] = i
		}
		slices.SortFunc(order, func(i, j int) int { return strings.Compare(labels[i], labels[j]) })
		b.WriteByte('{')
		for n, i := range order {
			if n > 0 {
				b.WriteByte(',')
			}
			b.WriteString(labels[i])
			b.WriteString(`="`)
			b.WriteString(labelEscaper.Replace(strings.ToValidUTF8(values[i], "\uFFFD")))
			b.WriteByte('"')
		}
		b.WriteByte('}')
	}
	b.WriteByte(' ')
	b.WriteString(formatFloat(v))
	b.WriteByte('\n')
}

// formatFloat writes v as Prometheus' own client does.
func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, +1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
