package host

import (
	"slices"
	"testing"
)

func TestParseStat(t *testing.T) {
	// comm may contain spaces and parentheses.
	line := "4242 (my (weird) prog) S 17 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 123456 1000 10 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	st, err := ParseStat([]byte(line))
	if err != nil || st.Comm != "my (weird) prog" || st.State != 'S' || st.PPID != 17 || st.Flags != 4194560 || st.StartTicks != 123456 {
		t.Fatalf("ParseStat = %+v, %v", st, err)
	}
	if _, err := ParseStat([]byte("4242 (short) S 1 2")); err == nil {
		t.Error("a truncated stat line parsed")
	}
}

func TestSplitArgs(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"python3\x00-m\x00http.server\x00", []string{"python3", "-m", "http.server"}},
		{"nginx: master process nginx -g daemon off;", []string{"nginx: master process nginx -g daemon off;"}},
		{"a\x00\x00b\x00", []string{"a", "", "b"}}, // an empty argument stays
		{"", nil},
		{"cut-at-limi", []string{"cut-at-limi"}}, // the kernel's capture, cut short
		{"a\x00b c\x00\x00\x00", []string{"a", "b c"}},
	} {
		if got := SplitArgs([]byte(c.in)); !slices.Equal(got, c.want) {
			t.Errorf("SplitArgs(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
