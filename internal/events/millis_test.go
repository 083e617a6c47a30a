package events

import "testing"

// A measured span under a millisecond is said as one, never as "0s",
// which would deny the outage the record reports.
func TestMillis(t *testing.T) {
	for ms, want := range map[int64]string{0: "<1ms", 1: "1ms", 49: "49ms", 1000: "1s", 1312: "1.312s", 60000: "1m0s"} {
		if got := Millis(ms); got != want {
			t.Errorf("Millis(%d) = %q, want %q", ms, got, want)
		}
	}
}
