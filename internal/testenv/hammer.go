package testenv

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// jobServeQueue ("serveq ADDR PORT BACKLOG [OPT...]") is a TCP server as a
// program's main loop is, that never accepts: it listens with BACKLOG and
// the socket options (reuseport...), says "ready PID INODE", and exits on
// SIGTERM with the socket open (the kernel closes it, resetting what is
// in its queue); "close" on stdin closes the listener itself ("closed").
func jobServeQueue(args []string) error {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	opts, err := parseOpts(args[4:])
	if err != nil {
		return err
	}
	opts.ReuseAddr = true
	fd, err := Socket("tcp", args[1], opts)
	if err != nil {
		return err
	}
	port, _ := strconv.Atoi(args[2])
	if err := Bind(fd, args[1], port); err != nil {
		return fmt.Errorf("serveq: bind %s:%d: %w", args[1], port, err)
	}
	backlog, _ := strconv.Atoi(args[3])
	if err := unix.Listen(fd, backlog); err != nil {
		return fmt.Errorf("serveq: listen: %w", err)
	}
	fmt.Printf("ready %d %d\n", os.Getpid(), socketInode(fd))
	cmds := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			cmds <- sc.Text()
		}
		close(cmds)
	}()
	for {
		select {
		case <-term:
			os.Exit(0) // the socket still open: the kernel closes it
		case c, ok := <-cmds:
			if !ok {
				return nil
			}
			if c != "close" {
				return fmt.Errorf("serveq: unknown command %q", c)
			}
			unix.Close(fd)
			fmt.Println("closed")
		}
	}
}

// jobHammer ("hammer ADDR PORT N") is a client hammering a port: N
// goroutines connect in a tight loop, each keeping the connections that
// succeed (never sending or closing them) and counting the attempts
// refused (ECONNREFUSED). A goroutine stops on its first connection after
// a refusal (it reached the server that came back), or once told "stop".
// On stdin: "stats" answers "stats ESTABLISHED REFUSED"; "stop" stops
// every goroutine, then reads each kept connection without waiting, and
// answers "done REFUSED RESET ALIVE EOF OTHER": RESET the connections the
// server side reset (ECONNRESET, on the first read or already on connect),
// ALIVE those still open, EOF those it closed, OTHER errors of connect or
// read, which a test should want 0 of.
func jobHammer(args []string) error {
	addr := args[1]
	port, _ := strconv.Atoi(args[2])
	n, _ := strconv.Atoi(args[3])
	to := sockaddr(addr, port)
	var stop atomic.Bool
	var established, refused, connReset, other atomic.Int64
	var mu sync.Mutex
	var kept []int
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sawRefused := false
			for !stop.Load() {
				fd, err := Socket("tcp", addr, Opts{})
				if err != nil {
					other.Add(1)
					fmt.Fprintf(os.Stderr, "hammer: socket: %v\n", err)
					return
				}
				switch err := unix.Connect(fd, to); {
				case err == nil:
					mu.Lock()
					kept = append(kept, fd)
					mu.Unlock()
					established.Add(1)
					if sawRefused {
						return
					}
				case errors.Is(err, unix.ECONNREFUSED):
					unix.Close(fd)
					refused.Add(1)
					sawRefused = true
				case errors.Is(err, unix.ECONNRESET):
					// Established, then reset from the closing listener's
					// queue before connect() returned (a slow client, as
					// under emulation): one of the queue's resets.
					unix.Close(fd)
					connReset.Add(1)
				default:
					unix.Close(fd)
					other.Add(1)
					fmt.Fprintf(os.Stderr, "hammer: connect: %v\n", err)
				}
			}
		}()
	}
	fmt.Printf("ready %d\n", os.Getpid())
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "stats":
			fmt.Printf("stats %d %d\n", established.Load(), refused.Load())
		case "stop":
			stop.Store(true)
			wg.Wait()
			reset, alive, eof := int(connReset.Load()), 0, 0
			buf := make([]byte, 1)
			for _, fd := range kept {
				// Once: the error is reported to one read, EOF after.
				_, _, err := unix.Recvfrom(fd, buf, unix.MSG_DONTWAIT)
				switch {
				case errors.Is(err, unix.ECONNRESET):
					reset++
				case errors.Is(err, unix.EAGAIN):
					alive++
				case err == nil:
					eof++
				default:
					other.Add(1)
					fmt.Fprintf(os.Stderr, "hammer: read: %v\n", err)
				}
			}
			fmt.Printf("done %d %d %d %d %d\n", refused.Load(), reset, alive, eof, other.Load())
		default:
			return fmt.Errorf("hammer: unknown command %q", sc.Text())
		}
	}
	return nil
}
