package testenv

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

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
//	deafhold PROTO ADDR PORT
//	                    hold (as the hold job) ignoring SIGHUP → "ready
//	                    PID INODE"; exits on SIGTERM or when stdin closes
//	sighup PID N        send N SIGHUPs to PID → "sent N"
//	keeper NAME         listen on the abstract unix socket @NAME →
//	                    "listening PID"; take one fd sent over it
//	                    (SCM_RIGHTS) and keep it → "ready PID INODE"
//	                    (a daemon that keeps the fds it is handed)
//	handover NAME PROTO ADDR PORT
//	                    hold PROTO ADDR:PORT, send the socket to @NAME
//	                    (SCM_RIGHTS), close its own copy → "sent INODE"
//	inflight PROTO ADDR PORT
//	                    hold PROTO ADDR:PORT, send it over a socketpair
//	                    that nobody reads, close it and the sending end:
//	                    the socket is held only in flight, in the queue
//	                    of the other end, which this process keeps open
//	                    → "ready PID INODE"
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
	case "deafhold":
		if len(args) != 4 {
			return true, fmt.Errorf("deafhold PROTO ADDR PORT, not %q", args)
		}
		signal.Ignore(syscall.SIGHUP)
		fd, err := holdSocket(args[1:])
		if err != nil {
			return true, err
		}
		fmt.Printf("ready %d %d\n", os.Getpid(), socketInode(fd))
		io.Copy(io.Discard, os.Stdin)
		return true, nil
	case "sighup":
		if len(args) != 3 {
			return true, fmt.Errorf("sighup PID N, not %q", args)
		}
		pid, _ := strconv.Atoi(args[1])
		n, _ := strconv.Atoi(args[2])
		for i := range n {
			if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
				return true, fmt.Errorf("SIGHUP %d to pid %d: %w", i, pid, err)
			}
		}
		fmt.Printf("sent %d\n", n)
		return true, nil
	case "keeper":
		if len(args) != 2 {
			return true, fmt.Errorf("keeper NAME, not %q", args)
		}
		ln, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return true, err
		}
		if err := unix.Bind(ln, &unix.SockaddrUnix{Name: "@" + args[1]}); err != nil {
			return true, fmt.Errorf("keeper: bind @%s: %w", args[1], err)
		}
		if err := unix.Listen(ln, 1); err != nil {
			return true, err
		}
		fmt.Printf("listening %d\n", os.Getpid())
		c, _, err := unix.Accept(ln)
		if err != nil {
			return true, err
		}
		fd, err := recvFD(c)
		if err != nil {
			return true, fmt.Errorf("keeper: %w", err)
		}
		fmt.Printf("ready %d %d\n", os.Getpid(), socketInode(fd))
		io.Copy(io.Discard, os.Stdin)
		return true, nil
	case "handover":
		if len(args) != 5 {
			return true, fmt.Errorf("handover NAME PROTO ADDR PORT, not %q", args)
		}
		fd, err := holdSocket(args[2:])
		if err != nil {
			return true, err
		}
		c, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return true, err
		}
		if err := unix.Connect(c, &unix.SockaddrUnix{Name: "@" + args[1]}); err != nil {
			return true, fmt.Errorf("handover: connect @%s: %w", args[1], err)
		}
		if err := unix.Sendmsg(c, []byte{0}, unix.UnixRights(fd), nil, 0); err != nil {
			return true, fmt.Errorf("handover: %w", err)
		}
		ino := socketInode(fd)
		unix.Close(fd)
		fmt.Printf("sent %d\n", ino)
		return true, nil
	case "inflight":
		if len(args) != 4 {
			return true, fmt.Errorf("inflight PROTO ADDR PORT, not %q", args)
		}
		fd, err := holdSocket(args[1:])
		if err != nil {
			return true, err
		}
		pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return true, err
		}
		if err := unix.Sendmsg(pair[0], []byte{0}, unix.UnixRights(fd), nil, 0); err != nil {
			return true, fmt.Errorf("inflight: %w", err)
		}
		ino := socketInode(fd)
		unix.Close(fd)
		unix.Close(pair[0])
		fmt.Printf("ready %d %d\n", os.Getpid(), ino)
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

// recvFD receives one fd sent with SCM_RIGHTS over the unix socket c.
func recvFD(c int) (int, error) {
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(c, make([]byte, 1), oob, 0)
	if err != nil {
		return -1, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return -1, fmt.Errorf("no fd received (%v)", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return -1, fmt.Errorf("no fd received (%v)", err)
	}
	return fds[0], nil
}
