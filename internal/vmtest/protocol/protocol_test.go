package protocol

import (
	"testing"
	"time"
)

func TestParseRoundTrip(t *testing.T) {
	tests := []struct {
		line string
		want Marker
	}{
		{KernelLine("6.1.0-28-amd64", 1530*time.Millisecond), Marker{Kind: KindKernel, Release: "6.1.0-28-amd64", Uptime: 1530 * time.Millisecond}},
		{BeginLine("fentry", "internal/tracer"), Marker{Kind: KindBegin, Backend: "fentry", Test: "internal/tracer"}},
		{EndLine("kprobe", "internal/tracer", 1, 38200*time.Millisecond), Marker{Kind: KindEnd, Backend: "kprobe", Test: "internal/tracer", Exit: 1, Elapsed: 38200 * time.Millisecond}},
		{EndLine("kprobe", "x", -1, 0), Marker{Kind: KindEnd, Backend: "kprobe", Test: "x", Exit: -1}},
		{ErrorLine("mount cgroup2 on /sys/fs/cgroup: no such device"), Marker{Kind: KindError, Text: "mount cgroup2 on /sys/fs/cgroup: no such device"}},
		{DoneLine(), Marker{Kind: KindDone}},
	}
	for _, tt := range tests {
		got, ok := Parse(tt.line)
		if !ok || got != tt.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v, true", tt.line, got, ok, tt.want)
		}
	}
}

func TestParseFindsMarkerAfterNoise(t *testing.T) {
	got, ok := Parse("ok  \tsome output without newline" + DoneLine() + "\r")
	if !ok || got.Kind != KindDone {
		t.Errorf("Parse with leading noise = %+v, %v; want a done marker", got, ok)
	}
}

func TestParseRejects(t *testing.T) {
	for _, line := range []string{
		"",
		"--- PASS: TestX (0.00s)",
		"@@vmtest ",
		"@@vmtest unknown x",
		"@@vmtest begin fentry",
		"@@vmtest end fentry x exit=one elapsed=1s",
		"@@vmtest end fentry x code=1 elapsed=1s",
		"@@vmtest end fentry x 1 elapsed=1s",
		"@@vmtest end fentry x exit=1 elapsed=soon",
		"@@vmtest kernel 6.1.0 uptime=",
	} {
		if m, ok := Parse(line); ok {
			t.Errorf("Parse(%q) = %+v, true; want false", line, m)
		}
	}
}
