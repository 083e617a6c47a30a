package incident

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"sync"

	"github.com/bindwatch/bindwatch/internal/events"
)

// sniffBytes is how much of the first line that is no bindwatch record is
// kept to say what the input is.
const sniffBytes = 4096

// sniff keeps the first line that is no bindwatch record (cut at
// sniffBytes), to say what the input is if no line is one.
func (l *Log) sniff(line []byte) {
	if l.firstOther == nil {
		l.firstOther = bytes.Clone(line[:min(len(line), sniffBytes)])
	}
}

// textLine is a line of bindwatch's text output: the clock, then the start
// line or a failure (errno, syscall).
var textLine = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d{3} (bindwatch on |E[A-Z]+ (bind|listen) )`)
})

// NoRecord says what the input is when it held lines but not one
// bindwatch record (report reads the JSON form): bindwatch's text output,
// its ECS form, JSON of something else, or not JSON. It is "" when a
// record was read, or there were no lines at all.
func (l *Log) NoRecord() string {
	if l.Read > 0 || l.others > 0 || l.firstOther == nil {
		return ""
	}
	line := bytes.TrimSpace(l.firstOther)
	var doc map[string]any
	switch {
	case textLine().Match(line):
		return "this is bindwatch's text output, which report cannot read: record with `--format json` or `--output FILE` (JSON there by default), and report that"
	case json.Unmarshal(line, &doc) == nil && doc["ecs"] != nil && doc["bindwatch"] != nil:
		return "this is bindwatch's ECS output (--format ecs), which report cannot read: it reads the JSON records of `--format json`"
	case json.Unmarshal(line, &doc) == nil:
		return fmt.Sprintf("this is JSON, but no bindwatch record: each has a \"type\" and a \"version\" (schema version %d; docs/schema.md); record with `bindwatch --format json --output FILE`", events.Version)
	}
	return "this is not a bindwatch log: not one line is a JSON record; record one with `bindwatch --format json --output FILE`"
}
