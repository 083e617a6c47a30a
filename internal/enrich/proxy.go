package enrich

import (
	"encoding/json"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/bindwatch/bindwatch/internal/events"
)

// maxDockerScan bounds how many of docker's container records are read to
// find the one a docker-proxy publishes for.
const maxDockerScan = 4096

// proxyArgs is what a docker-proxy's command line says it forwards.
type proxyArgs struct {
	proto         string
	hostPort      int
	containerIP   netip.Addr
	containerPort int
}

// parseProxyArgs reads docker-proxy's -proto, -host-port, -container-ip
// and -container-port ("-flag value" or "-flag=value").
func parseProxyArgs(argv []string) (proxyArgs, bool) {
	a := proxyArgs{proto: "tcp"}
	for i := 1; i < len(argv); i++ {
		flag, value, hasValue := strings.Cut(strings.TrimLeft(argv[i], "-"), "=")
		if !hasValue {
			if i+1 >= len(argv) {
				break
			}
			i++
			value = argv[i]
		}
		switch flag {
		case "proto":
			a.proto = value
		case "host-port":
			a.hostPort, _ = strconv.Atoi(value)
		case "container-ip":
			a.containerIP, _ = netip.ParseAddr(value)
		case "container-port":
			a.containerPort, _ = strconv.Atoi(value)
		}
	}
	ok := a.containerIP.IsValid() && a.hostPort > 0 && a.hostPort < 65536 && a.containerPort > 0 && a.containerPort < 65536
	return a, ok
}

// dockerPublisher finds, in docker's state, the running container a
// docker-proxy with command line argv publishes for: one with the proxy's
// -container-ip on one of its networks and the proxy's -host-port among
// the host ports of its -container-port. nil when none does (the proxy
// outlived its container, or docker keeps its state elsewhere).
func (n *Namer) dockerPublisher(argv []string) *events.Container {
	a, ok := parseProxyArgs(argv)
	if !ok {
		return nil
	}
	dir := n.path(n.dockerDir)
	ids, err := listDir(dir)
	if err != nil {
		return nil
	}
	key := strconv.Itoa(a.containerPort) + "/" + a.proto
	hostPort := strconv.Itoa(a.hostPort)
	for i, id := range ids {
		if i >= maxDockerScan {
			break
		}
		b, err := readBeneath(dir, filepath.Join(id, "config.v2.json"), maxConfigSize)
		if err != nil {
			continue
		}
		var cfg struct {
			ID     string
			Name   string
			Config struct{ Image string }
			State  struct{ Running bool }

			NetworkSettings struct {
				Networks map[string]struct{ IPAddress, GlobalIPv6Address string }
				Ports    map[string][]struct{ HostIp, HostPort string }
			}
		}
		if json.Unmarshal(b, &cfg) != nil || !cfg.State.Running {
			continue
		}
		onNet := false
		for _, nw := range cfg.NetworkSettings.Networks {
			for _, s := range []string{nw.IPAddress, nw.GlobalIPv6Address} {
				if ip, err := netip.ParseAddr(s); err == nil && ip.Unmap() == a.containerIP.Unmap() {
					onNet = true
				}
			}
		}
		published := false
		for _, binding := range cfg.NetworkSettings.Ports[key] {
			published = published || binding.HostPort == hostPort
		}
		if !onNet || !published {
			continue
		}
		if cfg.ID == "" {
			cfg.ID = id
		}
		return &events.Container{Runtime: Docker, ID: cfg.ID, Name: strings.TrimPrefix(cfg.Name, "/"), Image: cfg.Config.Image}
	}
	return nil
}
