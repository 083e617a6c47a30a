package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/bindwatch/bindwatch/internal/enrich"
	"github.com/bindwatch/bindwatch/internal/events"
	"github.com/bindwatch/bindwatch/internal/host"
)

// netnsFlag is --netns, shared by who, free and wait-free: the runbook's
// `nsenter -t PID -n lsof -i :PORT` as one flag.
var netnsFlag = &cli.StringFlag{Name: "netns", Usage: "look in the network namespace of `PID|PATH|CONTAINER`: a process, a namespace file (/run/netns/NAME or just NAME, /proc/PID/ns/net), or a running container by name or id prefix (docker, containerd, CRI-O, podman; a pod's container also as NAMESPACE/POD/CONTAINER)"}

// netnsArg finds the network namespace --netns names. A number is a pid;
// a path is a namespace file; a name is an `ip netns` namespace
// (/run/netns/NAME), else a container. The result's Path opens it (and
// Netns.Open checks it is still the same namespace).
func netnsArg(arg string) (host.Netns, error) {
	nsFile := func(path, what string) (host.Netns, error) {
		f, ino, err := host.OpenNetnsFile(path)
		if errors.Is(err, host.ErrNotNamespace) {
			return host.Netns{}, fmt.Errorf("--netns %s: %s (hint: /run/netns/NAME or /proc/PID/ns/net)", events.Escape(arg), events.Escape(err.Error()))
		}
		if err != nil {
			return host.Netns{}, fmt.Errorf("--netns %s: %s: %s", events.Escape(arg), what, events.Escape(err.Error()))
		}
		f.Close()
		return host.Netns{Inode: ino, Path: path}, nil
	}
	if pid, err := strconv.Atoi(arg); err == nil && pid > 0 {
		// A number is a pid, unless no such process runs and a container's
		// id begins with it (ids are hex: "12345678" is a valid prefix).
		// Both at once is ambiguous and said so, never guessed.
		_, noPid := os.Stat(fmt.Sprintf("/proc/%d", pid))
		found := enrich.New(enrich.Options{}).FindContainers(arg)
		switch {
		case len(found) == 0:
			return nsFile(fmt.Sprintf("/proc/%d/ns/net", pid), fmt.Sprintf("no process %d (hint: a pid as ps shows it on this host)", pid))
		case noPid == nil:
			return host.Netns{}, fmt.Errorf("--netns %s: both process %d and container %s match (hint: /proc/%d/ns/net for the process, or more of the container's id)", arg, pid, found[0].Container.ID[:12], pid)
		}
		return containerNetns(arg, found, nsFile)
	}
	if strings.Contains(arg, "/") && !strings.HasPrefix(arg, "/") && strings.Count(arg, "/") != 2 {
		arg = "./" + arg // a relative path, not NAMESPACE/POD/CONTAINER
	}
	if strings.HasPrefix(arg, "/") || strings.HasPrefix(arg, "./") {
		return nsFile(arg, "cannot open it")
	}
	if !strings.Contains(arg, "/") {
		if _, err := os.Lstat("/run/netns/" + arg); err == nil {
			return nsFile("/run/netns/"+arg, "ip netns "+arg)
		}
	}
	return containerNetns(arg, enrich.New(enrich.Options{}).FindContainers(arg), nsFile)
}

// containerNetns is the namespace of the one running container found by
// name or id prefix arg, or an error that lists them all.
func containerNetns(arg string, found []enrich.Found, nsFile func(path, what string) (host.Netns, error)) (host.Netns, error) {
	switch len(found) {
	case 0:
		return host.Netns{}, fmt.Errorf("--netns %s: no process, namespace file, ip netns or running container by that name or id prefix (hint: `ip netns list`, `podman ps`, `crictl ps`, or a pid)", arg)
	case 1:
		return nsFile(fmt.Sprintf("/proc/%d/ns/net", found[0].PID), "container "+arg+" stopped")
	}
	var names []string
	for _, f := range found {
		p := events.Process{Container: f.Container, Pod: f.Pod}
		names = append(names, events.ContainerText(&p)+" "+f.Container.ID[:12])
	}
	return host.Netns{}, fmt.Errorf("--netns %s: %d containers match: %s (hint: give more of the id)", arg, len(found), strings.Join(names, "; "))
}

// netnsOption reads --netns (with --all-netns, if the command has it, as
// the alternative, which needs root): the namespace to look in, or the
// zero Netns for bindwatch's own (or, with --all-netns, every one).
func netnsOption(c *cli.Context) (host.Netns, error) {
	arg := c.String("netns")
	if arg != "" && c.Bool("all-netns") {
		return host.Netns{}, usagef("--netns and --all-netns: give one (--netns looks in one namespace, --all-netns in every one)")
	}
	if c.Bool("all-netns") && !host.HasCap(host.CapSysAdmin) {
		return host.Netns{}, cli.Exit("--all-netns needs root (entering other network namespaces takes CAP_SYS_ADMIN): run it with sudo", 1)
	}
	if arg == "" {
		return host.Netns{}, nil
	}
	if !host.HasCap(host.CapSysAdmin) {
		return host.Netns{}, cli.Exit("--netns needs root (entering another network namespace takes CAP_SYS_ADMIN): run it with sudo", 1)
	}
	ns, err := netnsArg(arg)
	if err != nil {
		return host.Netns{}, cli.Exit(err.Error(), 1)
	}
	return ns, nil
}
