package bench

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/bindwatch/bindwatch/internal/host"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// What bindwatch costs the host's other syscalls (issue 24). Any syscall
// tracepoint that is enabled — by a BPF program or by tracefs alone —
// makes the kernel set SYSCALL_WORK_SYSCALL_TRACEPOINT on every task, so
// every syscall of every process takes the slow path into the tracepoint
// code, which returns only after checking the syscall number. The
// tracepoint backend needs sys_exit_bind and sys_exit_listen; the
// kernel-function backends (fentry, kprobe) hook inet_bind itself and cost
// other syscalls nothing. BenchmarkOtherSyscalls measures both the tracer
// and the floor: the same tracepoint enabled through tracefs with no
// program at all, the part of the cost that is the kernel's.
const syscallRounds = 101

// getppids times n getppid() calls, the cheapest syscall.
func getppids(n int) time.Duration {
	start := time.Now()
	for i := 0; i < n; i++ {
		unix.RawSyscall(unix.SYS_GETPPID, 0, 0, 0)
	}
	return time.Since(start)
}

// pipeReads times n 1-byte write+read pairs on a pipe: a common syscall.
func pipeReads(b *testing.B, n int) time.Duration {
	var p [2]int
	if err := unix.Pipe(p[:]); err != nil {
		b.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	buf := []byte{1}
	start := time.Now()
	for i := 0; i < n; i++ {
		unix.Write(p[1], buf)
		unix.Read(p[0], buf)
	}
	return time.Since(start)
}

// BenchmarkOtherSyscalls: getppid and a pipe's 1-byte read with bindwatch
// tracing (the backend under test, nothing to report) against none, 101
// alternating rounds; "floor" enables sys_exit_bind through tracefs
// instead of attaching bindwatch, and "emptybpf" attaches a BPF program
// that returns at once to sys_exit_bind: the kernel's slow path plus the
// BPF dispatch, with no work of bindwatch's. Target ≤ 1.03× on every backend; on
// the tracepoint backend the floor shows how much of it the kernel
// imposes whatever the program does.
func BenchmarkOtherSyscalls(b *testing.B) {
	testenv.RequireRoot(b)
	port := testenv.FreePort(b)
	// Phases of tens of milliseconds: long enough that a timer tick or a
	// neighbour's burst is a small part of one.
	phases := []struct {
		name string
		n    int
		run  func(n int) time.Duration
	}{
		{"getppid", 200000, getppids},
		{"pipe", 50000, func(n int) time.Duration { return pipeReads(b, n) }},
	}
	for _, ph := range phases {
		b.Run(ph.name+"/bindwatch", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				var untraced, traced []time.Duration
				for r := 0; moreRounds(b, r, syscallRounds); r++ {
					alternate(r, func() { untraced = append(untraced, ph.run(ph.n)) }, func() {
						p := attach(b, false, port)
						traced = append(traced, ph.run(ph.n))
						p.detach(b)
					})
				}
				report(b, untraced, traced, ph.n)
			}
		})
		b.Run(ph.name+"/floor", func(b *testing.B) {
			if err := host.EnsureTracefs(); err != nil {
				b.Fatal(err)
			}
			enable := filepath.Join(host.TracefsPath, "events/syscalls/sys_exit_bind/enable")
			set := func(v string) {
				if err := os.WriteFile(enable, []byte(v), 0); err != nil {
					b.Fatalf("tracefs: %v (hint: a kernel without CONFIG_FTRACE_SYSCALLS has no syscall tracepoints)", err)
				}
			}
			for i := 0; i < b.N; i++ {
				var untraced, traced []time.Duration
				for r := 0; moreRounds(b, r, syscallRounds); r++ {
					alternate(r, func() { untraced = append(untraced, ph.run(ph.n)) }, func() {
						set("1")
						traced = append(traced, ph.run(ph.n))
						set("0")
					})
				}
				report(b, untraced, traced, ph.n)
			}
		})
		b.Run(ph.name+"/emptybpf", func(b *testing.B) {
			prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
				Type:         ebpf.TracePoint,
				License:      "GPL",
				Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
			})
			if err != nil {
				b.Fatalf("loading an empty tracepoint program: %v (hint: needs root and a kernel with BPF)", err)
			}
			defer prog.Close()
			for i := 0; i < b.N; i++ {
				var untraced, traced []time.Duration
				for r := 0; moreRounds(b, r, syscallRounds); r++ {
					alternate(r, func() { untraced = append(untraced, ph.run(ph.n)) }, func() {
						l, err := link.Tracepoint("syscalls", "sys_exit_bind", prog, nil)
						if err != nil {
							b.Fatalf("attaching to sys_exit_bind: %v (hint: a kernel without CONFIG_FTRACE_SYSCALLS has no syscall tracepoints)", err)
						}
						traced = append(traced, ph.run(ph.n))
						l.Close()
					})
				}
				report(b, untraced, traced, ph.n)
			}
		})
	}
}
