package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/testenv"
)

func httpGet(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// startPrometheus starts the real prometheus server on a loopback port
// with its own config and storage, scraping target every second, and
// returns its base URL.
func startPrometheus(t *testing.T, target string) string {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "prometheus.yml")
	os.WriteFile(conf, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: bindwatch
    static_configs:
      - targets: [%q]
`, target)), 0o644)
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cmd := exec.Command("prometheus", "--config.file="+conf, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--web.console.templates="+dir, "--web.console.libraries="+dir)
	var log testenv.SyncBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", log.String())
		}
	})
	base := "http://" + addr
	for deadline := time.Now().Add(testenv.StartTimeout); ; time.Sleep(200 * time.Millisecond) {
		if resp, err := http.Get(base + "/-/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready after 30s:\n%s", log.String())
		}
	}
}

// promQuery returns the value of a scalar PromQL query, or -1 when it has
// no result yet.
func promQuery(t *testing.T, base, query string) float64 {
	t.Helper()
	_, body := httpGet(t, base+"/api/v1/query?query="+url.QueryEscape(query))
	var r struct {
		Status string
		Data   struct {
			Result []struct {
				Value [2]any
			}
		}
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil || r.Status != "success" {
		t.Fatalf("query %s: %v: %s", query, err, body)
	}
	if len(r.Data.Result) == 0 {
		return -1
	}
	v, _ := strconv.ParseFloat(r.Data.Result[0].Value[1].(string), 64)
	return v
}

// A real prometheus server scraping bindwatch --metrics-addr counts every
// failure the test provoked, folded ones included; the exposition passes
// promtool check metrics; labels stay low-cardinality (with
// --metrics-port-label, the --port argument and nothing else).
func TestMetricsScrapedByPrometheus(t *testing.T) {
	testenv.RequireCommand(t, "a real Prometheus scrapes the endpoint", "prometheus", "promtool")
	port := testenv.FreePort(t)
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	// The metrics address comes from the environment, as in a systemd unit.
	t.Setenv("BINDWATCH_METRICS_ADDR", metricsAddr)
	tr := startTracing(t, "--output", filepath.Join(t.TempDir(), "out.jsonl"), "--port", strconv.Itoa(port), "--metrics-port-label")
	testenv.Hold(t, "tcp", "127.0.0.1", port, testenv.Opts{})
	const provoked = 40 // one reported, the rest folded in the kernel
	for range provoked {
		testenv.FailBind(t, "tcp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE)
	}
	prom := startPrometheus(t, metricsAddr)
	query := fmt.Sprintf(`sum(bindwatch_bind_failures_total{syscall="bind",errno="EADDRINUSE",proto="tcp",port="%d"})`, port)
	var got float64
	for deadline := time.Now().Add(testenv.StartTimeout); ; time.Sleep(500 * time.Millisecond) {
		if got = promQuery(t, prom, query); got == provoked {
			break
		}
		if time.Now().After(deadline) {
			_, m := httpGet(t, "http://"+metricsAddr+"/metrics")
			t.Fatalf("prometheus says %v failures, the test provoked %d; bindwatch's /metrics:\n%s\nstderr: %s", got, provoked, m, tr.stderr.String())
		}
	}
	if v := promQuery(t, prom, `bindwatch_build_info{backend!=""}`); v != 1 {
		t.Errorf("bindwatch_build_info = %v, want 1", v)
	}
	if v := promQuery(t, prom, `bindwatch_holder_lookups_total{result="live"}`); v != 1 {
		t.Errorf(`holder_lookups_total{result="live"} = %v, want 1 (one reported failure, its holder seen live)`, v)
	}

	code, body := httpGet(t, "http://"+metricsAddr+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics: %d", code)
	}
	check := exec.Command("promtool", "check", "metrics")
	check.Stdin = strings.NewReader(body)
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	for _, want := range []string{"bindwatch_events_lost_total 0", "bindwatch_last_failure_timestamp_seconds ", `bindwatch_output_errors_total{output="file"} 0`, "go_goroutines "} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	labels := regexp.MustCompile(`(?m)^bindwatch_bind_failures_total\{(.*)\} `).FindAllStringSubmatch(body, -1)
	if len(labels) != 1 || labels[0][1] != fmt.Sprintf(`errno="EADDRINUSE",port="%d",proto="tcp",syscall="bind"`, port) {
		t.Errorf("bind_failures_total series %v, want one with syscall, errno, proto and the --port label only", labels)
	}
	if code, body := httpGet(t, "http://"+metricsAddr+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	tr.stop(t)
}

// A user (uid 65534) opens thousands of keep-alive connections to
// --metrics-addr and leaves them idle — the attack of issue 19 that took
// the tracer to its fd limit. With the fd limit of a container (1,024),
// the tracer keeps at most its connection cap, /healthz (the readiness
// probe) still answers, and a genuine failure is still resolved with its
// holder's exe (holder lookups need fds).
func TestMetricsIdleConnectionsFromAUser(t *testing.T) {
	testenv.RequireRoot(t)
	port := testenv.FreePort(t)
	p := strconv.Itoa(port)
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	out := filepath.Join(t.TempDir(), "out.jsonl")
	tr := startTracingIn(t, []string{"prlimit", "--nofile=1024:1024", "--"},
		"--output", out, "--port", p, "--metrics-addr", metricsAddr)
	pid := tr.cmd.Process.Pid // prlimit execs bindwatch
	fds := func() int {
		ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		return len(ents)
	}
	before := fds()

	const crowd = 3000
	attacker := testenv.StartHelperAsUser(t, fmt.Sprintf("idleconns %s %d", metricsAddr, crowd), 65534)
	if len(attacker.Line) < 3 {
		t.Fatalf("attacker said %q", attacker.Line)
	}
	t.Logf("uid 65534 opened %s idle connections; bindwatch had %d fds before", attacker.Line[2], before)

	// /healthz answers through the crowd: the tracer has got through the
	// attacker's connections waiting to be accepted.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	var lastErr error
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		resp, err := client.Get("http://" + metricsAddr + "/healthz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && string(b) == "ok\n" {
				break
			}
			err = fmt.Errorf("%d %q", resp.StatusCode, b)
		}
		lastErr = err
		if time.Now().After(deadline) {
			t.Fatalf("/healthz does not answer with %d idle connections of uid 65534 open (bindwatch has %d fds): %v\nstderr: %s",
				crowd, fds(), lastErr, tr.stderr.String())
		}
	}
	if n := fds(); n > before+64+8 {
		t.Errorf("bindwatch has %d fds with the crowd open, %d before: more than its connection cap (64) allows", n, before)
	}

	// A genuine failure: its holder (root) is named with its exe.
	startHelper(t, "hold tcp 127.0.0.1 "+p)
	testenv.FailBind(t, "tcp", "127.0.0.1", port, testenv.Opts{}, syscall.EADDRINUSE)
	exe, err := filepath.EvalSymlinks(testenv.HelperBinary())
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(testenv.StartTimeout); ; time.Sleep(50 * time.Millisecond) {
		if fs := failuresIn(t, out); len(fs) > 0 {
			f := fs[0]
			if len(f.Holders) == 0 || len(f.Holders[0].Processes) == 0 || f.Holders[0].Processes[0].Exe != exe {
				t.Errorf("the failure's holder is not named with its exe %s: cause %s, holders %+v, resolve error %q",
					exe, f.Cause, f.Holders, f.ResolveError)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no bind_failure within 3m with the crowd open\nstderr: %s", tr.stderr.String())
		}
	}
	attacker.Stop()
	tr.stop(t)
}

// Real incidents counted on --metrics-addr: a server sent SIGTERM and its
// port taken again (recovered, with its outage and contention observed),
// and a failure against a holder that stays (this test's own socket),
// nobody trying again within the quiet gap (abandoned), each under its
// cause; promtool check metrics passes.
func TestMetricsCountIncidents(t *testing.T) {
	ports := ports(t, 2)
	metricsAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	tr := startTracing(t, "--output", filepath.Join(t.TempDir(), "out.jsonl"), "--port", strconv.Itoa(ports[0]), "--port", strconv.Itoa(ports[1]),
		"--metrics-addr", metricsAddr, "--incident-quiet", "1s")
	server := startServer(t, ports[0])
	testenv.FailBind(t, "tcp", "127.0.0.1", ports[0], testenv.Opts{}, syscall.EADDRINUSE)
	testenv.Hold(t, "tcp", "127.0.0.1", ports[1], testenv.Opts{})
	testenv.FailBind(t, "tcp", "127.0.0.1", ports[1], testenv.Opts{}, syscall.EADDRINUSE)
	// The failure opened the incident: the kernel then reports the
	// signal and the release; the port is taken again.
	time.Sleep(300 * time.Millisecond)
	server.Process.Signal(syscall.SIGTERM)
	server.Wait()
	testenv.Hold(t, "tcp", "127.0.0.1", ports[0], testenv.Opts{})

	want := []string{
		`bindwatch_incidents_total{cause="port_in_use",state="recovered"} 1`,
		`bindwatch_incidents_total{cause="self_conflict",state="abandoned"} 1`, // this test holds it
		"bindwatch_incident_unserved_seconds_count 1",
		"bindwatch_incident_contention_seconds_count 2",
	}
	var body string
	for deadline := time.Now().Add(testenv.StartTimeout); ; time.Sleep(200 * time.Millisecond) {
		_, body = httpGet(t, "http://"+metricsAddr+"/metrics")
		missing := ""
		for _, w := range want {
			if !strings.Contains(body, w+"\n") {
				missing = w
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics lacks %q after 30s:\n%s\nstderr: %s", missing, body, tr.stderr.String())
		}
	}
	testenv.RequireCommand(t, "checks the exposition", "promtool")
	check := exec.Command("promtool", "check", "metrics")
	check.Stdin = strings.NewReader(body)
	if out, err := check.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
	tr.stop(t)
}
