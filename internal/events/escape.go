package events

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Escape is bindwatch's one rule for showing a string that a process (or
// any user) controls — comm, argv, exe, cgroup, user and container names —
// on a terminal or in a text log. Printable UTF-8 passes unchanged; every
// byte that could steer a terminal or forge a line is shown as \xNN:
//
//   - C0 controls (0x00–0x1f: ESC, CR, LF, BEL, …) and DEL (0x7f);
//   - C1 controls U+0080–U+009F (CSI is U+009B), as their two UTF-8
//     bytes: \xc2\x9b;
//   - bytes that are not valid UTF-8;
//   - the backslash itself, as \\, so that the rule can be reversed: read
//     \\ as one backslash and \xNN as the byte NN.
//
// JSON output keeps the original strings (encoding/json escapes C0; the
// JSON writers escape DEL and C1 as \u007f, \u0080…; see docs/schema.md).
func Escape(s string) string {
	if !needsEscape(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		n := escapeNext(&b, s[i:])
		i += n
	}
	return b.String()
}

// EscapeCut is Escape cut to at most limit bytes, "..." included: never
// inside an escape or a character.
func EscapeCut(s string, limit int) string {
	e := Escape(s)
	if len(e) <= limit {
		return e
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		var piece strings.Builder
		n := escapeNext(&piece, s[i:])
		if b.Len()+piece.Len() > limit-3 {
			break
		}
		b.WriteString(piece.String())
		i += n
	}
	return b.String() + "..."
}

// escapeNext writes the escaped form of s's first character (or invalid
// byte) to b and returns how many bytes of s it took.
func escapeNext(b *strings.Builder, s string) int {
	const hex = "0123456789abcdef"
	byteEscape := func(c byte) { b.WriteString(`\x`); b.WriteByte(hex[c>>4]); b.WriteByte(hex[c&0xf]) }
	c := s[0]
	switch {
	case c == '\\':
		b.WriteString(`\\`)
		return 1
	case c < 0x20 || c == 0x7f:
		byteEscape(c)
		return 1
	case c < utf8.RuneSelf:
		b.WriteByte(c)
		return 1
	}
	r, n := utf8.DecodeRuneInString(s)
	switch {
	case r == utf8.RuneError && n <= 1:
		byteEscape(c)
		return 1
	case r >= 0x80 && r <= 0x9f:
		for i := range n {
			byteEscape(s[i])
		}
		return n
	}
	b.WriteString(s[:n])
	return n
}

// MarshalJSON encodes a record as one JSON line's object, valid UTF-8 with
// no raw control character left in it: encoding/json escapes C0 controls
// and replaces bytes that are not valid UTF-8 with U+FFFD; DEL and the C1
// controls (U+0080–U+009F), which it passes through raw, are written as
// \u007f and \u0080…\u009f. Every JSON line bindwatch writes goes through it.
func MarshalJSON(rec any) ([]byte, error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", rec, err)
	}
	return jsonControls(b), nil
}

// jsonControls rewrites raw DEL and C1 characters in encoded JSON as \u
// escapes. Outside strings JSON has no such bytes, so every one it finds is
// inside a string, where the escape means the same character.
func jsonControls(b []byte) []byte {
	const hex = "0123456789abcdef"
	var out []byte
	last := 0
	for i := 0; i < len(b); i++ {
		var r byte
		switch {
		case b[i] == 0x7f:
			r = 0x7f
		case b[i] == 0xc2 && i+1 < len(b) && b[i+1] >= 0x80 && b[i+1] <= 0x9f:
			r = b[i+1]
		default:
			continue
		}
		out = append(out, b[last:i]...)
		out = append(out, '\\', 'u', '0', '0', hex[r>>4], hex[r&0xf])
		if r != 0x7f {
			i++
		}
		last = i + 1
	}
	if out == nil {
		return b
	}
	return append(out, b[last:]...)
}

// needsEscape reports whether Escape would change s.
func needsEscape(s string) bool {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f || c == '\\' {
				return true
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n <= 1) || (r >= 0x80 && r <= 0x9f) {
			return true
		}
		i += n
	}
	return false
}

// Unescape reverses Escape: what a reader of a text line does to recover
// the bytes a process really had.
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			switch {
			case s[i+1] == '\\':
				b.WriteByte('\\')
				i++
				continue
			case s[i+1] == 'x' && i+3 < len(s) && isHex(s[i+2]) && isHex(s[i+3]):
				b.WriteByte(unhex(s[i+2])<<4 | unhex(s[i+3]))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'a' + 10
}
