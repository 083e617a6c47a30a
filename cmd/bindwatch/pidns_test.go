package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/testenv"
)

// bindwatch run in a pid namespace of its own with that namespace's /proc
// (a container without --pid=host, a DaemonSet without hostPID): the
// kernel names host pids, which that /proc does not have. The tracer
// still traces, and says so (stderr, and the start record's
// limits.pid_namespace); `free` refuses, since a host pid may be another
// process there, and the holder keeps running.
func TestOwnPidNamespaceIsSaid(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "a pid namespace with its own /proc", "unshare")
	inNS := func(args ...string) *exec.Cmd {
		return exec.Command("unshare", append([]string{"--pid", "--fork", "--kill-child", "--mount-proc", bindwatchBin}, args...)...)
	}
	port := testenv.FreePort(t)
	holder := testenv.StartHelper(t, fmt.Sprintf("serve tcp 127.0.0.1 %d 0", port))

	res := runBindwatch(t, inNS("free", strconv.Itoa(port), "--kill"))
	if res.code != 1 || !strings.Contains(res.stderr, "pid namespace of its own") || !strings.Contains(res.stderr, "hostPID") {
		t.Errorf("free --kill in a pid namespace of its own: %s; want exit 1 saying why, with the hint", res)
	}
	time.Sleep(200 * time.Millisecond)
	if err := syscall.Kill(holder.PID, 0); err != nil {
		t.Errorf("the holder (pid %d) is gone: %v", holder.PID, err)
	}

	out := filepath.Join(t.TempDir(), "bw.jsonl")
	ready := filepath.Join(t.TempDir(), "ready")
	cmd := inNS("--port", strconv.Itoa(port), "--format", "json", "--output", out, "--ready-file", ready)
	var stderr testenv.SyncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	testenv.WaitForReady(t, ready, cmd.Process, stderr.String)
	testenv.FailBind(t, "tcp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE)
	recs := waitRecords(t, out, "the failure", func(recs []events.Record) bool { return len(ofType[events.Failure](recs, port)) > 0 })
	// unshare ignores SIGTERM while it waits: stop bindwatch itself.
	for _, pid := range testenv.ChildPIDs(cmd.Process.Pid) {
		syscall.Kill(pid, syscall.SIGTERM)
	}
	cmd.Wait()
	var start *events.Start
	for _, r := range recs {
		if s, ok := r.(*events.Start); ok {
			start = s
		}
	}
	if start == nil || !strings.Contains(start.Limits["pid_namespace"], "hostPID") {
		t.Errorf("start record %+v: want limits.pid_namespace saying why, with the hint", start)
	}
	if !strings.Contains(stderr.String(), "warning: /proc shows a pid namespace of its own") {
		t.Errorf("stderr %q: want the warning", stderr.String())
	}
	if f := ofType[events.Failure](recs, port)[0]; f.Process.Comm == "" {
		t.Errorf("the failure %+v: the kernel's record of the failing process is lost", f.Process)
	}
	schemaLines(t, readLines(out))
}
