package testenv

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Rsyslog is a real rsyslogd started by a test, with its own config and
// work directory, listening on a private unix socket and loopback UDP and
// TCP ports, and writing every message it gets to a file, one line each:
// version|facility|severity|app-name|procid|msgid|input|msg.
type Rsyslog struct {
	// Sock is its unix socket; UDPPort and TCPPort its loopback ports.
	Sock             string
	UDPPort, TCPPort int
	dir, out         string
	cmd              *exec.Cmd
	log              *SyncBuffer
}

// StartRsyslog starts rsyslogd and returns once it listens.
func StartRsyslog(t *testing.T) *Rsyslog {
	t.Helper()
	RequireRoot(t)
	RequireCommand(t, "the syslog tests send to a real rsyslogd", "rsyslogd")
	dir := t.TempDir()
	udpPort, tcpPort := FreePort(t), FreePort(t)
	r := &Rsyslog{dir: dir, Sock: filepath.Join(dir, "log.sock"), out: filepath.Join(dir, "messages"), UDPPort: udpPort, TCPPort: tcpPort}
	conf := fmt.Sprintf(`global(workDirectory=%[1]q maxMessageSize="64k")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket=%[2]q UseSpecialParser="off" ParseHostname="on" Annotate="off")
module(load="imudp")
input(type="imudp" address="127.0.0.1" port="%[3]d")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="%[4]d")
template(name="fields" type="string" string="%%protocol-version%%|%%syslogfacility%%|%%syslogseverity%%|%%app-name%%|%%procid%%|%%msgid%%|%%inputname%%|%%msg%%\n")
*.* action(type="omfile" file=%[5]q template="fields")
`, dir, r.Sock, udpPort, tcpPort, r.out)
	confPath := filepath.Join(dir, "rsyslog.conf")
	os.WriteFile(confPath, []byte(conf), 0o644)
	r.start(t, confPath)
	return r
}

func (r *Rsyslog) start(t *testing.T, confPath string) {
	t.Helper()
	r.log = &SyncBuffer{}
	r.cmd = exec.Command("rsyslogd", "-n", "-f", confPath, "-i", filepath.Join(r.dir, "pid"))
	r.cmd.Stdout, r.cmd.Stderr = r.log, r.log
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start rsyslogd: %v", err)
	}
	cmd := r.cmd
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", r.TCPPort))
		_, serr := os.Stat(r.Sock)
		if err == nil {
			c.Close()
			if serr == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("rsyslogd not listening after 10s: %v\n%s", err, r.log.String())
		}
	}
}

// Stop stops it (SIGTERM): the collector goes away.
func (r *Rsyslog) Stop() {
	r.cmd.Process.Signal(syscall.SIGTERM)
	r.cmd.Wait()
}

// Restart starts it again with the same ports, socket and file.
func (r *Rsyslog) Restart(t *testing.T) {
	r.start(t, filepath.Join(r.dir, "rsyslog.conf"))
}

// SyslogMessage is one message as rsyslog parsed it; Record is its
// message, decoded as JSON; Input is imuxsock, imudp or imtcp.
type SyslogMessage struct {
	Version, Facility, Severity, App, ProcID, MsgID, Input string
	Record                                                 map[string]any
}

// WaitMessages waits until rsyslog wrote at least n messages, and returns them.
func (r *Rsyslog) WaitMessages(t *testing.T, n int) []SyslogMessage {
	t.Helper()
	var lines []SyslogMessage
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		lines = lines[:0]
		f, err := os.Open(r.out)
		if err == nil {
			sc := bufio.NewScanner(f)
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				p := strings.SplitN(sc.Text(), "|", 8)
				if len(p) != 8 {
					t.Fatalf("rsyslog wrote %q", sc.Text())
				}
				l := SyslogMessage{p[0], p[1], p[2], p[3], p[4], p[5], p[6], nil}
				if err := json.Unmarshal([]byte(strings.TrimSpace(p[7])), &l.Record); err != nil {
					t.Fatalf("the message is not the JSON record: %v: %q", err, p[7])
				}
				lines = append(lines, l)
			}
			f.Close()
		}
		if len(lines) >= n {
			return lines
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(r.out)
			t.Fatalf("rsyslog got %d messages, want %d\nrsyslogd: %s\n%s", len(lines), n, r.log.String(), b)
		}
	}
}
