// Package redact removes secrets from the command lines bindwatch reports.
// Processes put passwords and tokens in their arguments (`--password X`,
// `TOKEN=…`, `postgres://user:secret@db`), and bindwatch's records end up in
// log files and SIEMs that many people can read: every record of every
// command passes its processes through one Rules before it is written.
//
// The default rules replace with Mask:
//   - the value of a KEY=value argument whose KEY names a secret
//     (`--password=X`, `TOKEN=X`, `-Ddb.secret=X`);
//   - the argument after a flag that names a secret (`--password X`,
//     `-auth-token X`), unless that argument is itself a flag;
//   - the password of a URL (`scheme://user:password@host`).
//
// An argument that is itself a command line (`sh -c "app --password X"`)
// has the same rules applied to its whitespace-separated words.
//
// A KEY or flag names a secret when it contains, in any case, one of
// SecretWords. Rules built with extra patterns (--redact REGEX) also
// replace what each pattern matches in an argument (its capture groups,
// when it has any, else the whole match).
//
// A value removed from the command line is also removed wherever else the
// same process's record repeats it (other arguments, the executable path,
// the command name, the cgroup), so that nothing tells what was removed.
package redact

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/bindwatch/bindwatch/internal/events"
)

// Mask replaces every removed value.
const Mask = "***"

// SecretWords are the parts of a flag or KEY name that mark its value as
// a secret (matched case-insensitively, anywhere in the name).
var SecretWords = []string{"password", "passwd", "secret", "token", "key", "credential", "auth"}

// minScrubLen is the shortest removed value also searched for in the rest
// of the record: a two-letter value would match all over paths and names.
const minScrubLen = 3

// urlPassword is the password part of a URL's userinfo (RFC 3986: the
// userinfo holds no '/', '?', '#' or '@').
var urlPassword = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.\-]*://[^/?#@:\s]*:)([^/?#@\s]+)@`)

// Rules decide what is removed. The nil *Rules is the default rules, so a
// zero configuration redacts.
type Rules struct {
	off   bool
	extra []*regexp.Regexp
}

// New returns the default rules plus the extra patterns (Go regular
// expressions, RE2 syntax). The error names the pattern that is not one.
func New(extra []string) (*Rules, error) {
	r := &Rules{}
	for _, p := range extra {
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("--redact %q: not a regular expression: %w (hint: RE2 syntax, as Go's regexp)", p, err)
		}
		if re.MatchString("") {
			return nil, fmt.Errorf("--redact %q: matches the empty string, so it would mark every argument redacted (hint: anchor or require at least one character)", p)
		}
		r.extra = append(r.extra, re)
	}
	return r, nil
}

// Off returns rules that remove nothing (--no-redact).
func Off() *Rules { return &Rules{off: true} }

// Enabled says whether the rules remove anything at all.
func (r *Rules) Enabled() bool { return r == nil || !r.off }

// Args returns args with every secret replaced by Mask, and the values it
// removed. args is not changed; when nothing was removed it is returned
// as is.
func (r *Rules) Args(args []string) ([]string, []string) {
	if !r.Enabled() || len(args) == 0 {
		return args, nil
	}
	out, removed := r.list(args)
	out = slices.Clone(out) // list returns args itself when it changed nothing
	// An argument may itself be a command line (sh -c "app --password
	// X", su -c, ssh host …): the same rules apply to its words.
	for i, a := range out {
		if strings.ContainsAny(a, " \t\n") {
			var gone []string
			out[i], gone = r.words(a)
			removed = append(removed, gone...)
		}
	}
	if len(removed) == 0 {
		return args, nil
	}
	// A value removed in one place is removed wherever it is repeated.
	for i := range out {
		out[i] = Scrub(out[i], removed)
	}
	return out, removed
}

// list applies the rules to a list of arguments (or of the words of one),
// returning it as is when nothing was removed.
func (r *Rules) list(args []string) ([]string, []string) {
	var out []string // copied on the first change
	var removed []string
	set := func(i int, s string) {
		if out == nil {
			out = append([]string(nil), args...)
		}
		out[i] = s
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if out != nil {
			a = out[i]
		}
		a, gone := r.replaceIn(a)
		removed = append(removed, gone...)
		// KEY=value: a KEY with a space in it is words (see words), not a name.
		if name, value, ok := strings.Cut(a, "="); ok && !strings.ContainsAny(name, " \t\n") && namesSecret(name) {
			if value != "" && value != Mask {
				removed = append(removed, value)
				a = name + "=" + Mask
			}
		} else if !ok && strings.HasPrefix(a, "-") && namesSecret(a) && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			// The gap of a truncated command line is no value: the
			// value was cut out with it.
			if next := args[i+1]; next != "" && next != Mask && next != events.CmdlineGap {
				removed = append(removed, next)
				set(i+1, Mask)
			}
		}
		if a != args[i] {
			set(i, a)
		}
	}
	if out == nil {
		return args, removed
	}
	return out, removed
}

// wordPattern finds the words of an argument that is a command line.
var wordPattern = regexp.MustCompile(`\S+`)

// words applies the rules to the whitespace-separated words of a, keeping
// the whitespace. Quoting is not parsed: a quoted value with spaces in it
// loses only its first word.
func (r *Rules) words(a string) (string, []string) {
	spans := wordPattern.FindAllStringIndex(a, -1)
	ws := make([]string, len(spans))
	for i, sp := range spans {
		ws[i] = a[sp[0]:sp[1]]
	}
	out, removed := r.list(ws)
	if len(removed) == 0 {
		return a, nil
	}
	var b strings.Builder
	last := 0
	for i, sp := range spans {
		b.WriteString(a[last:sp[0]])
		b.WriteString(out[i])
		last = sp[1]
	}
	b.WriteString(a[last:])
	return b.String(), removed
}

// replaceIn applies the URL rule and the extra patterns to one argument.
func (r *Rules) replaceIn(a string) (string, []string) {
	var removed []string
	a = urlPassword.ReplaceAllStringFunc(a, func(m string) string {
		sub := urlPassword.FindStringSubmatch(m)
		if sub[2] != Mask {
			removed = append(removed, sub[2])
		}
		return sub[1] + Mask + "@"
	})
	if r == nil {
		return a, removed
	}
	for _, re := range r.extra {
		a = replacePattern(re, a, &removed)
	}
	return a, removed
}

// replacePattern masks re's capture groups in s, or its whole match when it
// has none.
func replacePattern(re *regexp.Regexp, s string, removed *[]string) string {
	var b strings.Builder
	last := 0
	for _, m := range re.FindAllStringSubmatchIndex(s, -1) {
		spans := [][2]int{{m[0], m[1]}}
		if re.NumSubexp() > 0 {
			spans = spans[:0]
			for g := 1; g <= re.NumSubexp(); g++ {
				if m[2*g] >= 0 && m[2*g+1] > m[2*g] {
					spans = append(spans, [2]int{m[2*g], m[2*g+1]})
				}
			}
		}
		for _, sp := range spans {
			if sp[0] < last || sp[1] == sp[0] { // nested or empty group
				continue
			}
			if v := s[sp[0]:sp[1]]; v != Mask {
				b.WriteString(s[last:sp[0]])
				b.WriteString(Mask)
				*removed = append(*removed, v)
				last = sp[1]
			}
		}
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

// namesSecret tells whether a flag or KEY names a secret.
func namesSecret(name string) bool {
	name = strings.ToLower(name)
	for _, w := range SecretWords {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}

// MayEndSecretName tells whether s, the end of an argument whose start
// was cut off (the kernel's capture of a long command line keeps only its
// tail), may be the end of a flag that names a secret ("…ssword" of
// "--password"): then the argument after it may be that secret's value.
func MayEndSecretName(s string) bool {
	s = strings.ToLower(s)
	for _, w := range SecretWords {
		for _, name := range []string{w, w + "s"} {
			if strings.HasSuffix(s, name) || strings.HasSuffix(name, s) {
				return true
			}
		}
	}
	return false
}

// Scrub replaces in s every removed value long enough to search for.
func Scrub(s string, removed []string) string {
	for _, v := range removed {
		if len(v) >= minScrubLen && v != Mask {
			s = strings.ReplaceAll(s, v, Mask)
		}
	}
	return s
}

// Process redacts p's command line and removes what it took out from the
// rest of p (executable, command name, cgroup). It sets CmdlineRedacted
// when anything changed.
func (r *Rules) Process(p *events.Process) { r.process(p) }

// process is Process, returning what it removed.
func (r *Rules) process(p *events.Process) []string {
	if p == nil || !r.Enabled() {
		return nil
	}
	args, removed := r.Args(p.Cmdline)
	if len(removed) == 0 {
		return nil
	}
	p.Cmdline = args
	p.Exe = Scrub(p.Exe, removed)
	p.Comm = Scrub(p.Comm, removed)
	p.Cgroup = Scrub(p.Cgroup, removed)
	p.Unit = Scrub(p.Unit, removed)
	p.UnitManager = Scrub(p.UnitManager, removed)
	p.SocketUnit = Scrub(p.SocketUnit, removed)
	p.CmdlineRedacted = true
	return removed
}

// Record redacts every process of a record read back from a log (bindwatch
// report), which may have been written by a bindwatch that did not redact
// (--no-redact, or an older version): the processes, and the diagnosis and
// hint made from them. Records bindwatch makes are redacted where their
// processes are described, and come out of this unchanged. Records report
// does not read (who, free, held, wait_free, doctor) and those it makes
// (incident, spread) are left as they are.
func (r *Rules) Record(rec events.Record) {
	if !r.Enabled() {
		return
	}
	switch rec := rec.(type) {
	case *events.Failure:
		removed := r.process(&rec.Process)
		for i := range rec.Holders {
			h := &rec.Holders[i]
			for j := range h.Processes {
				removed = append(removed, r.process(&h.Processes[j])...)
			}
			removed = append(removed, r.process(h.BoundBy)...)
		}
		rec.Diagnosis = Scrub(rec.Diagnosis, removed)
		rec.Hint = Scrub(rec.Hint, removed)
	case *events.Released:
		r.process(rec.Holder)
		r.process(rec.Closer)
	case *events.Signal:
		r.process(&rec.Sender)
		r.process(&rec.Target)
	case *events.Recovered:
		r.process(&rec.Process)
	case *events.PortFree:
		r.process(&rec.Process)
	case *events.SignalRepeats:
		r.process(&rec.Sender)
		r.process(&rec.Target)
	case *events.PortShared:
		r.process(&rec.Joiner)
		r.process(&rec.Holder)
	}
}
