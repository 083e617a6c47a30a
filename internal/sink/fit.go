package sink

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode/utf8"

	"github.com/bindwatch/bindwatch/internal/events"
)

// maxDatagram is the largest syslog message sent as one datagram: under
// UDP's 65,507-byte payload, and well under a unix datagram socket's send
// buffer (~208 KiB by default).
const maxDatagram = 60 << 10

// Fitted is form (JSON or ECS) with each record shortened, if need be,
// to events.MaxRecordBytes (see fitJSON): the tracer's file, standard
// output and TCP syslog write no record that bindwatch report cannot read.
func Fitted(form Form) Form {
	return func(rec events.Record) ([]byte, error) {
		b, err := form(rec)
		if err != nil {
			return nil, err
		}
		return fitJSON(b, events.MaxRecordBytes), nil
	}
}

// fitJSON shortens the longest strings, and arrays, of a JSON document
// until it fits in max bytes, keeping the head and tail of each: a string
// and an array of strings around events.CmdlineGap, and an array of
// objects (a socket's processes, a failure's holders) without the middle,
// counted in "KEY_omitted" beside it. An object whose "cmdline" was
// shortened says "cmdline_truncated": true. A process controls its command
// line, and a 100 KB one must not keep its failure from a datagram
// collector (where it would only be counted as lost), nor a 2 MB one, or
// a socket shared by thousands of processes, from bindwatch report. doc is
// returned as it is when it fits, or when it cannot be made to.
func fitJSON(doc []byte, max int) []byte {
	if len(doc) <= max {
		return doc
	}
	var v any
	d := json.NewDecoder(bytes.NewReader(doc))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return doc
	}
	// Strings are first cut to a 16th of the room (at least 4 KiB), then
	// to half that, and so on.
	start := 4096
	for start < max/16 {
		start *= 2
	}
	for limit := start; limit >= 32; limit /= 2 {
		short, _ := shorten(v, limit)
		// The one JSON rule again: no raw control character.
		out, err := events.MarshalJSON(short)
		if err != nil {
			return doc
		}
		if len(out) <= max {
			return out
		}
	}
	return doc
}

// shorten returns v with strings longer than limit bytes, arrays of more
// than 2×limit/64+1 strings, and arrays of more than 2×max(1, limit/64)
// objects, cut in the middle; changed says whether it cut anything.
func shorten(v any, limit int) (out any, changed bool) {
	switch t := v.(type) {
	case string:
		if len(t) <= limit {
			return t, false
		}
		return cutString(t, limit), true
	case []any:
		keep := t
		if n := limit / 64; len(t) > 2*n+1 && all[string](t) {
			keep = append(append(append(make([]any, 0, 2*n+1), t[:n]...), events.CmdlineGap), t[len(t)-n:]...)
			changed = true
		}
		short := make([]any, len(keep))
		for i, e := range keep {
			var c bool
			short[i], c = shorten(e, limit)
			changed = changed || c
		}
		return short, changed
	case map[string]any:
		short := make(map[string]any, len(t)+1)
		for k, e := range t {
			if a, ok := e.([]any); ok && all[map[string]any](a) {
				if n := max(1, limit/64); len(a) > 2*n {
					e = append(append(make([]any, 0, 2*n), a[:n]...), a[len(a)-n:]...)
					omitted := int64(len(a) - 2*n)
					if was, ok := t[k+"_omitted"].(json.Number); ok {
						before, _ := was.Int64()
						omitted += before
					}
					short[k+"_omitted"] = omitted
					changed = true
				}
			}
			var c bool
			if _, set := short[k]; set && strings.HasSuffix(k, "_omitted") {
				continue // counted again above
			}
			short[k], c = shorten(e, limit)
			changed = changed || c
			if c && k == "cmdline" {
				short["cmdline_truncated"] = true
			}
		}
		return short, changed
	}
	return v, false
}

// all tells whether every element of a is a T.
func all[T any](a []any) bool {
	for _, e := range a {
		if _, ok := e.(T); !ok {
			return false
		}
	}
	return true
}

// cutString keeps about limit/2 bytes of each end of s, whole runes only.
func cutString(s string, limit int) string {
	head, tail := limit/2, len(s)-limit/2
	for head > 0 && !utf8.RuneStart(s[head]) {
		head--
	}
	for tail < len(s) && !utf8.RuneStart(s[tail]) {
		tail++
	}
	return s[:head] + events.CmdlineGap + s[tail:]
}
