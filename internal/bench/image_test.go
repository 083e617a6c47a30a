package bench

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/testenv"
)

// Idle footprint of the container image's bindwatch on a busy node (the
// figures in README.md and the DaemonSet's requests): benchContainers
// podman containers, each listening in its own network namespace, and a
// process with benchSockets open sockets; then bindwatch, run as README.md
// says, idle for idleWindow. Reported: its RSS (VmRSS, and VmHWM, the peak,
// after one failure was resolved) and CPU as a share of one core.
const (
	benchContainers = 300
	benchSockets    = 50000
	idleWindow      = 60 * time.Second
)

func BenchmarkImageIdle(b *testing.B) {
	testenv.RequirePodman(b)
	const image = "localhost/bindwatch-bench"
	if out, err := exec.Command("make", "-C", "../..", "image", "IMAGE="+image, "VERSION=bench").CombinedOutput(); err != nil {
		b.Fatalf("make image: %v\n%s", err, out)
	}
	prefix := "bw-bench-" + strconv.Itoa(os.Getpid()) + "-"
	b.Cleanup(func() {
		out, _ := exec.Command("podman", "ps", "-aq", "--filter", "name=^"+prefix).Output()
		if ids := strings.Fields(string(out)); len(ids) > 0 {
			exec.Command("podman", append([]string{"rm", "-f", "-t", "0"}, ids...)...).Run()
		}
	})
	startContainers(b, prefix, benchContainers)
	// In processes of 10,000 fds each: the hard RLIMIT_NOFILE may be lower
	// than the total.
	for range benchSockets / 10000 {
		testenv.StartHelper(b, "fdhog 10000")
	}

	// Idle means no failure to report: --port keeps out those of whatever
	// else runs on this machine (other tests), filtered in the kernel.
	port := testenv.FreePort(b)
	name := prefix + "bindwatch"
	args := append(append([]string{}, testenv.PodmanRun[1:]...), "-d", "--name", name)
	args = append(append(args, testenv.ImageRunArgs()...), image+":bench", "--port", strconv.Itoa(port))
	if out, err := exec.Command(testenv.PodmanRun[0], args...).CombinedOutput(); err != nil {
		b.Fatalf("podman run %s: %v\n%s", image, err, out)
	}
	pid := waitForStart(b, name)
	time.Sleep(5 * time.Second) // past start-up (BTF, iterator load)
	cpu0, t0 := cpuTicks(b, pid), time.Now()
	time.Sleep(idleWindow)
	cpu1, t1 := cpuTicks(b, pid), time.Now()
	rss := statusKiB(b, pid, "VmRSS")
	cpuShare := float64(cpu1-cpu0) / 100 / t1.Sub(t0).Seconds()

	// One failure on that port, held on the host: the resolver's
	// work (sock_diag, the task iterator over every fd) sets the peak.
	testenv.StartHelper(b, fmt.Sprintf("hold tcp 0.0.0.0 %d", port))
	testenv.StartHelper(b, fmt.Sprintf("trybind tcp 0.0.0.0 %d", port))
	time.Sleep(2 * time.Second)
	peak := statusKiB(b, pid, "VmHWM")
	if out, _ := exec.Command("podman", "logs", name).CombinedOutput(); !strings.Contains(string(out), `"type":"bind_failure"`) {
		b.Errorf("the failure on port %d was not reported:\n%s", port, out)
	}
	b.ReportMetric(float64(rss)/1024, "idle-RSS-MiB")
	b.ReportMetric(float64(peak)/1024, "peak-RSS-MiB")
	b.ReportMetric(cpuShare*100, "idle-CPU-%")
	b.Logf("%d containers, %d sockets: idle RSS %.1f MiB, peak RSS after a failure %.1f MiB, idle CPU %.3f%% of one core over %s",
		benchContainers, benchSockets, float64(rss)/1024, float64(peak)/1024, cpuShare*100, idleWindow)
}

// startContainers starts n detached containers, each listening on a TCP
// port in its own network namespace (-i keeps the helper's stdin open).
func startContainers(b *testing.B, prefix string, n int) {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				args := append(append([]string{}, testenv.PodmanRun[1:]...), "-d", "-i", "--rm", "--network=none",
					"--name", fmt.Sprintf("%s%d", prefix, i), "-e", "BINDWATCH_TEST_HELPER=hold tcp 0.0.0.0 8080", testenv.HelperImage)
				if out, err := exec.Command(testenv.PodmanRun[0], args...).CombinedOutput(); err != nil {
					errs <- fmt.Errorf("container %d: %v: %s", i, err, out)
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// waitForStart waits for the start record in a detached container's log
// and returns its bindwatch's pid on the host.
func waitForStart(b *testing.B, name string) int {
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		out, _ := exec.Command("podman", "logs", name).CombinedOutput()
		if strings.Contains(string(out), `"type":"start"`) {
			pidOut, err := exec.Command("podman", "inspect", "-f", "{{.State.Pid}}", name).Output()
			if err != nil {
				b.Fatal(err)
			}
			pid, _ := strconv.Atoi(strings.TrimSpace(string(pidOut)))
			return pid
		}
	}
	out, _ := exec.Command("podman", "logs", name).CombinedOutput()
	b.Fatalf("%s did not start tracing in 60s:\n%s", name, out)
	return 0
}

// cpuTicks is utime+stime of pid (all its threads), in USER_HZ ticks.
func cpuTicks(b *testing.B, pid int) uint64 {
	s, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(s[strings.LastIndexByte(string(s), ')')+2:]))
	utime, _ := strconv.ParseUint(f[14-3], 10, 64)
	stime, _ := strconv.ParseUint(f[15-3], 10, 64)
	return utime + stime
}

// statusKiB is a "Vm...: N kB" field of /proc/PID/status.
func statusKiB(b *testing.B, pid int, field string) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			return n
		}
	}
	b.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}
