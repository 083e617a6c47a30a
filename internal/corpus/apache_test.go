package corpus

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bindwatch/bindwatch/internal/testenv"
)

const apachePath = "/usr/sbin/apache2"

// TestApache: Debian's apache2 started with its own configuration
// (`apache2 -f CONF -k start`, as a second site is run beside the
// packaged one), and a second apache with another configuration on the
// same port. The running parent process is named, and the hint reloads it
// by a signal to that process: `apachectl graceful` reads the default
// configuration and, finding no apache of its own running, starts one
// (tried: it took port 80).
func TestApache(t *testing.T) {
	t.Parallel()
	s := newScene(t, apachePath)
	port := testenv.FreePort(t)
	conf := func(name string) string {
		dir := filepath.Join(s.dir, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "httpd.conf")
		text := fmt.Sprintf(`LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
Listen 127.0.0.1:%[2]d
PidFile %[1]s/httpd.pid
ErrorLog %[1]s/error.log
DefaultRuntimeDir %[1]s
ServerName localhost
User www-data
Group www-data
DocumentRoot %[1]s
`, dir, port)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	first, second := conf("first"), conf("second")
	tr := startTrace(t, port)
	s.runOK(s.command(apachePath, "-f", first, "-k", "start"))
	running := readPID(t, filepath.Join(filepath.Dir(first), "httpd.pid"))
	waitListening(t, port, 1)

	p := s.start(s.command(apachePath, "-f", second, "-k", "start"))
	if code := p.wait(t, 30*time.Second); code == 0 {
		t.Fatalf("the second apache started:\n%s", p.output())
	}
	if !strings.Contains(p.output(), "Address already in use") {
		t.Errorf("the second apache failed for another reason:\n%s", p.output())
	}
	if !alive(running) {
		t.Fatalf("the running apache (pid %d) exited", running)
	}
	tr.awaitAbandoned(t, port)
	for _, f := range tr.failed(t, p.pid(), "the second apache") {
		alreadyRunning(t, f, running)
		hintHas(t, f, fmt.Sprintf("SIGUSR1 to its parent process, pid %d", running), "not `apachectl graceful`")
		if strings.Contains(f.str("hint"), first) {
			t.Errorf("the hint repeats the running apache's options:\n%s", f)
		}
	}
}
