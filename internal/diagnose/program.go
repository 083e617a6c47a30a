package diagnose

import (
	"path"
	"slices"
	"strings"

	"github.com/bindwatch/bindwatch/internal/events"
)

// "The same program" is the program, not the interpreter: two python3
// processes run the same program only when they run the same script (or
// the same -m module), two java processes the same main class or -jar
// file. Any other program is its executable — /proc/PID/exe, which the
// process cannot rewrite, unlike argv[0] (nginx, redis and every
// setproctitle() user rewrite theirs) — and, for a multi-call binary such
// as busybox, the applet argv[0] names.

// interpreters maps an interpreter's executable name (version digits
// trimmed: python3.11 → python) to the options of it that take the next
// argument as their value, and the ones whose value is the program itself
// (code given inline, a module).
var interpreters = map[string]struct {
	valued  []string // options whose value is the next argument
	program []string // options whose value names the program
}{
	"python": {valued: []string{"-W", "-X", "-Q"}, program: []string{"-m", "-c"}},
	"perl":   {valued: []string{"-I", "-M", "-m", "-x"}, program: []string{"-e", "-E"}},
	"ruby":   {valued: []string{"-I", "-r", "-C", "-E"}, program: []string{"-e"}},
	"php":    {valued: []string{"-c", "-d", "-z"}, program: []string{"-f", "-r"}},
	"node":   {valued: []string{"-r", "--require", "--import", "--loader", "--inspect-port", "--title"}, program: []string{"-e", "--eval", "-p", "--print"}},
	"nodejs": {valued: []string{"-r", "--require", "--import", "--loader", "--inspect-port", "--title"}, program: []string{"-e", "--eval", "-p", "--print"}},
	"java":   {valued: []string{"-cp", "-classpath", "--class-path", "-p", "--module-path", "--add-modules", "--add-opens", "--add-exports"}, program: []string{"-jar", "-m", "--module"}},
	"bash":   {valued: []string{"-o", "-O", "--rcfile", "--init-file"}, program: []string{"-c"}},
	"sh":     {valued: []string{"-o"}, program: []string{"-c"}},
	"dash":   {valued: []string{"-o"}, program: []string{"-c"}},
	"zsh":    {valued: []string{"-o"}, program: []string{"-c"}},
	"ksh":    {valued: []string{"-o"}, program: []string{"-c"}},
}

// multiCall are executables that are many programs, told apart by argv[0].
var multiCall = map[string]bool{"busybox": true, "toybox": true}

// interpreterName is the interpreter an executable or comm names, "" when
// it is none: python3.11 and python3 are python.
func interpreterName(name string) string {
	name = strings.TrimRight(name, "0123456789.")
	if _, ok := interpreters[name]; ok {
		return name
	}
	return ""
}

// programID names the program p runs, and says whether the name is exact:
// from its executable (and, for an interpreter, its arguments), or only
// from its comm, which any process can set. "" when nothing is known.
func programID(p *events.Process) (id string, exact bool) {
	exe := strings.TrimSuffix(p.Exe, " (deleted)")
	if exe == "" {
		if p.Comm == "" {
			return "", false
		}
		return "comm " + p.Comm, false
	}
	base := path.Base(exe)
	if multiCall[base] && len(p.Cmdline) > 0 {
		return exe + " " + path.Base(firstWord(p.Cmdline[0])), true
	}
	lang := interpreterName(base)
	if lang == "" {
		return exe, true
	}
	if len(p.Cmdline) == 0 {
		return lang + " ?", false // the script is not known
	}
	opts := interpreters[lang]
	args := p.Cmdline[1:]
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--" && i+1 < len(args):
			return lang + " " + path.Clean(args[i+1]), true
		case slices.Contains(opts.program, a) && i+1 < len(args):
			return lang + " " + a + " " + args[i+1], true
		case slices.Contains(opts.valued, a):
			i++
		case strings.HasPrefix(a, "-"):
			// a flag, or an option with its value attached (-W=…, -Ilib)
		default:
			return lang + " " + path.Clean(a), true
		}
	}
	return lang, true // an interactive interpreter, reading stdin
}

func firstWord(s string) string {
	if i := strings.IndexAny(s, " :"); i > 0 {
		return s[:i]
	}
	return s
}

// SameProgram is the diagnosis's identity rule for others: whether a and b
// run the same program (executable, or interpreter and script), and
// whether that is exact; see sameProgram.
func SameProgram(a, b *events.Process) (same, exact bool) { return sameProgram(a, b) }

// ProgramID names the program p runs ("" when nothing is known): the key
// SameProgram compares.
func ProgramID(p *events.Process) string {
	id, _ := programID(p)
	return id
}

// Sharing decides whether joiner's socket joining holder's SO_REUSEPORT
// group is silent sharing: "" when it is the same program in the same
// cgroup — a hand-over (haproxy -sf, envoy's hot restart), a program's own
// workers, or the same program started twice in one unit, which only time
// tells apart (the caller waits to see whether the holder lets go);
// events.SharedProgram when another program joined; events.SharedUnit
// when the same program joined from another cgroup (another service,
// container or user session).
func Sharing(joiner, holder *events.Process) string {
	if same, _ := sameProgram(joiner, holder); !same {
		return events.SharedProgram
	}
	if joiner.Cgroup != "" && holder.Cgroup != "" && joiner.Cgroup != holder.Cgroup {
		return events.SharedUnit
	}
	return ""
}

// sameProgram reports whether a and b run the same program, and whether
// that is exact (both known by executable and arguments) or likely (a comm
// shared by both, when one side's executable is unknown; never the comm of
// an interpreter, which says nothing about the program).
func sameProgram(a, b *events.Process) (same, exact bool) {
	ida, ea := programID(a)
	idb, eb := programID(b)
	if ea && eb {
		return ida == idb, true
	}
	if a.Comm != "" && a.Comm == b.Comm && interpreterName(a.Comm) == "" {
		return true, false
	}
	return false, false
}

// programName is how a diagnosis names p's program: its script for an
// interpreter, else its executable; escaped (events.Escape).
func programName(p *events.Process) string {
	id, exact := programID(p)
	if !exact || id == "" {
		return commName(p)
	}
	return events.Escape(id)
}
