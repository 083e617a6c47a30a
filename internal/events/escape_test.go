package events

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// hostile holds what any process can put in its comm or argv to steer a
// terminal: clear screen, an OSC title, CR/LF forging a new line, C1 CSI
// as UTF-8, a raw 8-bit CSI (invalid UTF-8), the first and last C1
// controls (U+0080, U+009F), DEL, NUL and a backslash.
var hostile = []string{
	"\x1b[2J\x1b[H", "\x1b]0;owned\x07", "ok\r\nforged line", "\xc2\x9b31m", "\x9b31m", "\u0080pad", "apc\u009f",
	"del\x7f", "nul\x00", `back\slash`, "tab\there", "\xff\xfe", "naïve ✓",
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"nginx":            "nginx",
		"naïve ✓":          "naïve ✓",
		"\x1b[2J":          `\x1b[2J`,
		"a\r\nb":           `a\x0d\x0ab`,
		"\xc2\x9b31m":      `\xc2\x9b31m`,
		"\x9b":             `\x9b`,
		"\u0080":           `\xc2\x80`, // the first C1 control
		"\u009f":           `\xc2\x9f`, // the last (APC)
		"\x7f":             `\x7f`,
		`C:\x1b`:           `C:\\x1b`,
		"\xe2\x82":         `\xe2\x82`, // a character cut short
		"\u00a0\u0100\xc2": "\u00a0\u0100\\xc2",
	} {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
	for _, s := range hostile {
		e := Escape(s)
		if strings.ContainsFunc(e, func(r rune) bool { return r < 0x20 || (r >= 0x7f && r <= 0x9f) }) || !utf8.ValidString(e) {
			t.Errorf("Escape(%q) = %q: a control character or invalid UTF-8 is left", s, e)
		}
		if back := Unescape(e); back != s {
			t.Errorf("Unescape(Escape(%q)) = %q: not reversible", s, back)
		}
	}
}

func TestEscapeCut(t *testing.T) {
	s := strings.Repeat("\x1b", 30) // each escapes to 4 bytes
	got := EscapeCut(s, 20)
	if got != strings.Repeat(`\x1b`, 4)+"..." {
		t.Errorf("EscapeCut = %q: want whole escapes only, then ...", got)
	}
	if got := EscapeCut(strings.Repeat("é", 50), 10); got != "ééé..." {
		t.Errorf("EscapeCut(é…) = %q, want whole characters", got)
	}
	if got := EscapeCut("short", 10); got != "short" {
		t.Errorf("EscapeCut(short) = %q", got)
	}
}

// JSON lines carry the original strings, with no raw control character
// (DEL and C1 included) and valid UTF-8; invalid bytes become U+FFFD.
func TestMarshalJSONControls(t *testing.T) {
	for _, s := range hostile {
		b, err := MarshalJSON(&Repeats{Comm: s})
		if err != nil {
			t.Fatal(err)
		}
		if i := strings.IndexFunc(string(b), func(r rune) bool { return r < 0x20 || (r >= 0x7f && r <= 0x9f) }); i >= 0 || !utf8.Valid(b) {
			t.Errorf("JSON for comm %q has a raw control character or invalid UTF-8: %q", s, b)
		}
		var r Repeats
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("JSON for comm %q does not parse: %v", s, err)
		}
		if want := strings.ToValidUTF8(s, "\uFFFD"); utf8.ValidString(s) && r.Comm != want {
			t.Errorf("comm %q came back as %q", s, r.Comm)
		}
	}
}

// EscapeCut uses all of its limit: a string that escapes to exactly limit
// bytes is kept whole, and a cut one fills the limit, "..." included.
func TestEscapeCutExactLimit(t *testing.T) {
	if got := EscapeCut("ten bytes!", 10); got != "ten bytes!" {
		t.Errorf("EscapeCut of 10 bytes to 10 = %q, want it whole", got)
	}
	if got := EscapeCut(`a\b`, 4); got != `a\\b` {
		t.Errorf(`EscapeCut(a\b, 4) = %q, want its 4-byte escape whole`, got)
	}
	if got := EscapeCut("eleven byte", 10); got != "eleven ..." {
		t.Errorf("EscapeCut of 11 bytes to 10 = %q, want 7 bytes then ...", got)
	}
	if got := EscapeCut("\x1b\x1b", 7); got != `\x1b...` {
		t.Errorf("EscapeCut(ESC ESC, 7) = %q, want one whole escape then ...", got)
	}
}

// The lowest byte that is not ASCII, alone (a UTF-8 continuation byte
// with no start), is escaped like any invalid byte.
func TestEscapeLoneContinuationByte(t *testing.T) {
	for in, want := range map[string]string{"\x80": `\x80`, "a\x80b": `a\x80b`, "\xbf": `\xbf`} {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
}
