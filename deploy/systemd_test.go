// Package deploy holds no code: its tests check the deployment files beside
// them (the systemd unit, the logrotate snippet, the Kubernetes DaemonSet)
// with the tools that read them.
package deploy

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/bindwatch/bindwatch/internal/testenv"
)

// unitFile parses a systemd unit: section → key → values in order.
func unitFile(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	unit := map[string]map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = strings.Trim(line, "[]")
			unit[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s: not a key=value in a section: %q", path, line)
			}
			unit[section][k] = append(unit[section][k], v)
		}
	}
	return unit
}

// systemd-analyze verify accepts the unit as shipped (its binary put where
// ExecStart says), with not even a warning, and the unit has the sandbox
// and capabilities the README promises.
func TestSystemdUnit(t *testing.T) {
	testenv.Require(t, "systemd-analyze", "checks the unit file (apt-get install systemd)")
	unit := unitFile(t, "systemd/bindwatch.service")
	svc := unit["Service"]
	want := map[string]string{
		"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
		"LogsDirectory": "bindwatch", "Restart": "on-failure", "NoNewPrivileges": "yes",
		"CapabilityBoundingSet": strings.Join(testenv.ImageCaps, " "),
		"AmbientCapabilities":   strings.Join(testenv.ImageCaps, " "),
	}
	for k, v := range want {
		if got := svc[k]; len(got) != 1 || got[0] != v {
			t.Errorf("[Service] %s=%q, want %q", k, got, v)
		}
	}
	start := strings.Fields(svc["ExecStart"][0])
	if !slices.Contains(start, "json") || !slices.Contains(start, "/var/log/bindwatch/bindwatch.jsonl") {
		t.Errorf("ExecStart %q does not write JSON to /var/log/bindwatch/bindwatch.jsonl", start)
	}

	// verify checks that ExecStart's binary exists: point it at a real
	// build, changing nothing else.
	dir := t.TempDir()
	bin := filepath.Join(dir, "bindwatch")
	if out, err := runCmd("go", "build", "-o", bin, "../cmd/bindwatch"); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	text, err := os.ReadFile("systemd/bindwatch.service")
	if err != nil {
		t.Fatal(err)
	}
	verifyCopy := filepath.Join(dir, "bindwatch.service")
	if err := os.WriteFile(verifyCopy, []byte(strings.ReplaceAll(string(text), "/usr/local/bin/bindwatch", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runCmd("systemd-analyze", "verify", verifyCopy)
	if err != nil || len(strings.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// logrotate reads the snippet: it rotates the unit's log file and signals
// the service to reopen it.
func TestLogrotateSnippet(t *testing.T) {
	testenv.Require(t, "logrotate", "checks the logrotate config (apt-get install logrotate)")
	text, err := os.ReadFile("systemd/bindwatch.logrotate")
	if err != nil {
		t.Fatal(err)
	}
	// The same snippet on a log file of this test's own.
	dir := t.TempDir()
	log := filepath.Join(dir, "bindwatch.jsonl")
	if err := os.WriteFile(log, []byte("{}\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "bindwatch.logrotate")
	if err := os.WriteFile(conf, []byte(strings.ReplaceAll(string(text), "/var/log/bindwatch/bindwatch.jsonl", log)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runCmd("logrotate", "-d", "-f", "-s", filepath.Join(dir, "state"), conf)
	if err != nil || strings.Contains(strings.ToLower(out), "error") {
		t.Fatalf("logrotate -d: %v\n%s", err, out)
	}
	for _, want := range []string{"rotating pattern: " + log, "renaming " + log + " to " + log + ".1", "systemctl kill --kill-whom=main --signal=HUP bindwatch.service"} {
		if !strings.Contains(out, want) {
			t.Errorf("logrotate -d does not say %q:\n%s", want, out)
		}
	}
}

func runCmd(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}
