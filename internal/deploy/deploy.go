// Package deploy is what deploy scripts and CI jobs call around a restart:
// it runs a command with its failed bind()/listen() calls traced, waits
// for ports to be free — decided the way the kernel decides, by binding
// them — and stops their holders safely (pidfds, no pid 1, no ancestor of
// bindwatch, no kernel thread, no other network namespace unless asked,
// SIGKILL only when asked). It replaces the EADDRINUSE runbook: find the
// holder, SIGTERM then SIGKILL, check the port is free, restart.
package deploy

import (
	"fmt"
	"strconv"
)

// Port is one port of one protocol.
type Port struct {
	Num   uint16
	Proto string // "tcp" or "udp"
}

func (p Port) String() string { return strconv.Itoa(int(p.Num)) + "/" + p.Proto }

// validate says what is wrong with p, if anything.
func (p Port) validate() error {
	if p.Proto != "tcp" && p.Proto != "udp" {
		return fmt.Errorf("port %d: protocol %q is not supported (hint: use tcp or udp)", p.Num, p.Proto)
	}
	if p.Num == 0 {
		return fmt.Errorf("port 0 asks the kernel for any free port: there is nothing to wait for (hint: give the port your service binds)")
	}
	return nil
}
