package sink

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"

	"github.com/bindwatch/bindwatch/internal/events"
)

// maxDatagram is the largest syslog message sent as one datagram: under
// UDP's 65,507-byte payload, and well under a unix datagram socket's send
// buffer (~208 KiB by default).
const maxDatagram = 60 << 10

// fitJSON shortens the longest strings, and arrays of strings, of a JSON
// document until it fits in max bytes, keeping the head and tail of each
// around events.CmdlineGap; an object whose "cmdline" was shortened says
// "cmdline_truncated": true. A process controls its command line, and a
// 100 KB one must not keep its failure from a datagram collector (where
// it would only be counted as lost). doc is returned as it is when it
// fits, or when it cannot be made to.
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
	for limit := 4096; limit >= 32; limit /= 2 {
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

// shorten returns v with strings longer than limit bytes, and arrays of
// more than limit/32 strings, cut in the middle; changed says whether it
// cut anything.
func shorten(v any, limit int) (out any, changed bool) {
	switch t := v.(type) {
	case string:
		if len(t) <= limit {
			return t, false
		}
		return cutString(t, limit), true
	case []any:
		keep := t
		if n := limit / 64; len(t) > 2*n+1 && allStrings(t) {
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
			var c bool
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

func allStrings(a []any) bool {
	for _, e := range a {
		if _, ok := e.(string); !ok {
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
