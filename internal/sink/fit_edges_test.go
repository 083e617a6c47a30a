package sink

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/bindwatch/bindwatch/internal/events"
)

// A document of exactly max bytes is returned as it is, byte for byte
// (not re-encoded, which would reorder its keys).
func TestFitJSONExactFit(t *testing.T) {
	doc := []byte(`{"b":1,"a":"x"}`)
	if got := fitJSON(doc, len(doc)); string(got) != string(doc) {
		t.Errorf("fitJSON of a document of exactly max bytes = %s, want it as it is", got)
	}
}

// Strings are first cut to a 16th of the room, keeping half of that at
// each end, whole.
func TestFitJSONFirstCut(t *testing.T) {
	const max = 1 << 20
	long := strings.Repeat("h", 800_000) + strings.Repeat("t", 800_000)
	doc, _ := json.Marshal(map[string]string{"s": long})
	var got map[string]string
	if err := json.Unmarshal(fitJSON(doc, max), &got); err != nil {
		t.Fatal(err)
	}
	want := strings.Repeat("h", max/32) + events.CmdlineGap + strings.Repeat("t", max/32)
	if got["s"] != want {
		t.Errorf("string cut to %d bytes (%q…), want %d: %d of each end around %q", len(got["s"]), got["s"][:10], len(want), max/32, events.CmdlineGap)
	}
}

// The last cut tried keeps 16 bytes of each end of every string (a limit
// of 32), and what fits exactly in max is returned.
func TestFitJSONLastCut(t *testing.T) {
	v := map[string]string{}
	want := map[string]string{}
	for _, k := range []string{"a", "b", "c"} {
		v[k] = strings.Repeat(k, 100)
		want[k] = strings.Repeat(k, 16) + events.CmdlineGap + strings.Repeat(k, 16)
	}
	doc, _ := json.Marshal(v)
	wantDoc, _ := json.Marshal(want)
	if got := fitJSON(doc, len(wantDoc)); string(got) != string(wantDoc) {
		t.Errorf("fitJSON to %d bytes = %s, want %s", len(wantDoc), got, wantDoc)
	}
	if got := fitJSON(doc, len(wantDoc)-1); string(got) != string(doc) {
		t.Errorf("fitJSON to less than the last cut gives = %s, want the document as it is", got)
	}
}

// shorten's limits: a string of exactly limit bytes stays; an array of
// up to 2×limit/64+1 strings stays, a longer one keeps limit/64 at each
// end around the gap; an array of up to 2×limit/64 objects stays, a
// longer one keeps limit/64 at each end and counts the rest.
func TestShortenLimits(t *testing.T) {
	const limit = 128 // n = 2
	if out, changed := shorten(strings.Repeat("x", limit), limit); changed || out != strings.Repeat("x", limit) {
		t.Errorf("a string of exactly the limit was cut: %v", out)
	}
	strs := func(n int) []any {
		var a []any
		for i := range n {
			a = append(a, fmt.Sprint("s", i))
		}
		return a
	}
	if out, changed := shorten(strs(5), limit); changed || fmt.Sprint(out) != "[s0 s1 s2 s3 s4]" {
		t.Errorf("5 strings: %v (changed %v), want them as they are", out, changed)
	}
	if out, changed := shorten(strs(6), limit); !changed || fmt.Sprint(out) != "[s0 s1 "+events.CmdlineGap+" s4 s5]" {
		t.Errorf("6 strings: %v (changed %v), want 2 at each end around the gap", out, changed)
	}
	objs := func(n int) map[string]any {
		var a []any
		for i := range n {
			a = append(a, map[string]any{"i": i})
		}
		return map[string]any{"holders": a}
	}
	if out, changed := shorten(objs(4), limit); changed || len(out.(map[string]any)["holders"].([]any)) != 4 {
		t.Errorf("4 objects: %v (changed %v), want them as they are", out, changed)
	}
	out, changed := shorten(objs(5), limit)
	m := out.(map[string]any)
	if !changed || fmt.Sprint(m["holders"]) != "[map[i:0] map[i:1] map[i:3] map[i:4]]" || m["holders_omitted"] != int64(1) {
		t.Errorf("5 objects: %v (changed %v), want 2 at each end and 1 omitted", m, changed)
	}
}

// A string is cut between whole characters: a multi-byte character at
// either cut is kept whole or left out, never split.
func TestCutStringWholeRunes(t *testing.T) {
	s := strings.Repeat("é", 100) // 2 bytes each: limit/2 = 5 lands inside one
	if got, want := cutString(s, 11), "éé"+events.CmdlineGap+"éé"; got != want {
		t.Errorf("cutString(é×100, 11) = %q, want %q", got, want)
	}
	if got, want := cutString("ab"+s, 11), "abé"+events.CmdlineGap+"éé"; got != want {
		t.Errorf("cutString(ab é×100, 11) = %q, want %q", got, want)
	}
}
