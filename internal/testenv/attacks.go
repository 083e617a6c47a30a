package testenv

import (
	"fmt"
	"io"
	"net"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// runAttackJob does the jobs that replay attacks of hostile users (run
// them as one, with HelperAsUser). It returns false for a job it does not
// know.
//
//	idleconns ADDR N    open N keep-alive HTTP connections to ADDR, each
//	                    sending one GET /healthz and then staying idle
//	                    (never reading) → "ready PID CONNECTED"; holds
//	                    them until stdin closes
//	failbinds ADDR PORT N
//	                    bind N fresh sockets to ADDR:PORT (ADDR one the
//	                    host does not have: EADDRNOTAVAIL) → "ready PID
//	                    FAILED"; stays alive (its command line readable
//	                    in /proc) until stdin closes
func runAttackJob(args []string) (bool, error) {
	if len(args) == 0 {
		return false, nil
	}
	switch args[0] {
	case "idleconns":
		if len(args) != 3 {
			return true, fmt.Errorf("idleconns ADDR N, not %q", args)
		}
		n, _ := strconv.Atoi(args[2])
		raiseNoFile(n + 64)
		var conns []net.Conn
		for range n {
			c, err := net.Dial("tcp", args[1])
			if err != nil {
				continue // refused or out of fds: what got through is the attack
			}
			conns = append(conns, c)
			io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: bindwatch\r\n\r\n")
		}
		fmt.Printf("ready %d %d\n", os.Getpid(), len(conns))
		io.Copy(io.Discard, os.Stdin)
		return true, nil
	case "failbinds":
		if len(args) != 4 {
			return true, fmt.Errorf("failbinds ADDR PORT N, not %q", args)
		}
		port, _ := strconv.Atoi(args[2])
		n, _ := strconv.Atoi(args[3])
		failed := 0
		for range n {
			fd, err := Socket("tcp", args[1], Opts{})
			if err != nil {
				return true, err
			}
			if Bind(fd, args[1], port) != nil {
				failed++
			}
			unix.Close(fd)
		}
		fmt.Printf("ready %d %d\n", os.Getpid(), failed)
		io.Copy(io.Discard, os.Stdin)
		return true, nil
	}
	return false, nil
}
