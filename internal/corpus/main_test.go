package corpus

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/bindwatch/bindwatch/internal/testenv"
	"golang.org/x/sys/unix"
)

var (
	// bindwatchBin is the real bindwatch, built once per test run from
	// this module — or BINDWATCH_BIN, built beforehand (the kernel
	// matrix's guests have no Go).
	bindwatchBin string
	// goServerBin is testdata/goserver built by TestMain; empty where no
	// go command is at hand (the kernel matrix's guests), and then the
	// test binary itself serves with the same net/http code (roleEnv).
	goServerBin string
)

// roleEnv makes the test binary play a program of a scenario (see
// playRole) instead of running tests.
const roleEnv = "BINDWATCH_CORPUS_ROLE"

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		if err := playRole(strings.Fields(role)); err != nil {
			fmt.Fprintln(os.Stderr, "corpus role:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	testenv.RunHelperIfAsked()
	// Scenarios mostly wait — on daemons' own retry delays, on the
	// tracer's grace before an incident is over — rather than compute:
	// four at a time, unless -test.parallel says otherwise.
	flag.Parse()
	parallelSet := false
	flag.Visit(func(f *flag.Flag) { parallelSet = parallelSet || f.Name == "test.parallel" })
	if !parallelSet {
		flag.Set("test.parallel", "4")
	}
	dir, err := os.MkdirTemp("", "bindwatch-corpus-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		if bindwatchBin = os.Getenv("BINDWATCH_BIN"); bindwatchBin == "" {
			bindwatchBin = filepath.Join(dir, "bindwatch")
			if err := goBuild(bindwatchBin, "../../cmd/bindwatch"); err != nil {
				fmt.Fprintln(os.Stderr, "build bindwatch:", err)
				return 1
			}
		}
		if _, err := exec.LookPath("go"); err == nil {
			goServerBin = filepath.Join(dir, "goserver")
			if err := goBuild(goServerBin, "./testdata/goserver"); err != nil {
				fmt.Fprintln(os.Stderr, "build testdata/goserver:", err)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// goBuild builds the package in dir (relative to this package) into out,
// as a static binary.
func goBuild(out, dir string) error {
	build := exec.Command("go", "build", "-o", out, dir)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	return build.Run()
}

// playRole plays a program of a scenario in the test binary:
//
//	goserver HOST:PORT         testdata/goserver's net/http server, for a
//	                           guest without a go command to build it
//	connectfirst PEER PORT     bind a TCP socket to 0.0.0.0:PORT, connect it to
//	                           127.0.0.1:PEER → "connected LOCALPORT"; then
//	                           listen on 0.0.0.0:PORT with a fresh socket →
//	                           "errno N" (0: it listens); wait for stdin to close
func playRole(args []string) error {
	switch {
	case len(args) == 2 && args[0] == "goserver":
		http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
		return http.ListenAndServe(args[1], nil)
	case len(args) == 3 && args[0] == "connectfirst":
		peer, _ := strconv.Atoi(args[1])
		port, _ := strconv.Atoi(args[2])
		return connectFirst(peer, port)
	}
	return fmt.Errorf("unknown role %q", args)
}

// connectFirst is a client that connects out from PORT before it tries to
// serve on PORT itself.
func connectFirst(peer, port int) error {
	c, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	if err := unix.Bind(c, &unix.SockaddrInet4{Port: port}); err != nil {
		return fmt.Errorf("bind the client socket to port %d: %w", port, err)
	}
	if err := unix.Connect(c, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: peer}); err != nil {
		return fmt.Errorf("connect to 127.0.0.1:%d: %w", peer, err)
	}
	sa, err := unix.Getsockname(c)
	if err != nil {
		return err
	}
	fmt.Printf("connected %d\n", sa.(*unix.SockaddrInet4).Port)
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	errno := 0
	err = unix.Bind(s, &unix.SockaddrInet4{Port: port})
	if err == nil {
		err = unix.Listen(s, 16)
	}
	if e, ok := err.(syscall.Errno); ok {
		errno = int(e)
	} else if err != nil {
		return err
	}
	fmt.Printf("errno %d\n", errno)
	io.Copy(io.Discard, os.Stdin)
	return nil
}
